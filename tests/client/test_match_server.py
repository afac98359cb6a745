import json
import os
import secrets
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from consortium_client.cli_match import match_command
from consortium_client.match_server import (
    MAX_REQUEST_BYTES,
    MatchClient,
    MatchServerError,
    MatchService,
    server_open,
)
from tests.client.mirrorrows import MirrorRows
from tests.client.test_cli_match import config_for
from tests.client.test_mirror_index import flipped


@pytest.fixture
def rows(tmp_path):
    return MirrorRows(tmp_path / "mirror.db")


@pytest.fixture
def serving(tmp_path, rows):
    """A running server on a Unix socket over `rows`' mirror, and a watcher polling fast."""
    rows.add("pdq", secrets.token_hex(32))
    service = MatchService(rows.path)
    path = tmp_path / "run" / "match.sock"
    server = server_open(service, socket_path=path, port=None)
    stop = threading.Event()
    threads = [
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}),
        threading.Thread(target=service.watch, args=(stop, 0.05)),
    ]
    for thread in threads:
        thread.start()
    yield service, path
    stop.set()
    server.shutdown()
    server.server_close()
    for thread in threads:
        thread.join()


def raw(path, *lines: bytes) -> list[dict | None]:
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(path))
        stream = connection.makefile("rwb")
        answers = []
        for line in lines:
            stream.write(line)
            stream.flush()
            answer = stream.readline()
            answers.append(json.loads(answer) if answer else None)
        return answers


def test_the_socket_is_private_to_its_user(serving):
    _, path = serving
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_concurrent_clients_each_get_their_own_answers(serving, rows):
    _, path = serving
    values = [secrets.token_hex(32) for _ in range(8)]
    ids = [rows.add("pdq", value) for value in values]
    time.sleep(0.3)  # the watcher applies the adds

    def client(position: int) -> list[int]:
        found = []
        with MatchClient(str(path)) as connection:
            for _ in range(25):
                [result] = connection.search([("pdq", flipped(values[position], 7))])
                found += [m.entry for m in result.matches]
        return found

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client, range(8)))
    assert answers == [[entry] * 25 for entry in ids]


def test_garbage_gets_one_error_line_and_the_connection_stays_usable(serving):
    _, path = serving
    value = "00" * 32
    good = json.dumps({"hashes": [{"algorithm": "pdq", "value": value}], "id": 7}).encode()
    answers = raw(
        path,
        b"not json\n",
        b"\xff\xfe\n",
        b"[1, 2]\n",
        b'{"hashes": []}\n',
        b'{"hashes": [{"algorithm": "pdq"}]}\n',
        b'{"hashes": [{"algorithm": "sha1", "value": "00"}], "id": "x"}\n',
        b'{"hashes": [{"algorithm": "pdq", "value": "zz"}]}\n',
        b'{"hashes": [{"algorithm": "md5", "value": "'
        + b"0" * 32
        + b'"}], "radius": {"md5": 3}}\n',
        b'{"hashes": [{"algorithm": "pdq", "value": "' + value.encode() + b'"}], "limit": 0}\n',
        b'{"op": "drop tables"}\n',
        good + b"\n",
    )
    assert all("error" in answer for answer in answers[:-1])
    assert answers[5]["id"] == "x"
    assert "unknown algorithm" in answers[5]["error"]
    assert answers[-1]["id"] == 7
    assert answers[-1]["results"][0]["matches"] == []


def test_an_oversized_request_is_refused_and_the_server_keeps_serving(serving):
    _, path = serving
    with socket.socket(socket.AF_UNIX) as connection:
        connection.connect(str(path))
        connection.sendall(b"x" * (MAX_REQUEST_BYTES + 10) + b"\n")
        answer = connection.makefile("rb").readline()
    assert "at most" in json.loads(answer)["error"]
    [status] = raw(path, b'{"op": "status"}\n')
    assert status["entries"]["pdq"] == 1


