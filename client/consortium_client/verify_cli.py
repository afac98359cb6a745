"""`consortium verify ...` and `consortium cosign`: offline checks of what the log served.

Every command reads files a partner saved from the server and needs no network. Exit
status: 0 verified, 1 verification failed (one line on standard error), 2 usage error (a
missing file, no trusted state yet, options that do not fit together).

The trusted state (the log key, its origin, the witnesses required and the last verified
checkpoint) lives in `$XDG_CONFIG_HOME/consortium/trusted-state.json` (or under
`~/.config`), or wherever `--state` says.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from pathlib import Path
from typing import Any

from consortium_client.follow import access_period_check
from consortium_client.keys import KeyFormatError, private_key_load, public_key_load
from consortium_client.notes import COSIGNATURE_V1, NoteError, cosignature_sign, note_verifier
from consortium_client.strictjson import StrictJsonError, strict_json_loads
from consortium_client.verify import (
    TrustedState,
    VerificationError,
    VerifiedCheckpoint,
    consistency_proof_parse,
    inclusion_proof_parse,
    leaf_file_read,
    trusted_advance,
    trusted_checkpoint,
    trusted_state_load,
    trusted_state_new,
    trusted_state_save,
    verify_consistency_proof,
    verify_entry,
    verify_envelope,
    verify_inclusion_proof,
    verify_revocation,
)

STATE_FILE = "trusted-state.json"


class UsageError(Exception):
    """The command cannot run as given (exit status 2); nothing was verified."""


def state_path_default() -> Path:
    """`$XDG_CONFIG_HOME/consortium/trusted-state.json`, else under `~/.config`.

    A relative XDG_CONFIG_HOME is ignored, as the XDG base directory specification says.
    """
    base = os.environ.get("XDG_CONFIG_HOME", "")
    config = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return config / "consortium" / STATE_FILE


def _state_path(args: argparse.Namespace) -> Path:
    return Path(args.state) if args.state else state_path_default()


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _read_text(path: str) -> str:
    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{path} is not UTF-8 text") from exc


def _read_leaf(path: str, index: int | None = None) -> bytes:
    """A leaf's bytes, or a saved `log/entries` answer holding the leaf."""
    return leaf_file_read(_read(path), index)


def state_load(args: argparse.Namespace) -> TrustedState:
    """The trusted state the command's `--state` (or the default path) names."""
    return _state(args)


def state_save(args: argparse.Namespace, state: TrustedState) -> None:
    trusted_state_save(_state_path(args), state)


