"""`consortium verify ...` and `consortium cosign`: offline checks of what the log served.

Every command reads files a partner saved from the server and needs no network. Exit
status: 0 verified, 1 verification failed (one line on standard error), 2 usage error (a
missing file, no trusted state yet, options that do not fit together).

The trusted state (the log key, its origin, the witnesses required and the last verified
checkpoint) lives in `trusted-state.json` in the user's config directory
(`$XDG_CONFIG_HOME/consortium/`, else `~/.config/consortium/` on Linux), or wherever the
`state` setting or a command's `--state` says.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import click

from consortium_client.cli_common import UsageError, read_bytes, state_option, state_path
from consortium_client.config import STATE_FILE, Config, config_dir
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

__all__ = ["STATE_FILE", "UsageError", "checkpoint_describe", "cosign", "verify"]

_FILE = click.Path(dir_okay=False, path_type=Path)


def state_path_default() -> Path:
    """`trusted-state.json` in the user's config directory."""
    return config_dir() / STATE_FILE


def _read(path: str | Path) -> bytes:
    return read_bytes(path)


def _read_text(path: str | Path) -> str:
    try:
        return _read(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{path} is not UTF-8 text") from exc


def _read_leaf(path: Path, index: int | None = None) -> bytes:
    """A leaf's bytes, or a saved `log/entries` answer holding the leaf."""
    return leaf_file_read(_read(path), index)


def state_load(path: Path) -> TrustedState:
    """The trusted state at `path`; UsageError if there is none yet."""
    if not path.exists():
        raise UsageError(
            f"no trusted state at {path}: run 'consortium verify init --vkey FILE' first"
        )
    try:
        return trusted_state_load(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _public_key(path: Path) -> Any:
    try:
        return public_key_load(_read(path))
    except KeyFormatError as exc:
        raise UsageError(f"{path}: {exc}") from exc


def checkpoint_describe(checkpoint: VerifiedCheckpoint) -> str:
    """One line naming a verified checkpoint: origin, size, base64 root, cosigners."""
    root = base64.b64encode(checkpoint.root).decode("ascii")
    text = f"{checkpoint.origin} size {checkpoint.size} root {root}"
    if checkpoint.cosigners:
        text += " cosigned by " + ", ".join(name for name, _ in checkpoint.cosigners)
    return text


def _checkpoint_against_state(state: TrustedState, path: Path) -> VerifiedCheckpoint:
    """A checkpoint from a file, verified with the trusted key; at the trusted size it must
    have the trusted root (a cheap fork check that needs no proof)."""
    checkpoint = trusted_checkpoint(state, _read(path))
    trusted = state.checkpoint
    if trusted is not None and trusted.size == checkpoint.size and trusted.root != checkpoint.root:
        raise VerificationError(
            f"fork: {path} has another root than the trusted size {trusted.size}"
        )
    return checkpoint


@click.group(
    epilog="Exit status: 0 verified, 1 verification failed, 2 usage error.",
)
def verify() -> None:
    """Verify checkpoints, proofs, entries and envelopes offline, from files."""


@verify.command("init")
@click.option("--vkey", type=_FILE, required=True, help="the log's vkey (GET /api/v1/log/key)")
@click.option("--origin", help="the checkpoint origin (default: the key's name)")
@click.option(
    "--witness",
    type=_FILE,
    multiple=True,
    help="a file of witness vkeys (cosignature/v1), one a line (repeatable)",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=0),
    help="cosignatures by witnesses every checkpoint needs (default 1 with witnesses)",
)
@click.option("--force", is_flag=True, help="replace an existing trusted state")
@state_option
@click.pass_obj
def verify_init(
    config: Config,
    vkey: Path,
    origin: str | None,
    witness: tuple[Path, ...],
    quorum: int | None,
    force: bool,
    state: Path | None,
) -> None:
    """Trust a log key on first use (starts the trusted state)."""
    path = state_path(config, state)
    if path.exists() and not force:
        raise UsageError(f"{path} exists: it already trusts a log key (--force replaces it)")
    witnesses: list[str] = []
    for source in witness:
        witnesses += [line for line in _read_text(source).splitlines() if line.strip()]
    quorum = quorum if quorum is not None else min(1, len(witnesses))
    trusted = trusted_state_new(_read_text(vkey), origin, witnesses=witnesses, quorum=quorum)
    trusted_state_save(path, trusted)
    click.echo(f"trusting {trusted.vkey.split('+')[0]} for origin {trusted.origin} in {path}")


@verify.command("checkpoint")
@click.argument("checkpoint", metavar="FILE", type=_FILE)
@click.option(
    "--consistency-proof",
    metavar="FILE",
    type=_FILE,
    help="proof from the trusted size to this one ({from, to, hashes})",
)
@state_option
@click.pass_obj
def verify_checkpoint(
    config: Config, checkpoint: Path, consistency_proof: Path | None, state: Path | None
) -> None:
    """Verify a checkpoint (FILE, a signed note) and advance the trusted state to it."""
    path = state_path(config, state)
    trusted = state_load(path)
    proof = consistency_proof_parse(_read(consistency_proof)) if consistency_proof else None
    advanced = trusted_advance(trusted, _read(checkpoint), proof)
    trusted_state_save(path, advanced)
    if advanced.checkpoint is not None:  # always, once advanced
        click.echo(f"verified: {checkpoint_describe(advanced.checkpoint)}")


@verify.command("inclusion")
@click.option("--leaf", type=_FILE, required=True, help="the leaf's bytes, verbatim")
@click.option("--index", type=int, required=True, help="the leaf's index")
@click.option("--proof", type=_FILE, required=True, help="inclusion proof {index, size, hashes}")
@click.option(
    "--checkpoint", type=_FILE, help="a signed checkpoint (default: the trusted checkpoint)"
)
@state_option
@click.pass_obj
def verify_inclusion(
    config: Config,
    leaf: Path,
    index: int,
    proof: Path,
    checkpoint: Path | None,
    state: Path | None,
) -> None:
    """Verify that a leaf is in a checkpoint's tree."""
    trusted = state_load(state_path(config, state))
    if checkpoint:
        verified = _checkpoint_against_state(trusted, checkpoint)
    elif trusted.checkpoint is not None:
        verified = trusted.checkpoint
    else:
        raise UsageError("no checkpoint: pass --checkpoint or run 'consortium verify checkpoint'")
    parsed = inclusion_proof_parse(_read(proof))
    if parsed.index != index:
        raise VerificationError(f"the proof is for leaf {parsed.index}, not {index}")
    verify_inclusion_proof(_read_leaf(leaf, index), parsed, verified)
    click.echo(f"verified: leaf {parsed.index} is in {checkpoint_describe(verified)}")


@verify.command("consistency")
@click.option("--proof", type=_FILE, required=True, help="consistency proof {from, to, hashes}")
@click.option("--old", type=_FILE, help="the older checkpoint (default: the trusted one)")
@click.option("--new", type=_FILE, required=True, help="the newer checkpoint")
@state_option
@click.pass_obj
def verify_consistency(
    config: Config, proof: Path, old: Path | None, new: Path, state: Path | None
) -> None:
    """Verify that one checkpoint extends another."""
    trusted = state_load(state_path(config, state))
    if old:
        older = _checkpoint_against_state(trusted, old)
    elif trusted.checkpoint is not None:
        older = trusted.checkpoint
    else:
        raise UsageError("no old checkpoint: pass --old or run 'consortium verify checkpoint'")
    newer = _checkpoint_against_state(trusted, new)
    verify_consistency_proof(consistency_proof_parse(_read(proof)), older, newer)
    click.echo(f"verified: size {older.size} is a prefix of {checkpoint_describe(newer)}")


@verify.command("entry")
@click.option("--leaf", type=_FILE, required=True, help="the entry_added leaf, verbatim")
@click.option("--value", required=True, help="the hash value")
@click.option("--salt", required=True, help="the entry's salt (32 hex)")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    metavar="VALUE:SALT",
    help="a variant's value and salt, in the leaf's order (repeat for each; needed when "
    "the leaf lists variants)",
)
def verify_entry_command(leaf: Path, value: str, salt: str, variants: tuple[str, ...]) -> None:
    """Verify a value and salt (and its variants') against an entry_added leaf."""
    openings = []
    for item in variants:
        variant_value, _, variant_salt = item.partition(":")
        openings.append({"value": variant_value, "salt": variant_salt})
    fields = verify_entry(_read_leaf(leaf), value, salt, openings)
    click.echo(f"verified: leaf {fields['index']} commits to {fields['algorithm']} {value.lower()}")


