"""The partner command line against a live server, as a partner runs it."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import click
import pytest

from consortium_client import cli
from consortium_client.config import ENVIRONMENT
from consortium_client.keys import private_key_load, public_key_pem
from hashes.models import Entry, HashList
from partners import services
from tests.conftest import ADMIN, pdq
from tests.factories import HashListFactory, PartnerFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def partner_setup(live_server, tmp_path: Path) -> dict[str, str]:
    partner = PartnerFactory(name="cli-partner")
    HashListFactory(name="cli-list", owner=partner, visibility=HashList.Visibility.ALL)
    _, api_key = services.apikey_create(partner=partner, scopes=["submit", "read"], actor=ADMIN)
    assert cli.main(["keygen", "--out", str(tmp_path / "key")]) == 0
    public = public_key_pem(private_key_load((tmp_path / "key.pem").read_bytes()).public_key())
    services.signing_key_register(partner=partner, public_key=public, actor=ADMIN)
    return {"url": live_server.url, "key": api_key, "private": str(tmp_path / "key.pem")}


def _run(setup: dict[str, str], *args: str) -> int:
    return cli.main(["--url", setup["url"], "--api-key", setup["key"], *args])


def _submit(setup: dict[str, str], hashes: Path, list_name: str = "cli-list") -> int:
    """`consortium submit` of a hashes file, signed with the partner's key."""
    return _run(setup, "submit", "--key", setup["private"], "--list", list_name, str(hashes))


def test_cli_submits_syncs_and_revokes(partner_setup, tmp_path: Path, capsys) -> None:
    hashes = tmp_path / "hashes.txt"
    values = [pdq(), pdq()]
    hashes.write_text("# two hashes\n" + "".join(f"pdq {v.upper()}\n" for v in values))
    assert (
        _run(
            partner_setup,
            "submit",
            "--key",
            partner_setup["private"],
            "--list",
            "cli-list",
            "--labels",
            "ncii",
            str(hashes),
        )
        == 0
    )
    created = json.loads(capsys.readouterr().out)
    assert [e["value"] for e in created["entries"]] == values

    cursor = tmp_path / "cursor"
    assert _run(partner_setup, "feed", "--cursor-file", str(cursor)) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["value"] for e in events if e["type"] == "entry_added"] == values

    first = created["entries"][0]["id"]
    assert (
        _run(
            partner_setup,
            "revoke",
            "--key",
            partner_setup["private"],
            "--reason",
            "mistake",
            str(first),
        )
        == 0
    )
    capsys.readouterr()
    assert Entry.objects.get(pk=first).status == Entry.Status.REVOKED

    assert _run(partner_setup, "feed", "--cursor-file", str(cursor)) == 0
    (tombstone,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (tombstone["type"], tombstone["entry"]) == ("entry_revoked", first)


def test_cli_sign_then_submit_an_envelope(partner_setup, tmp_path: Path, capsys) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"md5:{'a' * 32}\n")
    assert (
        cli.main(["sign", "--key", partner_setup["private"], "--list", "cli-list", str(hashes)])
        == 0
    )
    envelope = tmp_path / "envelope.json"
    envelope.write_text(capsys.readouterr().out)
    assert _run(partner_setup, "submit", "--envelope", str(envelope)) == 0
    assert json.loads(capsys.readouterr().out)["entries"][0]["value"] == "a" * 32


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pdq abc\n", "pdq value must be 64 hex characters"),
        ("sha1 " + "a" * 40 + "\n", "unknown algorithm"),
        ("# nothing\n", "no hashes to submit"),
    ],
)
def test_cli_refuses_bad_hash_files_in_one_line(
    partner_setup, tmp_path: Path, capsys, content: str, message: str
) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(content)
    assert _submit(partner_setup, hashes) == 1
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1


def test_cli_reports_a_server_refusal_in_one_line(partner_setup, tmp_path: Path, capsys) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {pdq()}\n")
    assert _submit(partner_setup, hashes, "no-such-list") == 1
    error = capsys.readouterr().err
    assert "unknown-list" in error
    assert error.count("\n") == 1


def test_cli_reports_a_wrong_api_key(partner_setup, capsys) -> None:
    assert cli.main(["--url", partner_setup["url"], "--api-key", "csk_000000000000_x", "feed"]) == 1
    assert "invalid-api-key" in capsys.readouterr().err