def test_the_index_follows_the_mirror_adds_revocations_and_erasures(serving, rows):
    service, path = serving
    value = secrets.token_hex(32)
    entry = rows.add("pdq", value)
    deadline = time.monotonic() + 5
    while service.matcher.cursor != rows.cursor and time.monotonic() < deadline:
        time.sleep(0.02)
    with MatchClient(str(path)) as client:
        assert [m.entry for m in client.search([("pdq", value)])[0].matches] == [entry]
        rows.revoke(entry)
        # Never shown once revoked, even before the watcher applies it.
        assert client.search([("pdq", value)])[0].matches == []
        time.sleep(0.3)
        assert client.request({"op": "status"})["cursor"] == rows.cursor
        assert len(service.matcher.indexes["pdq"]) == 1


def test_a_replaced_mirror_is_loaded_afresh(serving, rows, tmp_path):
    service, path = serving
    other = MirrorRows(tmp_path / "other.db")
    value = secrets.token_hex(32)
    other.add("pdq", secrets.token_hex(32))
    entry = other.add("pdq", value)
    other.connection.close()
    # Empty the write-ahead log first, as a sync closing the file does.
    rows.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    rows.connection.close()
    os.replace(other.path, rows.path)
    deadline = time.monotonic() + 5
    while service.matcher.cursor != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    with MatchClient(str(path)) as client:
        assert [m.entry for m in client.search([("pdq", value)])[0].matches] == [entry]


def test_match_through_the_server_answers_as_the_mirror_does(serving, rows):
    _, path = serving
    value = secrets.token_hex(32)
    entry = rows.add("pdq", value)
    time.sleep(0.3)
    args = ["--json", "--hash", f"pdq:{flipped(value, 3)}"]
    direct = CliRunner().invoke(match_command, args, obj=config_for(rows.path))
    served = CliRunner().invoke(
        match_command, [*args, "--server", str(path)], obj=config_for(rows.path)
    )
    assert direct.exit_code == served.exit_code == 1
    assert direct.output == served.output
    assert json.loads(served.output)["matches"][0]["entry"] == entry


def test_a_second_server_on_a_live_socket_is_refused(serving, rows):
    service, path = serving
    with pytest.raises(MatchServerError, match="already answers"):
        server_open(service, socket_path=path, port=None)


def test_serve_match_runs_until_terminated_and_removes_its_socket(tmp_path, rows):
    value = secrets.token_hex(32)
    entry = rows.add("pdq", value)
    path = tmp_path / "match.sock"
    code = (
        "import os, sys; from pathlib import Path; "
        "from consortium_client.cli_match import serve_match_command; "
        "from consortium_client.config import Config; "
        "mirror = Path(os.environ['TEST_MIRROR']); "
        "serve_match_command.main(sys.argv[1:], obj=Config('', None, None, mirror, mirror, 5))"
    )
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and arguments)
        [sys.executable, "-c", code, "--socket", str(path), "--poll", "0.1"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "TEST_MIRROR": str(rows.path)},
    )
    try:
        banner = process.stderr.readline()
        assert "1 entries at cursor 0, answering on" in banner, banner
        with MatchClient(str(path)) as client:
            assert [m.entry for m in client.search([("pdq", value)])[0].matches] == [entry]
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0
    assert not path.exists()


def test_match_server_alone_asks_the_configured_match_socket(serving, rows, monkeypatch, capsys):
    from consortium_client import cli

    _, path = serving
    value = secrets.token_hex(32)
    entry = rows.add("pdq", value)
    deadline = time.monotonic() + 5
    while serving[0].matcher.cursor != entry and time.monotonic() < deadline:
        time.sleep(0.02)
    monkeypatch.setenv("CONSORTIUM_MATCH_SOCKET", str(path))
    # The mirror named here does not exist: the answer can only come from the server.
    args = ["--mirror", str(rows.path.with_name("absent.db")), "match", "--json", "--server"]
    assert cli.main([*args, "--hash", f"pdq:{value}"]) == 1
    assert json.loads(capsys.readouterr().out)["matches"][0]["entry"] == entry
