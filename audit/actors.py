"""Who is acting: a partner's API key, an administrator, or a management command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from partners.models import ApiKey, Partner


@dataclass(frozen=True)
class Actor:
    label: str
    partner: Partner | None = None
    api_key: ApiKey | None = None
    user: User | None = None
    client_ip: str | None = None
    # The prefix of the key presented, also when it was refused (an anonymous actor).
    key_prefix: str = ""

    @classmethod
    def for_api_key(cls, api_key: ApiKey, *, client_ip: str | None) -> Actor:
        partner = api_key.partner
        return cls(
            f"partner:{partner.name}",
            partner,
            api_key,
            client_ip=client_ip,
            key_prefix=api_key.prefix,
        )

    @classmethod
    def for_user(cls, user: User, *, client_ip: str | None = None) -> Actor:
        return cls(f"admin:{user.get_username()}", user=user, client_ip=client_ip)

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(f"command:{name}")

    @classmethod
    def system(cls, name: str) -> Actor:
        """A task of the server itself (checkpoint signer, access-period sealer), named in
        its access events."""
        return cls(f"system:{name}")

    @classmethod
    def anonymous(cls, *, key_prefix: str = "", client_ip: str | None) -> Actor:
        label = f"anonymous:{key_prefix}" if key_prefix else "anonymous"
        return cls(label, client_ip=client_ip, key_prefix=key_prefix)

    def require_partner(self) -> tuple[Partner, ApiKey]:
        """The acting partner and its key, for operations only partners perform."""
        if self.partner is None or self.api_key is None:
            raise ValueError(f"{self.label} is not a partner's API key")
        return self.partner, self.api_key


# The checkpoint signer, whether beat or a write's after-commit hook queued it.
CHECKPOINT_SIGNER = Actor.system("checkpoint-signer")
# The sealer of access-log periods, whether beat or an operator's command started it.
ACCESS_PERIOD_SEALER = Actor.system("access_period_seal")
# The pusher of checkpoints to outside witnesses (audit.witnesses, witness_push_task).
WITNESS_PUSHER = Actor.system("witness-push")
# The follower that delivers webhooks (webhooks.services.subscription_follow); each of its
# access events names the partner whose subscription it delivered to.
WEBHOOK_DELIVERER = Actor.system("webhook-deliverer")
