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

from audit.services import checkpoint_sign
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
    checkpoint_sign()  # the server's checkpoint worker, every few seconds
    mirror = tmp_path / "mirror.db"
    assert _run(partner_setup, "--mirror", str(mirror), "sync") == 0
    assert "1 added" in capsys.readouterr().out

    # Offline from here: the command reads the verified mirror, never the server.
    assert cli.main(["--mirror", str(mirror), "match", "--json", str(resized)]) == 1
    (found,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(m["algorithm"], m["list"]) for m in found["matches"]] == [("pdq", "cli-list")]
    assert cli.main(["--mirror", str(mirror), "match", str(other)]) == 0
    assert capsys.readouterr().out == f"{other}: no match\n"
    assert cli.main(["--mirror", str(mirror), "match", str(hashes)]) == 2
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


# --- hash: directories, refusals, formats ---------------------------------------------------


def _photo_directory(root: Path) -> dict[str, Path]:
    """Images and things that are not: what a partner's export folder holds."""
    from tests.test_matching import picture

    root.mkdir()
    (root / "nested").mkdir()
    files = {
        "png": root / "a.png",
        "jpeg": root / "nested" / "b.jpg",
        "corrupt": root / "c-corrupt.jpg",
        "empty": root / "d-empty.jpg",
        "text": root / "e-notes.txt",
        "svg": root / "f-drawing.svg",
    }
    picture(seed=31).save(files["png"])
    picture(seed=32).save(files["jpeg"], quality=80)
    jpeg = files["jpeg"].read_bytes()
    # A JPEG's header, then garbage where the image data should be.
    files["corrupt"].write_bytes(jpeg[:200] + bytes(range(256)) * 8)
    files["empty"].write_bytes(b"")
    files["text"].write_text("not a picture\n")
    files["svg"].write_text('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>\n')
    # Hidden files in a directory (thumbnail caches, metadata) are never the images meant.
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return files


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_cli_hash_reports_each_unhashable_file_and_hashes_the_rest(
    tmp_path: Path, capsys, jobs: str
) -> None:
    from consortium_client.imaging import image_file_hashes

    files = _photo_directory(tmp_path / "photos")
    assert cli.main(["hash", "--jobs", jobs, str(tmp_path / "photos")]) == 1
    out, err = capsys.readouterr()
    hashed = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in hashed] == [str(files["png"]), str(files["jpeg"])]
    assert hashed[1]["pdq"] == image_file_hashes(files["jpeg"]).values["pdq"]
    assert set(hashed[0]) == {"path", "pdq", "phash", "dhash", "ahash", "whash", "md5"} | {
        "sha256",
        "pdq_quality",
    }
    assert err.splitlines() == [
        f"consortium: {files['corrupt']}: image cannot be decoded: cannot load this image",
        f"consortium: {files['empty']}: not an image in an accepted format "
        "(JPEG, PNG, GIF, WEBP, BMP, TIFF)",
        f"consortium: {files['text']}: not an image in an accepted format "
        "(JPEG, PNG, GIF, WEBP, BMP, TIFF)",
        f"consortium: {files['svg']}: not an image in an accepted format "
        "(JPEG, PNG, GIF, WEBP, BMP, TIFF)",
    ]


