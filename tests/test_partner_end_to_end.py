"""The partner client end to end, as two partners run `consortium` against a live server.

One partner hashes a directory of photos on its own machine and submits the hashes; another
syncs its verified mirror and matches a resized copy offline; the first revokes; after the
next sync the copy no longer matches. Everything goes through the command's `main()` and
real HTTP (pytest-django's live_server on PostgreSQL)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from audit.services import checkpoint_sign
from consortium_client import cli
from consortium_client.keys import private_key_load, public_key_pem
from hashes.models import Entry, HashList
from partners import services
from tests.client.test_imaging import scene
from tests.conftest import ADMIN
from tests.factories import HashListFactory, PartnerFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _closed_url() -> str:
    """A URL nothing answers on: what the matching partner's network looks like offline."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_hash_submit_sync_match_revoke_sync_no_match(
    live_server, tmp_path: Path, capsys, monkeypatch
) -> None:
    hotline = PartnerFactory(name="hotline")
    platform = PartnerFactory(name="platform")
    HashListFactory(name="ncii", owner=hotline, visibility=HashList.Visibility.ALL)
    _, hotline_key = services.apikey_create(partner=hotline, scopes=["submit", "read"], actor=ADMIN)
    _, platform_key = services.apikey_create(partner=platform, scopes=["read"], actor=ADMIN)
    assert cli.main(["keygen", "--out", str(tmp_path / "hotline")]) == 0
    signing_key = tmp_path / "hotline.pem"
    public = public_key_pem(private_key_load(signing_key.read_bytes()).public_key())
    services.signing_key_register(partner=hotline, public_key=public, actor=ADMIN)
    capsys.readouterr()

    # The hotline's machine: photos hashed where they are, never sent.
    photos = tmp_path / "photos"
    (photos / "2025").mkdir(parents=True)
    scene(seed=1).save(photos / "one.png")
    scene(seed=2).save(photos / "2025" / "two.jpg", quality=92)
    scene(seed=3).save(photos / "2025" / "three.png")
    assert cli.main(["hash", str(photos)]) == 0
    hashes = tmp_path / "hashes.jsonl"
    hashes.write_text(capsys.readouterr().out)
    assert len(hashes.read_text().splitlines()) == 3

    def hotline_run(*args: str) -> int:
        return cli.main(["--url", live_server.url, "--api-key", hotline_key, *args])

    monkeypatch.setenv("CONSORTIUM_SIGNING_KEY", str(signing_key))
    assert hotline_run("submit", "--list", "ncii", "--labels", "ncii", "--ids", str(hashes)) == 0
    submitted = [int(line) for line in capsys.readouterr().out.split()]
    assert Entry.objects.filter(pk__in=submitted, status=Entry.Status.ACTIVE).count() == len(
        submitted
    )
    checkpoint_sign()  # the server's checkpoint worker

    # The platform's machine: a verified mirror, then matching with no server at all.
    mirror = tmp_path / "platform" / "mirror.db"
    platform_args = ["--api-key", platform_key, "--mirror", str(mirror)]

    def platform_sync() -> str:
        assert cli.main(["--url", live_server.url, *platform_args, "sync"]) == 0
        return capsys.readouterr().out

    def platform_match(image: Path) -> tuple[int, list[dict[str, object]]]:
        status = cli.main(["--url", _closed_url(), *platform_args, "match", "--json", str(image)])
        (line,) = capsys.readouterr().out.splitlines()
        return status, json.loads(line)["matches"]

    assert f"{len(submitted)} added" in platform_sync()
    upload = tmp_path / "upload.jpg"
    scene(seed=2).resize((320, 240)).save(upload, quality=60)
    status, matches = platform_match(upload)
    assert status == 1
    assert {m["algorithm"] for m in matches} >= {"pdq"}
    assert {m["list"] for m in matches} == {"ncii"}
    assert {m["partner"] for m in matches} == {"hotline"}
    assert {m["entry"] for m in matches} <= set(submitted)
    unrelated = tmp_path / "unrelated.jpg"
    scene(seed=99).save(unrelated, quality=80)
    assert platform_match(unrelated) == (0, [])

    # The hotline withdraws what the copy matched; once synced, the copy no longer matches.
    matched = sorted({int(str(m["entry"])) for m in matches})
    assert hotline_run("revoke", "--reason", "consent withdrawn", *map(str, matched)) == 0
    capsys.readouterr()
    checkpoint_sign()
    assert f"{len(matched)} revoked" in platform_sync()
    assert platform_match(upload) == (0, [])

    # The mirror says what it holds and keeps why entries stopped matching.
    assert cli.main(["--url", _closed_url(), *platform_args, "status", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)["mirror"]
    assert report["entries"] == {
        "active": len(submitted) - len(matched),
        "revoked": len(matched),
        "erased": 0,
    }
    assert report["tree_size"] > report["cursor"] >= max(submitted)
