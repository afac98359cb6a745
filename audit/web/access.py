"""Who may see the auditors' pages, decided here and nowhere else.

Two kinds of auditor:
- a staff user holding the permission `audit.view_audit_pages` (defined on AccessEvent's
  Meta, granted in Django admin), logged in through the admin's login with a password and
  a second factor in a session that has not expired (staff.access.staff_verified): every
  partner. Logged in without the second factor: sent to the admin's login;
- a partner's own auditor, signed in on these pages with one of its partner's API keys
  that has the `audit` scope: that partner only. The session keeps the key's id, and the
  key is checked again on every request, so a key revoked or expired, a partner suspended,
  or an address outside the key's networks signs the session out at once.

Every view and export asks `auditor_scope(request)` first and filters through the scope it
returns; another partner's pages answer 404, as if they did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.http import HttpRequest

from audit.actors import Actor
from partners.authentication import apikey_find, apikey_refusal, client_ip
from partners.models import ApiKey, Partner
from staff.access import staff_verified

if TYPE_CHECKING:
    from django.contrib.auth.models import User

PERMISSION = "audit.view_audit_pages"
SCOPE = ApiKey.Scope.AUDIT.value
SESSION_KEY = "auditor_api_key_id"


@dataclass(frozen=True)
class AuditorScope:
    """Who is looking, and at what: every partner (`partner` None) or exactly one."""

    actor: Actor
    partner: Partner | None

    @property
    def partner_id(self) -> int | None:
        """The one partner this auditor may see, or None for every partner."""
        return None if self.partner is None else self.partner.pk

    def allows(self, partner: Partner | None) -> bool:
        return self.partner is None or (partner is not None and partner.pk == self.partner.pk)


class AuditorSignInRequired(Exception):
    """Nobody (or a key no longer usable) is signed in: show the sign-in page."""

    def __init__(self, reason: str = "", *, staff: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # A staff user: sent to the admin's login rather than the key sign-in page.
        self.staff = staff


class AuditorForbidden(Exception):
    """Signed in as someone who may not see these pages: 403."""

    def __init__(self, actor: Actor) -> None:
        super().__init__(actor.label)
        self.actor = actor


def auditor_scope(request: HttpRequest) -> AuditorScope:
    """The scope of the auditor making `request`, or AuditorSignInRequired (nobody usable
    is signed in) or AuditorForbidden (a signed-in user without the permission)."""
    address = client_ip(request)
    user = request.user
    if user.is_authenticated:
        staff = cast("User", user)
        actor = Actor.for_user(staff, client_ip=address)
        if staff.is_active and staff.is_staff and not staff_verified(request):
            # Logged in without a second factor (or a session django-otp did not verify):
            # the admin's login, with password and TOTP code, before anything else.
            raise AuditorSignInRequired("second-factor-required", staff=True)
        if staff_verified(request) and staff.has_perm(PERMISSION):
            return AuditorScope(actor, None)
        raise AuditorForbidden(actor)
    key_id = request.session.get(SESSION_KEY)
    if key_id is None:
        raise AuditorSignInRequired()
    api_key = ApiKey.objects.select_related("partner").filter(pk=key_id).first()
    reason = "unknown-key" if api_key is None else key_refusal(api_key, address)
    if api_key is None or reason:
        request.session.flush()
        raise AuditorSignInRequired(reason or "unknown-key")
    return AuditorScope(Actor.for_api_key(api_key, client_ip=address), api_key.partner)


def key_refusal(api_key: ApiKey, address: str | None) -> str:
    """Why `api_key` may not sign in to these pages now ("" if it may)."""
    refusal = apikey_refusal(api_key, address)
    if refusal is not None:
        return refusal
    if SCOPE not in api_key.scopes:
        return "missing-audit-scope"
    return ""


def auditor_key_sign_in(request: HttpRequest, full_key: str) -> tuple[ApiKey | None, str, str]:
    """Sign a partner's auditor in with `full_key`: the key, its prefix and "" on success;
    None, the prefix (if any) and the reason otherwise. A new session id is issued, so a
    session id planted before sign-in is worth nothing after it."""
    api_key, prefix, reason = apikey_find(full_key.strip())
    if api_key is not None:
        reason = key_refusal(api_key, client_ip(request))
    if api_key is None or reason:
        return None, prefix, reason
    request.session.cycle_key()
    request.session[SESSION_KEY] = api_key.pk
    request.session.set_expiry(settings.AUDITOR_KEY_SESSION_SECONDS)
    return api_key, prefix, ""