def test_cli_hash_exit_status_says_whether_all_went_well(tmp_path: Path, capsys) -> None:
    files = _photo_directory(tmp_path / "photos")
    assert cli.main(["hash", str(files["png"]), str(files["jpeg"])]) == 0
    assert capsys.readouterr().err == ""
    assert cli.main(["hash", str(tmp_path / "missing.jpg")]) == 1
    assert capsys.readouterr().err == (
        f"consortium: {tmp_path / 'missing.jpg'}: cannot read: No such file or directory\n"
    )
    assert cli.main(["hash", "--algorithm", "sha1", str(files["png"])]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert cli.main(["hash"]) == 2
    assert "Missing argument 'PATHS...'" in capsys.readouterr().err


def test_cli_hash_writes_csv_with_the_chosen_algorithms(tmp_path: Path, capsys) -> None:
    import csv

    files = _photo_directory(tmp_path / "photos")
    args = ["hash", "--format", "csv", "-a", "pdq", "-a", "md5", str(files["png"])]
    assert cli.main([*args, str(files["text"])]) == 1
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["path", "pdq", "md5", "pdq_quality"]
    assert [row[0] for row in rows[1:]] == [str(files["png"])]
    assert len(rows[1][1]) == 64


# --- submit: chunked, resumable ------------------------------------------------------------


class _Proxy:
    """An HTTP proxy in front of the live server that, when told, forwards one POST and then
    never answers it: the client is killed having sent a batch the server stored."""

    def __init__(self, upstream: str) -> None:
        import http.client
        from http.server import ThreadingHTTPServer
        from urllib.parse import urlsplit

        self.posts = 0
        self.hang_on_post: int | None = None
        self.forwarded_hung = threading.Event()
        self.release = threading.Event()
        target = urlsplit(upstream)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection(target.hostname, target.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                content = answer.read()
                if self.command == "POST":
                    proxy.posts += 1
                    if proxy.posts == proxy.hang_on_post:
                        proxy.forwarded_hung.set()
                        proxy.release.wait(60)
                        return
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type") or "")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_cli_submit_resumes_after_a_kill_without_duplicates(
    partner_setup, tmp_path: Path, capsys
) -> None:
    import os
    import subprocess
    import sys

    values = [pdq() for _ in range(5)]
    hashes = tmp_path / "hashes.txt"
    hashes.write_text("".join(f"pdq {v}\n" for v in values))
    proxy = _Proxy(partner_setup["url"])
    command = [
        "--url", proxy.url, "--api-key", partner_setup["key"], "submit", "--ids",
        "--key", partner_setup["private"], "--list", "cli-list", "--batch-size", "2", str(hashes),
    ]  # fmt: skip
    try:
        # The second batch reaches the server, which stores it; its answer never comes back.
        proxy.hang_on_post = 2
        env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parent.parent)}
        process = subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "consortium_client", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proxy.forwarded_hung.wait(60)
        process.kill()
        out, _ = process.communicate(timeout=30)
        assert len(out.split()) == 2  # the first batch's ids
        stored = Entry.objects.filter(hash_list__name="cli-list")
        assert sorted(stored.values_list("value", flat=True)) == sorted(values[:4])
        proxy.release.set()

        assert cli.main(command) == 0
        out, err = capsys.readouterr()
        assert "1 batches answered, 1 to send again" in err
        ids = [int(i) for i in out.split()]
        assert len(ids) == 5
        # The second batch was sent again as recorded, and stored once.
        assert sorted(stored.values_list("pk", flat=True)) == sorted(ids)
        assert sorted(stored.values_list("value", flat=True)) == sorted(values)
        posts = proxy.posts

        # Run again: the journal says everything was answered; nothing is sent.
        assert cli.main(command) == 0
        assert [int(i) for i in capsys.readouterr().out.split()] == ids
        assert proxy.posts == posts
        assert stored.count() == 5
    finally:
        proxy.close()


def test_cli_submit_refuses_without_a_list_or_key_in_one_line(
    partner_setup, tmp_path: Path, capsys
) -> None:
    hashes = tmp_path / "hashes.txt"
    hashes.write_text(f"pdq {pdq()}\n")
    assert _run(partner_setup, "submit", str(hashes)) == 2
    assert capsys.readouterr().err == (
        "consortium: submit needs --list and hashes files or images (or --envelope)\n"
    )
    assert _run(partner_setup, "submit", "--list", "cli-list", str(hashes)) == 2
    assert capsys.readouterr().err.startswith("consortium: no signing key: pass --key")
    assert not Entry.objects.exists()


def test_cli_submit_images_with_the_configured_signing_key(
    partner_setup, tmp_path: Path, capsys, monkeypatch
) -> None:
    files = _photo_directory(tmp_path / "photos")
    monkeypatch.setenv("CONSORTIUM_SIGNING_KEY", partner_setup["private"])
    code = _run(
        partner_setup, "submit", "--images", "-a", "pdq", "--ids", "--list", "cli-list",
        str(files["png"]), str(files["text"]),
    )  # fmt: skip
    # The text file is reported and skipped; the image is submitted.
    assert code == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1
    (entry,) = Entry.objects.filter(pk__in=[int(i) for i in out.split()])
    assert entry.algorithm == "pdq"


# --- status, keygen, and errors as the installed command shows them ------------------------


