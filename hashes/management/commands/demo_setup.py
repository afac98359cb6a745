from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import CommandError, CommandParser

from audit.services import checkpoint_sign
from consortium_client.keys import key_generate, private_key_pem, public_key_pem
from hashes.models import HashList
from hashes.services.lists import hash_list_create
from partners import services
from partners.management.commands._base import ConsortiumCommand
from partners.models import Partner, SigningKey
from staff.management.commands.staff_totp_enroll import enrolment_text
from staff.services import staff_totp_enrol

DEMO_ADMIN = "admin"


class Command(ConsortiumCommand):
    help = (
        "Quick start only: make a demo partner with a signing key (private half written to "
        ".demo/) and a list, and print a fresh API key; the first time, make a demo "
        "administrator and print its password, TOTP key and recovery codes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--directory", default=str(settings.BASE_DIR / ".demo"))

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.QUICK_START:
            raise CommandError("demo_setup is for the quick start (DATABASE_URL unset) only")
        directory = Path(options["directory"])
        directory.mkdir(exist_ok=True)
        actor = self.actor()
        partner = Partner.objects.filter(name="demo").first() or services.partner_onboard(
            name="demo", display_name="Demo Platform", kind=Partner.Kind.PLATFORM, actor=actor
        )
        private_path = directory / "signing-key.pem"
        if not private_path.exists():
            private_key = key_generate()
            private_path.write_bytes(private_key_pem(private_key))
            private_path.chmod(0o600)
            public = public_key_pem(private_key.public_key())
            (directory / "signing-key.pub.pem").write_bytes(public)
            services.signing_key_register(partner=partner, public_key=public, actor=actor)
        if not HashList.objects.filter(name="demo").exists():
            hash_list_create(
                name="demo",
                owner=partner,
                visibility=HashList.Visibility.ALL,
                purpose="demo",
                description="Quick-start list",
                actor=actor,
            )
        _, full_key = services.apikey_create(
            partner=partner,
            scopes=["submit", "read", "match", "audit"],
            name="demo",
            actor=actor,
        )
        # No beat runs in the quick start: sign the log as it stands now, so that
        # /api/v1/log/checkpoint answers at once (each submission signs again, eagerly).
        checkpoint = checkpoint_sign()
        key_ids = SigningKey.objects.filter(partner=partner, revoked_at=None)
        self.stdout.write(
            "\nDemo partner 'demo' is ready on list 'demo'.\n"
            f"  API key (shown once):  {full_key}\n"
            f"  Signing key (private): {private_path}\n"
            f"  Signing key ids:       {', '.join(k.key_id[:16] for k in key_ids)}\n"
            f"  Log checkpoint:        size {checkpoint.size}\n"
            'Try:  curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/api/v1/me\n'
        )
        self._demo_admin()

    def _demo_admin(self) -> None:
        """The admin asks every staff user for a password and a code: the demo's administrator
        gets both once, like any staff user enrolled with staff_totp_enroll."""
        if User.objects.filter(username=DEMO_ADMIN).exists():
            self.stdout.write(
                f"\nDemo administrator {DEMO_ADMIN!r}: its password, TOTP key and recovery codes "
                "were printed the first time. To start again:\n"
                f"  python manage.py changepassword {DEMO_ADMIN}\n"
                f"  python manage.py staff_totp_reset {DEMO_ADMIN} --reason 'new demo phone'\n"
                f"  python manage.py staff_totp_enroll {DEMO_ADMIN}\n"
            )
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser(DEMO_ADMIN, "", password)
        enrolment = staff_totp_enrol(user=user, actor=self.actor())
        self.stdout.write(
            "\nDemo administrator for http://127.0.0.1:8000/admin/ (shown once):\n"
            f"  username {DEMO_ADMIN}, password {password}\n"
            + enrolment_text(
                DEMO_ADMIN, enrolment.uri, enrolment.recovery_codes, qr=sys.stdout.isatty()
            ),
            ending="",
        )