def _envelope_options(function: Any) -> Any:
    for option in reversed(
        [
            click.option("--leaf", type=_FILE, required=True, help="the leaf, verbatim"),
            click.option(
                "--envelope", type=_FILE, required=True, help="the envelope's stored bytes"
            ),
            click.option(
                "--key",
                type=_FILE,
                required=True,
                help="the signer's public key (PEM or base64)",
            ),
        ]
    ):
        function = option(function)
    return function


@verify.command("envelope")
@_envelope_options
def verify_envelope_command(leaf: Path, envelope: Path, key: Path) -> None:
    """Verify the signed submission of an entry_added leaf."""
    verify_envelope(_read_leaf(leaf), _read(envelope), _public_key(key))
    click.echo(f"verified: {envelope} is the signed submission of {leaf}")


@verify.command("revocation")
@_envelope_options
def verify_revocation_command(leaf: Path, envelope: Path, key: Path) -> None:
    """Verify the signed revocation of an entry_revoked leaf."""
    verify_revocation(_read_leaf(leaf), _read(envelope), _public_key(key))
    click.echo(f"verified: {envelope} is the signed revocation of {leaf}")


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


def _leaf_fields(leaf: bytes) -> dict[str, Any]:
    try:
        document = strict_json_loads(leaf)
    except StrictJsonError as exc:
        raise VerificationError(f"the leaf is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise VerificationError("the leaf is not a JSON object")
    return document


@verify.command("access-period")
@click.option(
    "--leaf",
    type=_FILE,
    required=True,
    help="the access_period_sealed leaf (access_period_export --leaf, or log/entries)",
)
@click.option("--index", type=int, help="the leaf's index, in a log/entries file")
@click.option(
    "--events",
    type=_FILE,
    required=True,
    help="JSON lines from access_period_export, or pages of "
    "GET /api/v1/audit/events?after_id=&last_id= (one a line)",
)
def verify_access_period(leaf: Path, index: int | None, events: Path) -> None:
    """Verify a sealed period's access events against its access_period_sealed leaf."""
    fields = _leaf_fields(_read_leaf(leaf, index))
    try:
        parsed = _access_events(_read(events), str(events))
    except UnicodeDecodeError as exc:
        raise VerificationError(f"{events} is not UTF-8 text") from exc
    access_period_check(parsed, fields)
    click.echo(
        f"verified: the {fields['count']} access events of period {fields['period']} "
        f"are those sealed in leaf {fields['index']}"
    )


@click.command("cosign")
@click.argument("checkpoint", metavar="[FILE]", type=_FILE, required=False)
@click.option("--key", type=_FILE, required=True, help="your private signing key (PEM)")
@click.option("--name", required=True, help="your witness name (the key's name)")
@click.option("--vkey", is_flag=True, help="print your cosigner vkey instead, for peers")
@state_option
@click.pass_obj
def cosign(
    config: Config, checkpoint: Path | None, key: Path, name: str, vkey: bool, state: Path | None
) -> None:
    """Print a cosignature line of the trusted checkpoint (FILE, verified first), to post
    as a witness."""
    try:
        private_key = private_key_load(_read(key))
        cosigner = note_verifier(name, private_key.public_key(), COSIGNATURE_V1)
    except (KeyFormatError, NoteError) as exc:
        raise UsageError(f"{key}: {exc}") from exc
    if vkey:
        click.echo(cosigner.vkey)
        return
    if not checkpoint:
        raise UsageError("cosign needs a checkpoint file (or --vkey)")
    trusted_state = state_load(state_path(config, state))
    verified = trusted_checkpoint(trusted_state, _read(checkpoint))
    trusted = trusted_state.checkpoint
    # A witness vouches that it saw this checkpoint extend its own history: only the one
    # `verify checkpoint` accepted may be cosigned.
    if trusted is None or (trusted.size, trusted.root) != (verified.size, verified.root):
        raise VerificationError(
            f"{checkpoint} is not the trusted checkpoint: "
            "run 'consortium verify checkpoint' on it first"
        )
    body = verified.note[: verified.note.index("\n\n") + 1]
    signature = cosignature_sign(
        name=name, private_key=private_key, checkpoint_text=body, timestamp=int(time.time())
    )
    click.echo(signature.line, nl=False)