def test_cli_status_shows_the_partner_and_what_is_local(partner_setup, capsys) -> None:
    assert _run(partner_setup, "status") == 0
    out = capsys.readouterr().out
    assert "partner       cli-partner" in out
    assert f"api key       {partner_setup['key'][:16]}_**** scopes read,submit" in out, out
    assert "mirror        none at " in out
    assert "checkpoint    none at " in out
    assert _run(partner_setup, "status", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["me"]["name"] == "cli-partner"
    assert report["mirror"]["exists"] is False


def test_cli_status_without_a_server_still_shows_what_is_local(capsys) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    assert cli.main(["--url", url, "status"]) == 1
    out, err = capsys.readouterr()
    assert "mirror        none at " in out
    assert err == "consortium: no API key: pass --api-key, or set CONSORTIUM_API_KEY or " + (
        "api_key in the config file\n"
    )


def test_cli_keygen_writes_a_private_key_only_its_owner_reads(tmp_path: Path, capsys) -> None:
    import stat

    from consortium_client.keys import key_id, public_key_load

    assert cli.main(["keygen", "--out", str(tmp_path / "acme")]) == 0
    out, err = capsys.readouterr()
    assert stat.S_IMODE((tmp_path / "acme.pem").stat().st_mode) == 0o600
    public = public_key_load((tmp_path / "acme.pub.pem").read_bytes())
    assert out == key_id(public) + "\n"
    assert f"signing_key_add YOUR-PARTNER-NAME {tmp_path / 'acme.pub.pem'}" in err


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["nonsense"], 2, "consortium: No such command 'nonsense' (see 'consortium --help')"),
        (["hash", "--format", "xml", "x"], 2, "consortium: Invalid value for '--format'"),
        (["--timeout", "soon", "config"], 2, "consortium: Invalid value for '--timeout'"),
        (["revoke", "--reason", "r", "1"], 2, "consortium: no signing key: pass --key"),
        (["verify", "entry", "--leaf", "/nonexistent"], 2, "consortium: Missing option"),
        (["feed"], 2, "consortium: no API key"),
    ],
)
def test_cli_errors_are_one_line_without_a_traceback_in_the_installed_command(
    tmp_path: Path, args: list[str], status: int, message: str
) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parent.parent)}
    done = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "consortium_client", *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == status
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_cli_submits_an_images_variants_and_its_mirror_matches_edited_copies(
    partner_setup, tmp_path: Path, capsys
) -> None:
    from PIL import Image, ImageDraw

    from consortium_client.imaging import image_file_hashes
    from hashes.models import EntryVariant
    from tests.test_matching import picture

    original = tmp_path / "original.png"
    image = picture(seed=1, size=512)
    image.save(original)
    width, height = image.size
    cropped = tmp_path / "cropped.jpg"
    image.crop((round(width * 0.1), 0, width, height)).save(cropped, quality=90)
    captioned = tmp_path / "captioned.png"
    canvas = Image.new("RGB", (width, round(height * 1.2)), "white")
    canvas.paste(image, (0, round(height * 0.2)))
    ImageDraw.Draw(canvas).text((10, 10), "look at this", fill="black")
    canvas.save(captioned)
    # PDQ alone misses both: each is farther than the default distance from the original.
    plain = int(image_file_hashes(original).values["pdq"], 16)
    for copy in (cropped, captioned):
        assert bin(plain ^ int(image_file_hashes(copy).values["pdq"], 16)).count("1") > 31

    code = _run(
        partner_setup, "submit", "--images", "-a", "pdq", "--ids", "--key",
        partner_setup["private"], "--list", "cli-list", str(original),
    )  # fmt: skip
    assert code == 0
    entry_id = int(capsys.readouterr().out.split()[0])
    names = set(EntryVariant.objects.filter(entry_id=entry_id).values_list("name", flat=True))
    assert {"crop-left-10", "rotate-3"} <= names
    checkpoint_sign()
    mirror = tmp_path / "mirror.db"
    assert _run(partner_setup, "--mirror", str(mirror), "sync") == 0
    capsys.readouterr()

    assert cli.main(["--mirror", str(mirror), "match", "--json", str(cropped)]) == 1
    (found,) = json.loads(capsys.readouterr().out)["matches"]
    assert (found["entry"], found["variant"], found["rule"]) == (
        entry_id,
        "crop-left-10",
        "pdq-variant",
    )
    assert cli.main(["--mirror", str(mirror), "match", str(captioned)]) == 1
    line = capsys.readouterr().out
    assert f"entry {entry_id}" in line
    assert "rule pdq-canonical" in line


def test_cli_submit_images_without_variants(partner_setup, tmp_path: Path, capsys) -> None:
    from hashes.models import EntryVariant
    from tests.test_matching import picture

    original = tmp_path / "original.png"
    picture(seed=2, size=256).save(original)
    code = _run(
        partner_setup, "submit", "--images", "-a", "pdq", "--ids", "--no-variants", "--key",
        partner_setup["private"], "--list", "cli-list", str(original),
    )  # fmt: skip
    assert code == 0
    entry_id = int(capsys.readouterr().out.split()[0])
    assert Entry.objects.filter(pk=entry_id).exists()
    assert not EntryVariant.objects.filter(entry_id=entry_id).exists()
