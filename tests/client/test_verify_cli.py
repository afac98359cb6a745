"""`consortium verify ...` and `consortium cosign`, run as a partner runs them, on saved files."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from consortium_client import cli, merkle
from consortium_client.keys import private_key_pem, public_key_pem
from consortium_client.verify import verify_checkpoint
from tests.client.samplelog import SampleLog, Witness, pdq


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's config directory, where the trusted state lives by default."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "consortium" / "trusted-state.json"


@pytest.fixture
def log() -> SampleLog:
    log = SampleLog()
    log.other()
    log.submit([pdq(), pdq()])
    log.revoke(1)
    log.other("partner_suspended")
    return log


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return str(path)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def trust(capsys, files: Files, log: SampleLog, *extra: str) -> None:
    code, out, _ = run(capsys, "verify", "init", "--vkey", files("log.vkey", log.vkey), *extra)
    assert code == 0
    assert "trusting consortium.example/log" in out


def test_verify_follows_the_log_and_keeps_its_state_private(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    code, out, _ = run(capsys, "verify", "checkpoint", files("c4", log.checkpoint()))
    assert (code, out.startswith("verified: consortium.example/log size 5 root ")) == (0, True)

    log.submit([pdq()])
    proof = files("p", log.consistency_json(5))
    code, out, err = run(
        capsys, "verify", "checkpoint", files("c6", log.checkpoint()), "--consistency-proof", proof
    )
    assert (code, err) == (0, "")
    assert json.loads(config.read_text())["checkpoint"]["size"] == 6
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_verify_checkpoint_refuses_a_rollback_in_one_line(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    assert run(capsys, "verify", "checkpoint", files("c", log.checkpoint()))[0] == 0
    before = config.read_bytes()
    code, out, err = run(capsys, "verify", "checkpoint", files("old", log.checkpoint(size=3)))
    assert (code, out) == (1, "")
    assert (
        err
        == "consortium: rollback: the checkpoint is of size 3, smaller than the trusted size 5\n"
    )
    assert config.read_bytes() == before


def test_verify_checkpoint_refuses_forks(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    root = base64.b64encode(log.root(3)).decode()
    assert run(capsys, "verify", "checkpoint", files("c", log.checkpoint(size=3))) == (
        0,
        f"verified: consortium.example/log size 3 root {root}\n",
        "",
    )
    before = config.read_bytes()
    fork = SampleLog(signer=log.signer)
    fork.leaves = [log.leaves[1], log.leaves[0], *log.leaves[2:]]
    code, _, err = run(capsys, "verify", "checkpoint", files("f3", fork.checkpoint(size=3)))
    assert code == 1
    assert err.startswith("consortium: fork: two roots for size 3")
    # The fork's own proof names the fork's root at size 3: refused before any hashing.
    code, _, err = run(
        capsys,
        "verify",
        "checkpoint",
        files("f5", fork.checkpoint()),
        "--consistency-proof",
        files("fp", fork.consistency_json(3)),
    )
    assert code == 1
    assert err.startswith("consortium: fork: the consistency proof's roots are not those")
    # A proof claiming the trusted root does not lead from it to the fork's root.
    claimed = json.loads(fork.consistency_json(3)) | {"old_root": log.root(3).hex()}
    code, _, err = run(
        capsys,
        "verify",
        "checkpoint",
        files("f5", fork.checkpoint()),
        "--consistency-proof",
        files("fp2", json.dumps(claimed)),
    )
    assert code == 1
    assert err.startswith("consortium: fork: the checkpoint of size 5 does not extend")
    assert err.count("\n") == 1
    assert config.read_bytes() == before


def test_verify_without_trusted_state_is_a_usage_error(capsys, config, files, log) -> None:
    code, _, err = run(capsys, "verify", "checkpoint", files("c", log.checkpoint()))
    assert code == 2
    assert "run 'consortium verify init --vkey FILE' first" in err
    assert not config.exists()


def test_verify_init_never_replaces_trust_silently(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    code, _, err = run(capsys, "verify", "init", "--vkey", files("other", SampleLog().vkey))
    assert code == 2
    assert "already trusts a log key" in err
    assert json.loads(config.read_text())["vkey"] == log.vkey


def test_verify_state_option_overrides_the_config_dir(capsys, config, files, log, tmp_path):
    state = str(tmp_path / "elsewhere.json")
    assert run(capsys, "verify", "init", "--state", state, "--vkey", files("k", log.vkey))[0] == 0
    assert (
        run(capsys, "verify", "checkpoint", "--state", state, files("c", log.checkpoint()))[0] == 0
    )
    assert json.loads(Path(state).read_text())["checkpoint"]["size"] == 5
    assert not config.exists()


def test_verify_inclusion_of_a_leaf(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    checkpoint = files("c", log.checkpoint())
    leaf = files("leaf", log.leaves[2] + b"\n")
    proof = files("proof", log.inclusion_json(2))
    # Against a checkpoint given on the command line, then against the trusted one.
    code, out, _ = run(
        capsys, "verify", "inclusion", "--leaf", leaf, "--index", "2", "--proof", proof,
        "--checkpoint", checkpoint,
    )  # fmt: skip
    assert (code, out.startswith("verified: leaf 2 is in consortium.example/log size 5")) == (
        0,
        True,
    )
    assert run(capsys, "verify", "checkpoint", checkpoint)[0] == 0
    assert (
        run(capsys, "verify", "inclusion", "--leaf", leaf, "--index", "2", "--proof", proof)[0] == 0
    )

    changed_leaf = log.leaves[2].replace(b'"list":1', b'"list":2')
    changed = files("changed", changed_leaf)
    code, _, err = run(
        capsys, "verify", "inclusion", "--leaf", changed, "--index", "2", "--proof", proof
    )
    assert (code, err) == (
        1,
        "consortium: the leaf's hash is not the proof's leaf_hash for leaf 2\n",
    )
    # A server that hashed the changed leaf still cannot lead it to the checkpoint's root.
    lying = json.loads(log.inclusion_json(2)) | {"leaf_hash": merkle.leaf_hash(changed_leaf).hex()}
    code, _, err = run(
        capsys, "verify", "inclusion", "--leaf", changed, "--index", "2",
        "--proof", files("lying", json.dumps(lying)),
    )  # fmt: skip
    assert (code, err) == (
        1,
        "consortium: inclusion: inclusion proof of leaf 2 does not lead to the root\n",
    )
    # A proof to another root than the checkpoint's is a fork shown to this reader.
    other_root = json.loads(log.inclusion_json(2)) | {"root": log.root(4).hex()}
    code, _, err = run(
        capsys, "verify", "inclusion", "--leaf", leaf, "--index", "2",
        "--proof", files("other", json.dumps(other_root)),
    )  # fmt: skip
    assert (code, err) == (
        1,
        "consortium: fork: the proof's root for size 5 is not the checkpoint's\n",
    )
    # The leaf as saved from GET /api/v1/log/entries (curl) verifies as it is.
    saved = files("entries", log.entries_json(1, 4, withheld=(3,)) + b"\n")
    assert (
        run(capsys, "verify", "inclusion", "--leaf", saved, "--index", "2", "--proof", proof)[0]
        == 0
    )
    code, _, err = run(
        capsys, "verify", "inclusion", "--leaf", saved, "--index", "3",
        "--proof", files("p3", log.inclusion_json(3)),
    )  # fmt: skip
    assert (code, err) == (1, "consortium: leaf 3 is withheld: this partner may not see it\n")
    code, _, err = run(
        capsys, "verify", "inclusion", "--leaf", leaf, "--index", "3", "--proof", proof
    )
    assert (code, err) == (1, "consortium: the proof is for leaf 2, not 3\n")


def test_verify_consistency_between_two_checkpoints(capsys, config, files, log) -> None:
    trust(capsys, files, log)
    old, new = files("old", log.checkpoint(size=2)), files("new", log.checkpoint())
    proof = files("proof", log.consistency_json(2))
    code, out, _ = run(
        capsys, "verify", "consistency", "--old", old, "--new", new, "--proof", proof
    )
    assert (code, out.startswith("verified: size 2 is a prefix of")) == (0, True)
    wrong = files("wrong", log.consistency_json(3))
    code, _, err = run(
        capsys, "verify", "consistency", "--old", old, "--new", new, "--proof", wrong
    )
    assert (code, err) == (1, "consortium: the proof is from size 3 to 5, not from 2 to 5\n")


def test_verify_entry_value_and_salt(capsys, files, log) -> None:
    value, salt = log.openings[1]
    leaf = files("leaf", log.leaves[1])
    code, out, _ = run(capsys, "verify", "entry", "--leaf", leaf, "--value", value, "--salt", salt)
    assert (code, out) == (0, f"verified: leaf 1 commits to pdq {value}\n")
    code, _, err = run(capsys, "verify", "entry", "--leaf", leaf, "--value", pdq(), "--salt", salt)
    assert code == 1
    assert err == "consortium: entry 1: the pdq value and salt do not match the commitment\n"


def test_verify_envelope_and_revocation(capsys, files, log) -> None:
    key = files("partner.pub.pem", public_key_pem(log.partner_key.public_key()))
    leaf, envelope = files("leaf", log.leaves[1]), files("env", log.envelopes[1])
    args = ["verify", "envelope", "--leaf", leaf, "--envelope", envelope, "--key", key]
    assert run(capsys, *args)[0] == 0
    revoked = files("rleaf", log.leaves[3])
    revocation = files("renv", log.envelopes[3])
    args = ["verify", "revocation", "--leaf", revoked, "--envelope", revocation, "--key", key]
    assert run(capsys, *args)[0] == 0

    # The same envelope re-serialised is not the envelope the leaf hashed.
    respaced = files("respaced", json.dumps(json.loads(log.envelopes[1]), indent=1))
    args = ["verify", "envelope", "--leaf", leaf, "--envelope", respaced, "--key", key]
    code, _, err = run(capsys, *args)
    assert code == 1
    assert "the envelope's SHA-256 is" in err
    args = ["verify", "revocation", "--leaf", leaf, "--envelope", envelope, "--key", key]
    code, _, err = run(capsys, *args)
    assert (code, err) == (1, "consortium: the leaf is of type 'entry_added', not entry_revoked\n")


def test_cosign_only_the_trusted_checkpoint(capsys, config, files, log, tmp_path) -> None:
    witness = Witness("partner-a")
    key = files("w.pem", private_key_pem(witness.key))
    code, out, _ = run(capsys, "cosign", "--vkey", "--key", key, "--name", "partner-a")
    assert (code, out) == (0, witness.vkey + "\n")

    trust(capsys, files, log)
    note = log.checkpoint()
    checkpoint = files("c", note)
    code, _, err = run(capsys, "cosign", checkpoint, "--key", key, "--name", "partner-a")
    assert code == 1
    assert "is not the trusted checkpoint" in err
    assert run(capsys, "verify", "checkpoint", checkpoint)[0] == 0
    code, line, _ = run(capsys, "cosign", checkpoint, "--key", key, "--name", "partner-a")
    assert code == 0
    assert line.startswith("\u2014 partner-a ")
    # What it printed is a cosignature/v1 a peer requiring this witness accepts.
    verified = verify_checkpoint(note + line, log.vkey, witnesses=[witness.vkey], quorum=1)
    assert [name for name, _ in verified.cosigners] == ["partner-a"]


def test_verify_requires_the_witness_quorum(capsys, config, files, log) -> None:
    alice, bob = Witness("alice"), Witness("bob")
    witnesses = files("witnesses", f"{alice.vkey}\n{bob.vkey}\n")
    trust(capsys, files, log, "--witness", witnesses, "--quorum", "2")
    code, _, err = run(
        capsys, "verify", "checkpoint", files("c1", log.checkpoint(witnesses=(alice,)))
    )
    assert code == 1
    assert "cosigned by 1 of the required witnesses, fewer than the quorum of 2" in err
    both = files("c2", log.checkpoint(witnesses=(alice, bob)))
    code, out, _ = run(capsys, "verify", "checkpoint", both)
    assert (code, out.rstrip().endswith("cosigned by alice, bob")) == (0, True)


def test_verify_usage_errors_exit_2(capsys, config, files, log) -> None:
    code, out, err = run(capsys, "verify", "entry", "--leaf", "x")
    assert (code, out) == (2, "")
    assert err == "consortium: Missing option '--value' (see 'consortium verify entry --help')\n"
    code, _, err = run(
        capsys, "verify", "entry", "--leaf", "/nonexistent/leaf", "--value", "0", "--salt", "0"
    )
    assert (code, err) == (
        2,
        "consortium: cannot read /nonexistent/leaf: No such file or directory\n",
    )


def test_the_installed_command_exits_with_the_verification_status(files, log) -> None:
    value, salt = log.openings[2]
    leaf = files("leaf", log.leaves[2])
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "consortium_client.cli", "verify", "entry", "--leaf", leaf]
    good = subprocess.run(  # noqa: S603 - our own module
        [*command, "--value", value, "--salt", salt], env=env, capture_output=True, text=True
    )
    bad = subprocess.run(  # noqa: S603 - our own module
        [*command, "--value", value, "--salt", "0" * 32], env=env, capture_output=True, text=True
    )
    assert (good.returncode, bad.returncode) == (0, 1)
    assert bad.stderr.count("\n") == 1
