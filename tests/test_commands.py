"""The onboarding management commands: each does its one change through the services, and
bad input stops with a one-line CommandError rather than a traceback."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management import CommandError, call_command, get_commands
from django.test import Client

from audit.models import AccessEvent, LogEvent
from consortium_client.keys import key_generate, key_id, private_key_pem, public_key_pem
from hashes.models import HashList
from partners.apikeys import apikey_digest
from partners.models import ApiKey, Partner, SharingGroup, SigningKey
from tests.authenticator import totp_code
from tests.conftest import PartnerClient, problem
from tests.factories import PartnerFactory, SharingGroupFactory


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def refused(*args: str) -> str:
    """The message of the CommandError that `args` stops with; it must be one line."""
    with pytest.raises(CommandError) as raised:
        run(*args)
    message = str(raised.value)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def me(key: str) -> object:
    return Client().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {key}")


def last_access(action: str) -> AccessEvent:
    return AccessEvent.objects.filter(action=action).order_by("-id").first()


# Partners ----------------------------------------------------------------------------------


def test_onboard_partner_creates_an_active_partner(db) -> None:
    output = run("onboard_partner", "hotline-a", "--display-name", "Hotline A", "--kind", "hotline")

    partner = Partner.objects.get(name="hotline-a")
    assert (partner.display_name, partner.kind, partner.status) == (
        "Hotline A",
        "hotline",
        "active",
    )
    assert "hotline-a" in output
    assert last_access("partner.onboard").actor == "command:onboard_partner"


def test_onboard_partner_pending(db) -> None:
    run("onboard_partner", "ngo-b", "--display-name", "NGO B", "--pending")

    assert Partner.objects.get(name="ngo-b").status == Partner.Status.PENDING


def test_onboard_partner_refuses_a_duplicate(db) -> None:
    PartnerFactory(name="alice")

    message = refused("onboard_partner", "alice", "--display-name", "Alice again")

    assert "alice" in message
    assert Partner.objects.filter(name="alice").count() == 1


@pytest.mark.parametrize("name", ["not a slug!", "partner:alice", "x" * 65])
def test_onboard_partner_refuses_a_name_that_is_not_a_slug(db, name: str) -> None:
    refused("onboard_partner", name, "--display-name", "Bad")

    assert not Partner.objects.filter(display_name="Bad").exists()


def test_partner_suspend_and_activate(alice: PartnerClient) -> None:
    run("partner_suspend", "alice", "--reason", "review")

    assert problem(me(alice.api_key)) == "invalid-api-key"
    suspended = LogEvent.objects.filter(event_type="partner_suspended").get()
    leaf = json.loads(bytes(suspended.leaf))
    assert (leaf["by"], leaf["reason"]) == ("command:partner_suspend", "review")

    run("partner_activate", "alice", "--reason", "cleared")

    assert me(alice.api_key).status_code == 200
    assert LogEvent.objects.filter(event_type="partner_reactivated").count() == 1


def test_partner_activate_a_pending_partner(db) -> None:
    PartnerFactory(name="newcomer", status=Partner.Status.PENDING)

    run("partner_activate", "newcomer", "--reason", "contract signed")

    assert Partner.objects.get(name="newcomer").status == Partner.Status.ACTIVE


@pytest.mark.parametrize("command", ["partner_suspend", "partner_activate"])
def test_partner_status_commands_refuse_unknown_partner(db, command: str) -> None:
    assert "nobody" in refused(command, "nobody", "--reason", "x")


# API keys ----------------------------------------------------------------------------------


def test_apikey_create_prints_a_key_that_works(db) -> None:
    PartnerFactory(name="alice")

    key = run("apikey_create", "alice", "--scopes", "read,submit", "--name", "ci")

    api_key = ApiKey.objects.get(name="ci")
    assert api_key.digest == apikey_digest(key)
    assert api_key.scopes == ["read", "submit"]
    response = me(key)
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    assert (body["name"], body["api_key"]["prefix"]) == ("alice", api_key.prefix)
    assert last_access("apikey.create").actor == "command:apikey_create"


def test_apikey_create_with_expiry_and_networks(db) -> None:
    PartnerFactory(name="alice")

    key = run(
        "apikey_create", "alice", "--scopes", "read", "--expires-in-days", "30",
        "--networks", "10.0.0.0/8",
    )  # fmt: skip

    api_key = ApiKey.objects.get()
    assert api_key.expires_at is not None
    assert api_key.allowed_networks == ["10.0.0.0/8"]
    assert problem(me(key)) == "invalid-api-key"  # the test client calls from 127.0.0.1


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("nobody", "--scopes", "read"), "nobody"),
        (("alice", "--scopes", "read,admin"), "scopes"),
        (("alice", "--scopes", ","), "scopes"),
        (("alice", "--scopes", "read", "--networks", "10.0.0.0/33"), "network"),
        (("alice", "--scopes", "read", "--expires-in-days", "0"), "expires"),
        (("alice", "--scopes", "read", "--expires-in-days", "-3"), "expires"),
    ],
)
def test_apikey_create_refuses_bad_input(db, args: tuple[str, ...], mentions: str) -> None:
    PartnerFactory(name="alice")

    assert mentions in refused("apikey_create", *args)
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize("form", ["prefix", "full key"])
def test_apikey_revoke_by_prefix_or_whole_key(alice: PartnerClient, form: str) -> None:
    prefix = alice.api_key.split("_")[1]

    output = run("apikey_revoke", prefix if form == "prefix" else alice.api_key)

    assert prefix in output
    assert ApiKey.objects.get(prefix=prefix).revoked_at is not None
    assert problem(me(alice.api_key)) == "invalid-api-key"
    assert last_access("apikey.revoke").actor == "command:apikey_revoke"


def test_apikey_revoke_refuses_unknown_prefix(db) -> None:
    assert "0123456789ab" in refused("apikey_revoke", "0123456789ab")


# Signing keys ------------------------------------------------------------------------------


def test_signing_key_add_from_a_pem_file(alice: PartnerClient, tmp_path: Path) -> None:
    private_key = key_generate()
    pem = tmp_path / "second.pub.pem"
    pem.write_bytes(public_key_pem(private_key.public_key()))

    output = run("signing_key_add", "alice", str(pem), "--name", "second")

    expected = key_id(private_key.public_key())
    assert output == expected
    signing_key = SigningKey.objects.get(key_id=expected)
    assert (signing_key.partner.name, signing_key.name) == ("alice", "second")
    registered = LogEvent.objects.filter(event_type="signing_key_registered").order_by("-index")
    leaf = json.loads(bytes(registered.first().leaf))
    assert (leaf["key"], leaf["by"]) == (expected, "command:signing_key_add")
    signing_keys = json.loads(alice.get("/api/v1/me").content)["signing_keys"]
    assert expected in {key["key_id"] for key in signing_keys}


def _write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    "bad_file",
    [
        "missing",
        "empty",
        "text",
        "private key",
        "ecdsa public key",
        "binary",
        "directory",
    ],
)
def test_signing_key_add_refuses_a_bad_key_file(
    alice: PartnerClient, tmp_path: Path, bad_file: str
) -> None:
    ecdsa_public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        if bad_file == "ecdsa public key"
        else b""
    )
    path = {
        "missing": str(tmp_path / "nope.pem"),
        "empty": _write(tmp_path, "empty.pem", b""),
        "text": _write(tmp_path, "text.pem", b"hello, this is not a key\n"),
        "private key": _write(tmp_path, "private.pem", private_key_pem(key_generate())),
        "ecdsa public key": _write(tmp_path, "ecdsa.pem", ecdsa_public),
        "binary": _write(tmp_path, "key.der", b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\xff\xfe"),
        "directory": str(tmp_path),
    }[bad_file]
    keys_before = SigningKey.objects.count()

    refused("signing_key_add", "alice", path)

    assert SigningKey.objects.count() == keys_before


def test_signing_key_add_refuses_unknown_partner_and_duplicate_key(
    alice: PartnerClient, tmp_path: Path
) -> None:
    pem = _write(tmp_path, "alice.pub.pem", public_key_pem(alice.private_key.public_key()))

    assert "nobody" in refused("signing_key_add", "nobody", pem)
    assert "already registered" in refused("signing_key_add", "alice", pem)
    assert SigningKey.objects.count() == 1


def test_signing_key_revoke(alice: PartnerClient, shared_list: HashList) -> None:
    output = run("signing_key_revoke", alice.signing_key.key_id, "--reason", "laptop lost")

    assert alice.signing_key.key_id in output
    revoked = LogEvent.objects.filter(event_type="signing_key_revoked").get()
    leaf = json.loads(bytes(revoked.leaf))
    assert (leaf["key"], leaf["reason"]) == (alice.signing_key.key_id, "laptop lost")
    response = alice.submit("ncii", [{"algorithm": "md5", "value": "0" * 32}])
    assert problem(response) == "invalid-signature"


def test_signing_key_revoke_refuses_unknown_key(db) -> None:
    assert "abc" in refused("signing_key_revoke", "abc")


# Groups and lists --------------------------------------------------------------------------


def test_sharing_group_create_and_replace_members(alice: PartnerClient, bob: PartnerClient) -> None:
    run("sharing_group_create", "hotlines", "--members", "alice, bob")

    group = SharingGroup.objects.get(name="hotlines")
    assert set(group.members.values_list("name", flat=True)) == {"alice", "bob"}

    run("sharing_group_create", "hotlines", "--members", "alice")

    assert set(group.members.values_list("name", flat=True)) == {"alice"}
    assert last_access("sharing_group.set").detail == {"members": ["alice"]}


def test_sharing_group_create_refuses_unknown_member(alice: PartnerClient) -> None:
    assert "nobody" in refused("sharing_group_create", "hotlines", "--members", "alice,nobody")
    assert not SharingGroup.objects.exists()


def test_sharing_group_create_refuses_a_name_that_is_not_a_slug(alice: PartnerClient) -> None:
    assert "slug" in refused("sharing_group_create", "hot lines", "--members", "alice")
    assert not SharingGroup.objects.exists()


def test_list_create_for_all(alice: PartnerClient, bob: PartnerClient) -> None:
    run(
        "list_create", "ncii", "--owner", "alice", "--visibility", "all", "--purpose", "ncii",
        "--contributors", "owner",
    )  # fmt: skip

    hash_list = HashList.objects.get(name="ncii")
    assert (hash_list.owner.name, hash_list.visibility, hash_list.contributors) == (
        "alice",
        "all",
        "owner",
    )
    lists = json.loads(bob.get("/api/v1/lists").content)
    assert [(item["name"], item["may_submit"]) for item in lists] == [("ncii", False)]
    assert last_access("list.create").actor == "command:list_create"


def test_list_create_for_a_group(alice: PartnerClient, bob: PartnerClient) -> None:
    group = SharingGroupFactory(name="hotlines")
    group.members.set([alice.partner])

    run("list_create", "csam", "--owner", "alice", "--visibility", "group", "--group", "hotlines")

    assert HashList.objects.get(name="csam").group == group
    assert json.loads(bob.get("/api/v1/lists").content) == []


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (("l1", "--owner", "nobody", "--visibility", "all"), "nobody"),
        (("l1", "--owner", "alice", "--visibility", "group", "--group", "none"), "none"),
        (("l1", "--owner", "alice", "--visibility", "group"), "group"),
        (("l1", "--owner", "alice", "--visibility", "all", "--group", "hotlines"), "group"),
        (("taken", "--owner", "alice", "--visibility", "all"), "taken"),
        (("Not A Slug", "--owner", "alice", "--visibility", "all"), "slug"),
    ],
)
def test_list_create_refuses_bad_input(
    alice: PartnerClient, args: tuple[str, ...], mentions: str
) -> None:
    SharingGroupFactory(name="hotlines")
    run("list_create", "taken", "--owner", "alice", "--visibility", "owner")

    assert mentions in refused("list_create", *args)
    assert list(HashList.objects.values_list("name", flat=True)) == ["taken"]


# Quick start -------------------------------------------------------------------------------


def test_demo_setup_belongs_to_the_app_that_owns_lists() -> None:
    # It creates a list; partners knows nothing of what is shared.
    assert get_commands()["demo_setup"] == "hashes"


def test_demo_setup_makes_a_working_demo_and_can_run_again(db, settings, tmp_path: Path) -> None:
    settings.QUICK_START = True
    first = run("demo_setup", "--directory", str(tmp_path))
    second = run("demo_setup", "--directory", str(tmp_path))

    keys = [re.search(r"API key \(shown once\):\s+(\S+)", out) for out in (first, second)]
    assert all(keys)
    for key in keys:
        assert me(key.group(1)).status_code == 200  # type: ignore[union-attr]
    demo = Partner.objects.get(name="demo")
    assert HashList.objects.get(name="demo").owner == demo
    assert SigningKey.objects.filter(partner=demo).count() == 1
    assert (tmp_path / "signing-key.pem").stat().st_mode & 0o077 == 0
    # The demo administrator's password and second factor are printed once, and work.
    (password,) = re.findall(r"username admin, password (\S+)", first)
    assert re.findall(r"otpauth://\S+", second) == []
    assert "staff_totp_enroll admin" in second
    (uri,) = re.findall(r"otpauth://\S+", first)
    client = Client()
    response = client.post(
        "/admin/login/",
        {"username": "admin", "password": password, "otp_token": totp_code(uri), "next": "/admin/"},
    )
    assert response.status_code == 302, response.content.decode()[-1500:]
    assert client.get("/admin/").status_code == 200


def test_demo_setup_refuses_outside_the_quick_start(db, tmp_path: Path) -> None:
    message = refused("demo_setup", "--directory", str(tmp_path))

    assert "quick start" in message
    assert not Partner.objects.filter(name="demo").exists()