def _state(args: argparse.Namespace) -> TrustedState:
    path = _state_path(args)
    if not path.exists():
        raise UsageError(
            f"no trusted state at {path}: run 'consortium verify init --vkey FILE' first"
        )
    try:
        return trusted_state_load(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _public_key(path: str) -> Any:
    try:
        return public_key_load(_read(path))
    except KeyFormatError as exc:
        raise UsageError(f"{path}: {exc}") from exc


def checkpoint_describe(checkpoint: VerifiedCheckpoint) -> str:
    """One line naming a verified checkpoint: origin, size, base64 root, cosigners."""
    return _describe(checkpoint)


def _describe(checkpoint: VerifiedCheckpoint) -> str:
    root = base64.b64encode(checkpoint.root).decode("ascii")
    text = f"{checkpoint.origin} size {checkpoint.size} root {root}"
    if checkpoint.cosigners:
        text += " cosigned by " + ", ".join(name for name, _ in checkpoint.cosigners)
    return text


def _checkpoint_against_state(state: TrustedState, path: str) -> VerifiedCheckpoint:
    """A checkpoint from a file, verified with the trusted key; at the trusted size it must
    have the trusted root (a cheap fork check that needs no proof)."""
    checkpoint = trusted_checkpoint(state, _read(path))
    trusted = state.checkpoint
    if trusted is not None and trusted.size == checkpoint.size and trusted.root != checkpoint.root:
        raise VerificationError(
            f"fork: {path} has another root than the trusted size {trusted.size}"
        )
    return checkpoint


def cmd_verify_init(args: argparse.Namespace) -> None:
    path = _state_path(args)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists: it already trusts a log key (--force replaces it)")
    witnesses: list[str] = []
    for source in args.witness or []:
        witnesses += [line for line in _read_text(source).splitlines() if line.strip()]
    quorum = args.quorum if args.quorum is not None else min(1, len(witnesses))
    state = trusted_state_new(
        _read_text(args.vkey), args.origin, witnesses=witnesses, quorum=quorum
    )
    trusted_state_save(path, state)
    print(f"trusting {state.vkey.split('+')[0]} for origin {state.origin} in {path}")


def cmd_verify_checkpoint(args: argparse.Namespace) -> None:
    state = _state(args)
    proof = None
    if args.consistency_proof:
        proof = consistency_proof_parse(_read(args.consistency_proof))
    advanced = trusted_advance(state, _read(args.checkpoint), proof)
    trusted_state_save(_state_path(args), advanced)
    if advanced.checkpoint is not None:  # always, once advanced
        print(f"verified: {_describe(advanced.checkpoint)}")


def cmd_verify_inclusion(args: argparse.Namespace) -> None:
    state = _state(args)
    if args.checkpoint:
        checkpoint = _checkpoint_against_state(state, args.checkpoint)
    elif state.checkpoint is not None:
        checkpoint = state.checkpoint
    else:
        raise UsageError("no checkpoint: pass --checkpoint or run 'consortium verify checkpoint'")
    proof = inclusion_proof_parse(_read(args.proof))
    if proof.index != args.index:
        raise VerificationError(f"the proof is for leaf {proof.index}, not {args.index}")
    verify_inclusion_proof(_read_leaf(args.leaf, args.index), proof, checkpoint)
    print(f"verified: leaf {proof.index} is in {_describe(checkpoint)}")


def cmd_verify_consistency(args: argparse.Namespace) -> None:
    state = _state(args)
    if args.old:
        old = _checkpoint_against_state(state, args.old)
    elif state.checkpoint is not None:
        old = state.checkpoint
    else:
        raise UsageError("no old checkpoint: pass --old or run 'consortium verify checkpoint'")
    new = _checkpoint_against_state(state, args.new)
    verify_consistency_proof(consistency_proof_parse(_read(args.proof)), old, new)
    print(f"verified: size {old.size} is a prefix of {_describe(new)}")


def cmd_verify_entry(args: argparse.Namespace) -> None:
    leaf = verify_entry(_read_leaf(args.leaf), args.value, args.salt)
    print(f"verified: leaf {leaf['index']} commits to {leaf['algorithm']} {args.value.lower()}")


def cmd_verify_envelope(args: argparse.Namespace) -> None:
    leaf = _read_leaf(args.leaf)
    verify_envelope(leaf, _read(args.envelope), _public_key(args.key))
    print(f"verified: {args.envelope} is the signed submission of {args.leaf}")


def cmd_verify_revocation(args: argparse.Namespace) -> None:
    leaf = _read_leaf(args.leaf)
    verify_revocation(leaf, _read(args.envelope), _public_key(args.key))
    print(f"verified: {args.envelope} is the signed revocation of {args.leaf}")


def _access_events(raw: bytes, path: str) -> list[dict[str, Any]]:
    """Events from JSON lines: each line an encoding (`access_period_export`), or a page of
    `GET /api/v1/audit/events` (`{"events": [...], ...}`, newest first, put in id order)."""
    events: list[dict[str, Any]] = []
    paged: list[dict[str, Any]] = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = strict_json_loads(line.encode("utf-8"))
        except StrictJsonError as exc:
            raise VerificationError(f"{path} line {number} is not JSON: {exc}") from exc
        if isinstance(document, dict) and isinstance(document.get("events"), list):
            paged += document["events"]
        elif isinstance(document, dict):
            events.append(document)
        else:
            raise VerificationError(f"{path} line {number} is not an access event")
    if events and paged:
        raise VerificationError(f"{path} mixes exported lines and API pages")
    # Pages are newest first; duplicates are kept, for the verifier to refuse.
    return events or sorted(paged, key=lambda event: event.get("id", -1))


def cmd_verify_access_period(args: argparse.Namespace) -> None:
    leaf = _leaf_fields(_read_leaf(args.leaf, args.index))
    try:
        events = _access_events(_read(args.events), args.events)
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{args.events} is not UTF-8 text") from exc
    access_period_check(events, leaf)
    print(
        f"verified: the {leaf['count']} access events of period {leaf['period']} "
        f"are those sealed in leaf {leaf['index']}"
    )


def _leaf_fields(leaf: bytes) -> dict[str, Any]:
    try:
        document = strict_json_loads(leaf)
    except StrictJsonError as exc:
        raise VerificationError(f"the leaf is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise VerificationError("the leaf is not a JSON object")
    return document


def cmd_cosign(args: argparse.Namespace) -> None:
    try:
        private_key = private_key_load(_read(args.key))
        cosigner = note_verifier(args.name, private_key.public_key(), COSIGNATURE_V1)
    except (KeyFormatError, NoteError) as exc:
        raise UsageError(f"{args.key}: {exc}") from exc
    if args.vkey:
        print(cosigner.vkey)
        return
    if not args.checkpoint:
        raise UsageError("cosign needs a checkpoint file (or --vkey)")
    state = _state(args)
    checkpoint = trusted_checkpoint(state, _read(args.checkpoint))
    trusted = state.checkpoint
    # A witness vouches that it saw this checkpoint extend its own history: only the one
    # `verify checkpoint` accepted may be cosigned.
    if trusted is None or (trusted.size, trusted.root) != (checkpoint.size, checkpoint.root):
        raise VerificationError(
            f"{args.checkpoint} is not the trusted checkpoint: "
            "run 'consortium verify checkpoint' on it first"
        )
    body = checkpoint.note[: checkpoint.note.index("\n\n") + 1]
    signature = cosignature_sign(
        name=args.name, private_key=private_key, checkpoint_text=body, timestamp=int(time.time())
    )
    print(signature.line, end="")


def parsers_add(commands: Any) -> None:
    """Add `verify` and `cosign` to the `consortium` sub-command parsers."""
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument(
        "--state",
        help=f"the trusted-state file (default $XDG_CONFIG_HOME/consortium/{STATE_FILE})",
    )

    verify = commands.add_parser(
        "verify",
        help="verify checkpoints, proofs, entries and envelopes offline, from files",
        description="Verify what the log served, offline. Exit status: 0 verified, "
        "1 verification failed, 2 usage error.",
    )
    checks = verify.add_subparsers(dest="check", required=True, metavar="CHECK")

    init = checks.add_parser(
        "init", parents=[state], help="trust a log key on first use (starts the trusted state)"
    )
    init.add_argument("--vkey", required=True, help="the log's vkey (GET /api/v1/log/key)")
    init.add_argument("--origin", help="the checkpoint origin (default: the key's name)")
    init.add_argument(
        "--witness",
        action="append",
        help="a file of witness vkeys (cosignature/v1), one a line (repeatable)",
    )
    init.add_argument(
        "--quorum",
        type=int,
        help="cosignatures by witnesses every checkpoint needs (default 1 with witnesses)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing trusted state")
    init.set_defaults(handler=cmd_verify_init)

    checkpoint = checks.add_parser(
        "checkpoint",
        parents=[state],
        help="verify a checkpoint and advance the trusted state to it",
    )
    checkpoint.add_argument("checkpoint", metavar="FILE", help="a signed checkpoint note")
    checkpoint.add_argument(
        "--consistency-proof",
        metavar="FILE",
        help="proof from the trusted size to this one ({from, to, hashes})",
    )
    checkpoint.set_defaults(handler=cmd_verify_checkpoint)

    inclusion = checks.add_parser(
        "inclusion", parents=[state], help="verify that a leaf is in a checkpoint's tree"
    )
    inclusion.add_argument("--leaf", required=True, help="the leaf's bytes, verbatim")
    inclusion.add_argument("--index", required=True, type=int, help="the leaf's index")
    inclusion.add_argument("--proof", required=True, help="inclusion proof {index, size, hashes}")
    inclusion.add_argument(
        "--checkpoint", help="a signed checkpoint (default: the trusted checkpoint)"
    )
    inclusion.set_defaults(handler=cmd_verify_inclusion)

    consistency = checks.add_parser(
        "consistency", parents=[state], help="verify that one checkpoint extends another"
    )
    consistency.add_argument("--proof", required=True, help="consistency proof {from, to, hashes}")
    consistency.add_argument("--old", help="the older checkpoint (default: the trusted one)")
    consistency.add_argument("--new", required=True, help="the newer checkpoint")
    consistency.set_defaults(handler=cmd_verify_consistency)

    entry = checks.add_parser("entry", help="verify a value and salt against an entry_added leaf")
    entry.add_argument("--leaf", required=True, help="the entry_added leaf, verbatim")
    entry.add_argument("--value", required=True, help="the hash value")
    entry.add_argument("--salt", required=True, help="the entry's salt (32 hex)")
    entry.set_defaults(handler=cmd_verify_entry)

    for name, what, handler in [
        ("envelope", "the signed submission of an entry_added leaf", cmd_verify_envelope),
        ("revocation", "the signed revocation of an entry_revoked leaf", cmd_verify_revocation),
    ]:
        check = checks.add_parser(name, help=f"verify {what}")
        check.add_argument("--leaf", required=True, help="the leaf, verbatim")
        check.add_argument("--envelope", required=True, help="the envelope's stored bytes")
        check.add_argument("--key", required=True, help="the signer's public key (PEM or base64)")
        check.set_defaults(handler=handler)

    period = checks.add_parser(
        "access-period",
        help="verify a sealed period's access events against its access_period_sealed leaf",
    )
    period.add_argument(
        "--leaf",
        required=True,
        help="the access_period_sealed leaf (access_period_export --leaf, or log/entries)",
    )
    period.add_argument("--index", type=int, help="the leaf's index, in a log/entries file")
    period.add_argument(
        "--events",
        required=True,
        help="JSON lines from access_period_export, or pages of "
        "GET /api/v1/audit/events?after_id=&last_id= (one a line)",
    )
    period.set_defaults(handler=cmd_verify_access_period)

    cosign = commands.add_parser(
        "cosign",
        parents=[state],
        help="print a cosignature line of the trusted checkpoint, to post as a witness",
    )
    cosign.add_argument(
        "checkpoint", nargs="?", metavar="FILE", help="the checkpoint (verified first)"
    )
    cosign.add_argument("--key", required=True, help="your private signing key (PEM)")
    cosign.add_argument("--name", required=True, help="your witness name (the key's name)")
    cosign.add_argument(
        "--vkey", action="store_true", help="print your cosigner vkey instead, for peers"
    )
    cosign.set_defaults(handler=cmd_cosign)