def test_cli_keygen_refuses_to_overwrite_a_private_key(partner_setup, capsys) -> None:
    out = partner_setup["private"].removesuffix(".pem")
    assert cli.main(["keygen", "--out", out]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err


def test_cli_matches_an_image_against_its_mirror(partner_setup, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from consortium_client.imaging import image_file_hashes
    from tests.test_matching import picture

    original, other = tmp_path / "original.png", tmp_path / "other.png"
    picture(seed=11).save(original)
    picture(seed=12).save(other)
    resized = tmp_path / "resized.jpg"
    Image.open(original).resize((128, 128)).save(resized, quality=40)
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {image_file_hashes(original).values['pdq']}\n")
    assert _submit(partner_setup, hashes) == 0
    capsys.readouterr()
    mirror = tmp_path / "mirror.jsonl"
    assert _run(partner_setup, "feed") == 0
    mirror.write_text(capsys.readouterr().out)

    assert cli.main(["match", "--mirror", str(mirror), str(resized)]) == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["algorithm"] for f in found] == ["pdq"]
    assert cli.main(["match", "--mirror", str(mirror), str(other)]) == 0
    assert capsys.readouterr().out == ""
    assert cli.main(["match", "--mirror", str(mirror), str(hashes)]) == 1
    error = capsys.readouterr().err
    assert "not an image in an accepted format" in error
    assert error.count("\n") == 1


def _commands(
    command: click.Command, path: str = "consortium"
) -> Iterator[tuple[str, click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _commands(sub, f"{path} {name}")


def test_cli_help_explains_every_command_option_and_the_environment(capsys) -> None:
    undocumented = [
        f"{path} {'/'.join(param.opts)}"
        for path, command in _commands(cli.consortium)
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert undocumented == []
    assert [path for path, command in _commands(cli.consortium) if not command.help] == []
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for variable in ENVIRONMENT.values():
        assert variable in out
    # Every command's help, through main() as the installed command runs it.
    for path, _ in _commands(cli.consortium):
        assert cli.main([*path.split()[1:], "--help"]) == 0, path
        out, err = capsys.readouterr()
        assert out.startswith(f"Usage: {path} "), path
        assert err == ""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_cli_reports_a_refused_connection_in_one_sentence(capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert cli.main(["--url", url, "--api-key", "csk_x", "feed"]) == 1
    error = capsys.readouterr().err
    # Tried again with backoff before giving up: 1 + 4 retries.
    assert error == f"consortium: cannot reach the server at {url}: connection refused " + (
        "(is the server running, and is the URL right?); 5 attempts\n"
    )


def test_cli_reports_a_silent_server_in_one_sentence(capsys) -> None:
    # A server that accepts the connection and never answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code = cli.main(["--url", url, "--api-key", "csk_x", "--timeout", "0.5", "feed"])
    assert code == 1
    error = capsys.readouterr().err
    assert error == (
        f"consortium: cannot reach the server at {url}: no answer within 0.5 seconds; 5 attempts\n"
    )


@pytest.mark.parametrize("suffix", ["/", "/api/v1", "/api/v1/"])
def test_cli_accepts_a_url_copied_with_the_api_prefix(
    partner_setup, tmp_path: Path, capsys, suffix: str
) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {pdq()}\n")
    setup = {**partner_setup, "url": partner_setup["url"] + suffix}
    assert _submit(setup, hashes) == 0
    (entry,) = json.loads(capsys.readouterr().out)["entries"]
    assert _run(setup, "feed") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["index"] for e in events if e["type"] == "entry_added"] == [entry["id"]]


def test_cli_accepts_a_byte_order_mark_in_a_hashes_file(
    partner_setup, tmp_path: Path, capsys
) -> None:
    hashes = tmp_path / "hashes.txt"
    value = pdq()
    # As Notepad saves "UTF-8": a byte-order mark, then CRLF line ends.
    hashes.write_bytes(f"pdq {value}\r\nmd5 {'b' * 32}\r\n".encode("utf-8-sig"))
    assert _submit(partner_setup, hashes) == 0
    created = json.loads(capsys.readouterr().out)["entries"]
    assert [(e["algorithm"], e["value"]) for e in created] == [("pdq", value), ("md5", "b" * 32)]


def test_cli_hash_output_submits_and_submit_ids_revoke(
    partner_setup, tmp_path: Path, capsys
) -> None:
    from tests.test_matching import picture

    image = tmp_path / "photo.png"
    picture(seed=21).save(image)
    assert cli.main(["hash", "--algorithm", "md5", "--algorithm", "pdq", str(image)]) == 0
    hashes = tmp_path / "photo.jsonl"
    hashes.write_text(capsys.readouterr().out)
    (line,) = [json.loads(line) for line in hashes.read_text().splitlines()]
    assert list(line) == ["path", "pdq", "md5", "pdq_quality"]
    assert line["path"] == str(image)

    assert (
        _run(
            partner_setup,
            "submit",
            "--ids",
            "--key",
            partner_setup["private"],
            "--list",
            "cli-list",
            str(hashes),
        )
        == 0
    )
    ids = capsys.readouterr().out.split()
    entries = Entry.objects.filter(pk__in=[int(i) for i in ids]).order_by("pk")
    assert [e.algorithm for e in entries] == ["pdq", "md5"]

    assert (
        _run(
            partner_setup,
            "revoke",
            "--key",
            partner_setup["private"],
            "--reason",
            "mistake",
            ids[0],
        )
        == 0
    )
    assert Entry.objects.get(pk=int(ids[0])).status == Entry.Status.REVOKED


def test_cli_hash_refuses_a_non_image_in_one_line(tmp_path: Path, capsys) -> None:
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello\n")
    assert cli.main(["hash", str(not_image)]) == 1
    error = capsys.readouterr().err
    assert "not an image in an accepted format" in error
    assert error.count("\n") == 1


def test_cli_reports_a_server_that_is_not_consortium_in_one_line(tmp_path: Path, capsys) -> None:
    # Any web server that answers 200 with a page, as a proxy or another site would.
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>Welcome</html>")

        def log_message(self, *args: object) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), Page) as server:
        threading.Thread(target=server.handle_request, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert cli.main(["--url", url, "--api-key", "csk_x", "feed"]) == 1
    error = capsys.readouterr().err
    assert f"{url} answered with something other than JSON" in error
    assert error.count("\n") == 1
