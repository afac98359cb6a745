"""`consortium`: the partner command line.

A click group whose context object is the `Config` in force (flags > environment > the
user's config file > defaults; `consortium config` shows it). Each command is a thin
wrapper around the library. Every failure prints one line to standard error, never a
traceback, and the exit status says what happened: 0 done, 1 failed (or, for `hash` and
`submit`, some files were skipped), 2 usage error.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from consortium_client.api import ApiError
from consortium_client.cli_common import (
    CliError,
    UsageError,
    api_client,
    imaging_required,
    private_key,
    read_text,
    state_option,
    state_path,
)
from consortium_client.cli_match import match_command, serve_match_command
from consortium_client.cli_sync import sync_command
from consortium_client.config import (
    CONFIG_ENVIRONMENT,
    ENVIRONMENT,
    Config,
    ConfigError,
    api_key_masked,
    config_file_default,
    config_load,
    data_dir,
)
from consortium_client.dsse import EnvelopeError
from consortium_client.feedback import REASON_CODES, VERDICTS
from consortium_client.hashfiles import ALGORITHM_NAMES, FileHashed, files_hash, files_walk
from consortium_client.hashvalues import HashValueError, algorithm_get, hash_value_parse
from consortium_client.keys import key_generate, key_id, private_key_pem, public_key_pem
from consortium_client.verify import VerificationError
from consortium_client.verify_cli import checkpoint_describe, cosign, state_load, verify

__all__ = ["CliError", "UsageError", "consortium", "hashes_read", "main"]

EPILOG = """\b
Settings (flag > environment > config file > default; 'consortium config' shows them):
  --url          CONSORTIUM_URL          the server (default http://127.0.0.1:8000)
  --api-key      CONSORTIUM_API_KEY      your API key
  --signing-key  CONSORTIUM_SIGNING_KEY  your private signing key (PEM)
  --mirror       CONSORTIUM_MIRROR       the local mirror (SQLite)
  --state        CONSORTIUM_STATE        the trusted log state
  --timeout      CONSORTIUM_TIMEOUT      seconds to wait for the server
  --match-socket CONSORTIUM_MATCH_SOCKET where serve-match answers and match --server asks
  --config       CONSORTIUM_CONFIG       the config file (TOML)

\b
A hashes file has one 'algorithm value' (or 'algorithm:value') a line, for example
'pdq 9f...' or 'md5:d4...' (blank lines and '#' comments are skipped), or the JSON lines
'consortium hash' prints. Run 'consortium COMMAND --help' for a command's options."""

_FILE = click.Path(dir_okay=False, path_type=Path)
_HELP_FLAGS = ("--help", "-h")


def _labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def hashes_read(
    lines: Iterable[str], labels: list[str], *, allow_empty: bool = False
) -> list[dict[str, Any]]:
    """Entries from a hashes file: `algorithm value` (or `algorithm:value`) lines, or the
    JSON lines `consortium hash` prints (one object a file, its algorithms as keys, and
    `pdq_quality`, which becomes the pdq entry's quality). Blank lines and # comments skip."""
    entries = []
    for number, line in enumerate(lines, start=1):
        # A byte-order mark (Windows editors write one) is not part of the first line.
        text = line.removeprefix("\ufeff") if number == 1 else line
        if text.lstrip().startswith("{"):
            entries += _hash_line_entries(text, number, labels)
            continue
        text = text.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.replace(":", " ", 1).split()
        if len(parts) != 2:
            raise CliError(f"line {number}: expected 'algorithm value'")
        algorithm, value = parts
        try:
            algorithm_get(algorithm)
            value = hash_value_parse(algorithm, value)
        except HashValueError as exc:
            raise CliError(f"line {number}: {exc}") from exc
        entries.append({"algorithm": algorithm, "value": value, "labels": labels})
    if not entries and not allow_empty:
        raise CliError("no hashes to submit")
    return entries


def _hash_line_entries(text: str, number: int, labels: list[str]) -> list[dict[str, Any]]:
    try:
        document = json.loads(text)
    except ValueError:
        raise CliError(f"line {number}: not JSON") from None
    if not isinstance(document, dict):
        raise CliError(f"line {number}: expected a JSON object")
    entries = []
    for algorithm in ALGORITHM_NAMES:
        if algorithm not in document:
            continue
        try:
            value = hash_value_parse(algorithm, document[algorithm])
        except HashValueError as exc:
            raise CliError(f"line {number}: {exc}") from exc
        entry: dict[str, Any] = {"algorithm": algorithm, "value": value, "labels": labels}
        quality = document.get("pdq_quality")
        if algorithm == "pdq" and isinstance(quality, int) and not isinstance(quality, bool):
            entry["quality"] = quality
        entries.append(entry)
    return entries


class _Root(click.Group):
    """The root group, noting before its callback runs whether help was asked for: a
    broken config file must not hide the help that says how to fix it."""

    def invoke(self, ctx: click.Context) -> Any:
        # `ctx.args` holds the rest of the command line until the group invokes.
        ctx.meta["consortium.help"] = any(arg in _HELP_FLAGS for arg in ctx.args)
        return super().invoke(ctx)


@click.group(
    cls=_Root,
    name="consortium",
    epilog=EPILOG,
    context_settings={"help_option_names": list(_HELP_FLAGS), "max_content_width": 100},
)
@click.option("--url", help="the server, e.g. https://consortium.example (/api/v1 is accepted)")
@click.option("--api-key", help="your API key (better: CONSORTIUM_API_KEY or the config file)")
@click.option("--signing-key", type=_FILE, help="your private signing key (PEM)")
@click.option("--mirror", type=_FILE, help="the local mirror file (SQLite)")
@click.option("--state", type=_FILE, help="the trusted log state (JSON)")
@click.option("--timeout", type=float, help="seconds to wait for the server's answer (30)")
@click.option(
    "--match-socket", type=_FILE, help="the socket serve-match answers on and match --server asks"
)
@click.option("--config", "config_file", type=_FILE, help="the config file (TOML)")
@click.version_option(package_name="consortium-client", message="%(prog)s %(version)s")
@click.pass_context
def consortium(
    context: click.Context,
    url: str | None,
    api_key: str | None,
    signing_key: Path | None,
    mirror: Path | None,
    state: Path | None,
    timeout: float | None,
    match_socket: Path | None,
    config_file: Path | None,
) -> None:
    """The partner command line of a Consortium hash-sharing server."""
    flags = {
        "url": url,
        "api_key": api_key,
        "signing_key": signing_key,
        "mirror": mirror,
        "state": state,
        "timeout": timeout,
        "match_socket": match_socket,
    }
    try:
        context.obj = config_load(flags=flags, config_file=config_file)
    except ConfigError as exc:
        if not context.meta.get("consortium.help"):
            raise UsageError(str(exc)) from exc
        context.obj = config_load(flags=flags, environ={}, config_file=Path(os.devnull))


# --- keys ----------------------------------------------------------------------------------


@consortium.command()
@click.option("--out", required=True, help="writes OUT.pem (private, mode 0600) and OUT.pub.pem")
def keygen(out: str) -> None:
    """Make an Ed25519 signing key pair; print its key id and how to register it."""
    private_path, public_path = Path(f"{out}.pem"), Path(f"{out}.pub.pem")
    private = key_generate()
    try:
        # Created with its final mode, never readable by others even for an instant, and
        # never over an existing key (O_EXCL): a lost private key cannot be recovered.
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise CliError(f"{private_path} exists; refusing to overwrite a private key") from None
    except OSError as exc:
        raise CliError(f"cannot write {private_path}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "wb") as file:
        file.write(private_key_pem(private))
    public_path.write_bytes(public_key_pem(private.public_key()))
    click.echo(key_id(private.public_key()))
    click.echo(
        f"wrote {private_path} (keep it private) and {public_path}; to register the public "
        f"key, send {public_path} to the server's administrator, who runs:\n"
        f"  python manage.py signing_key_add YOUR-PARTNER-NAME {public_path}",
        err=True,
    )


# --- hashing -------------------------------------------------------------------------------


@consortium.command("hash")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--algorithm",
    "-a",
    type=click.Choice(ALGORITHM_NAMES),
    multiple=True,
    help="only this algorithm (repeatable; default all)",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["jsonl", "csv", "lines"]),
    default="jsonl",
    show_default=True,
    help="JSON lines or CSV (a row a file), or 'algorithm value' lines",
)
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="worker processes (default: cores)")
def hash_command(
    paths: tuple[Path, ...], algorithm: tuple[str, ...], output_format: str, jobs: int | None
) -> int:
    """Hash images and videos locally (PATHS: files or directories, recursively); nothing
    is sent.

    A video (told by its content: MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV, Ogg, ASF)
    gets md5, sha256 and vpdq (a PDQ hash a second), an image the image algorithms. Files
    that cannot be read or are neither are reported on standard error, one line each, and
    skipped. Exit status: 0 all hashed, 1 some skipped, 2 usage error.
    """
    imaging_required()
    algorithms = list(algorithm) or list(ALGORITHM_NAMES)
    files = files_walk(paths)
    skipped = 0
    writer = csv.writer(sys.stdout, lineterminator="\n") if output_format == "csv" else None
    if writer is not None:
        writer.writerow(["path", *algorithms, "pdq_quality"])
    for result in _progress(files_hash(files, algorithms=algorithms, jobs=jobs), len(files)):
        if not isinstance(result, FileHashed):
            skipped += 1
            click.echo(f"consortium: {result.path}: {result.message}", err=True)
            continue
        if writer is not None:
            writer.writerow(
                [
                    result.path,
                    *(result.values.get(a, "") for a in algorithms),
                    "" if result.pdq_quality is None else result.pdq_quality,
                ]
            )
        elif output_format == "lines":
            for name, value in result.values.items():
                click.echo(f"{name} {value}")
        else:
            line: dict[str, Any] = {"path": result.path, **result.values}
            if result.pdq_quality is not None:
                line["pdq_quality"] = result.pdq_quality
            click.echo(json.dumps(line, separators=(",", ":")))
    return 1 if skipped else 0


def _progress(results: Iterable[Any], total: int) -> Iterable[Any]:
    """A progress bar on standard error when it is a terminal (none in a pipe or a log)."""
    if total < 2:
        return results
    from tqdm import tqdm

    return tqdm(results, total=total, unit="file", disable=None, file=sys.stderr, leave=False)


def _images_entries(
    paths: Sequence[Path],
    algorithms: Sequence[str],
    labels: list[str],
    jobs: int | None,
    variants: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    imaging_required()
    entries: list[dict[str, Any]] = []
    skipped = 0
    files = files_walk(paths)
    hashed = files_hash(files, algorithms=algorithms, jobs=jobs, variants=variants)
    for result in _progress(hashed, len(files)):
        if not isinstance(result, FileHashed):
            skipped += 1
            click.echo(f"consortium: {result.path}: {result.message}", err=True)
            continue
        for name, value in result.values.items():
            entry: dict[str, Any] = {"algorithm": name, "value": value, "labels": labels}
            if name == "pdq":
                entry["quality"] = result.pdq_quality
                if result.pdq_variants:
                    entry["variants"] = result.pdq_variants
            entries.append(entry)
    return entries, skipped


# --- signing and submitting ----------------------------------------------------------------


@consortium.command()
@click.argument("hashes", metavar="HASHES")
@click.option("--key", type=_FILE, help="your private signing key (default: signing_key)")
@click.option("--list", "list_name", required=True, help="the list to submit to")
@click.option("--labels", default="", help="comma-separated labels for every entry")
@click.pass_obj
def sign(config: Config, hashes: str, key: Path | None, list_name: str, labels: str) -> None:
    """Print a signed submission of a HASHES file (- for standard input): the envelope and
    the values beside it, as POST /api/v1/submissions takes it."""
    entries = hashes_read(read_text(hashes).splitlines(), _labels(labels))
    from consortium_client.payloads import submission_envelope

    signed = submission_envelope(list_name, entries, private_key(config, key))
    click.echo(signed.body().decode())


@consortium.command()
@click.argument("inputs", nargs=-1, metavar="[HASHES|IMAGES]...")
@click.option("--key", type=_FILE, help="your private signing key (default: signing_key)")
@click.option("--list", "list_name", help="the list to submit to")
@click.option("--labels", default="", help="comma-separated labels for every entry")
@click.option(
    "--images",
    is_flag=True,
    help="the inputs are images or videos (or directories of them), hashed here first",
)
@click.option(
    "--algorithm",
    "-a",
    type=click.Choice(ALGORITHM_NAMES),
    multiple=True,
    help="with --images: only this algorithm (repeatable; default all)",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=1000),
    default=500,
    show_default=True,
    help="entries per signed submission",
)
@click.option(
    "--journal",
    type=_FILE,
    help="where to record the signed batches, to resume (default: in the data directory)",
)
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="with --images: worker processes")
@click.option(
    "--no-variants",
    is_flag=True,
    help="with --images: submit no variants (the canonical image's PDQ, crops and rotations) "
    "with the pdq entries",
)
@click.option(
    "--envelope",
    metavar="FILE",
    help="send a signed submission made by 'sign' (or - for standard input) as it is",
)
@click.option("--ids", is_flag=True, help="print only the new entries' ids, one a line")
@click.pass_obj
def submit(
    config: Config,
    inputs: tuple[str, ...],
    key: Path | None,
    list_name: str | None,
    labels: str,
    images: bool,
    algorithm: tuple[str, ...],
    batch_size: int,
    journal: Path | None,
    jobs: int | None,
    no_variants: bool,
    envelope: str | None,
    ids: bool,
) -> int:
    """Sign hashes (HASHES files, - for standard input) or images (with --images) and submit
    them in batches; resumable.

    Each batch's signed body is recorded in a journal before it is sent. Interrupted, the
    same command again resends the recorded batches as they were (the server answers a
    signed statement it already stored with the entries it stored then) and goes on: no
    entry is stored twice. Exit status: 0 submitted, 1 failed or some images skipped.
    """
    api = api_client(config)
    if envelope:
        if inputs or list_name:
            raise UsageError("--envelope is sent as it is: give no hashes and no --list")
        _submit_print(api.post_body("submissions", read_text(envelope).strip().encode()), ids)
        return 0
    if not (inputs and list_name):
        raise UsageError("submit needs --list and hashes files or images (or --envelope)")
    signer = private_key(config, key)
    skipped = 0
    if images:
        # The PDQ of the image without plain borders, and of crops and small rotations of
        # it, travel with the pdq entry so that edited copies match (docs/matching.md).
        entries, skipped = _images_entries(
            [Path(p) for p in inputs],
            list(algorithm) or ALGORITHM_NAMES,
            _labels(labels),
            jobs,
            variants=not no_variants,
        )
    else:
        if algorithm:
            raise UsageError("--algorithm chooses what to hash: it needs --images")
        entries = []
        for source in inputs:
            entries += hashes_read(
                read_text(source).splitlines(), _labels(labels), allow_empty=True
            )
    if not entries:
        raise CliError("no hashes to submit")

    from consortium_client.batches import JournalError, batch_id, submit_batches

    run = batch_id(
        server=api.base_url,
        list_name=list_name,
        signer=key_id(signer.public_key()),
        batch_size=batch_size,
        entries=entries,
    )
    journal = journal or data_dir() / "journals" / f"submit-{run}.jsonl"

    def resumed(answered: int, recorded: int) -> None:
        click.echo(
            f"consortium: resuming from {journal}: {answered} batches answered, "
            f"{recorded - answered} to send again",
            err=True,
        )

    try:
        for result in submit_batches(
            api,
            list_name=list_name,
            entries=entries,
            private_key=signer,
            batch_size=batch_size,
            journal=journal,
            run=run,
            on_resume=resumed,
        ):
            _submit_print(result.answer, ids)
    except JournalError as exc:
        raise UsageError(str(exc)) from exc
    return 1 if skipped else 0


def _submit_print(answer: dict[str, Any], ids: bool) -> None:
    if ids:
        for entry in answer["entries"]:
            click.echo(entry["id"])
    else:
        click.echo(json.dumps(answer))


@consortium.command()
@click.argument("entries", nargs=-1, required=True, type=int)
@click.option("--key", type=_FILE, help="your private signing key (default: signing_key)")
@click.option("--reason", required=True, help="why, as every partner will read it")
@click.pass_obj
def revoke(config: Config, entries: tuple[int, ...], key: Path | None, reason: str) -> None:
    """Sign and send a revocation of your ENTRIES (ids, as 'submit --ids' prints them)."""
    from consortium_client.payloads import revocation_envelope

    envelope = revocation_envelope(list(entries), reason, private_key(config, key))
    click.echo(json.dumps(api_client(config).post_envelope("revocations", envelope)))


@consortium.command()
@click.argument("entry", type=int)
@click.argument("verdict", type=click.Choice(VERDICTS))
@click.option(
    "--reason",
    required=True,
    type=click.Choice(REASON_CODES),
    help="a reason code the verdict allows (agree: confirmed_abusive, confirmed_label; "
    "disagree: not_abusive, wrong_label, wrong_category, low_quality_hash; false_positive: "
    "matched_benign_content, not_abusive, low_quality_hash)",
)
@click.option("--note", help="for the submitter and the administrators; never in the log")
@click.option("--grade", help="with agree: a grade from the list's scale")
@click.option("--key", type=_FILE, help="your private signing key (default: signing_key)")
@click.pass_obj
def feedback(
    config: Config,
    entry: int,
    verdict: str,
    reason: str,
    note: str | None,
    grade: str | None,
    key: Path | None,
) -> None:
    """Sign and send your VERDICT on another partner's ENTRY (it replaces your previous one)."""
    from consortium_client.feedback import feedback_envelope

    try:
        envelope = feedback_envelope(
            entry=entry,
            verdict=verdict,
            reason=reason,
            note=note,
            grade=grade,
            private_key=private_key(config, key),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    click.echo(json.dumps(api_client(config).post_envelope(f"entries/{entry}/feedback", envelope)))


# --- what is in force ----------------------------------------------------------------------


@consortium.command("config")
@click.pass_obj
def config_command(config: Config) -> None:
    """Show each setting in force, its value (the API key masked) and where it came from."""
    rows = []
    for name in ENVIRONMENT:
        setting = config.sources[name]
        value = api_key_masked(setting.value) if name == "api_key" else setting.value
        rows.append((name, "(not set)" if value is None else value, setting.source))
    default = config_file_default()
    named = os.environ.get(CONFIG_ENVIRONMENT)
    file_source = f"env {CONFIG_ENVIRONMENT}" if named else "default"
    used = {s.source.removeprefix("config ") for s in config.sources.values()}
    file = next((u for u in used if u.endswith(".toml")), named or str(default))
    state = "" if Path(file).is_file() else " (not found)"
    rows.append(("config file", f"{file}{state}", file_source))
    width = max(len(row[1]) for row in rows)
    for name, value, source in rows:
        click.echo(f"{name:<12} {value:<{width}}  {source}")


@consortium.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@click.pass_obj
def status(config: Config, as_json: bool) -> int:
    """Who the server says you are, your mirror (cursor, tree size, entries by status) and
    your trusted checkpoint.

    Local parts are shown even when the server cannot be asked (exit status 1 then).
    """
    report: dict[str, Any] = {"server": config.url}
    failed = None
    try:
        report["me"] = api_client(config).me()
    except (ApiError, CliError) as exc:
        failed = str(exc.format_message() if isinstance(exc, CliError) else exc)
        report["error"] = failed
    report["mirror"] = _mirror_status(config.mirror)
    report["trusted_checkpoint"] = _trusted_status(config.state)
    if as_json:
        click.echo(json.dumps(report, default=str))
    else:
        _status_print(report)
    if failed:
        click.echo(f"consortium: {failed}", err=True)
    return 1 if failed else 0


def _mirror_status(path: Path) -> dict[str, Any]:
    from consortium_client.mirror_store import MirrorStoreError
    from consortium_client.mirror_sync import Mirror

    if not path.exists():
        return {"path": str(path), "exists": False}
    try:
        mirror = Mirror(path)
    except MirrorStoreError as exc:
        return {"path": str(path), "exists": True, "error": str(exc)}
    with mirror:
        counts = mirror.counts()
        return {
            "path": str(path),
            "exists": True,
            "cursor": mirror.cursor,
            "tree_size": mirror.tree_size,
            "entries": {status: counts.get(status, 0) for status in _ENTRY_STATUSES},
        }


_ENTRY_STATUSES = ("active", "revoked", "erased")


def _trusted_status(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"path": str(path), "exists": False}
    try:
        trusted = state_load(path)
    except (CliError, VerificationError, ValueError) as exc:
        return {"path": str(path), "exists": True, "error": str(exc)}
    checkpoint = trusted.checkpoint
    return {
        "path": str(path),
        "exists": True,
        "origin": trusted.origin,
        "checkpoint": None if checkpoint is None else checkpoint_describe(checkpoint),
    }


def _status_print(report: dict[str, Any]) -> None:
    click.echo(f"server        {report['server']}")
    me = report.get("me")
    if me is not None:
        key = me.get("api_key", {})
        click.echo(f"partner       {me['name']} ({me['display_name']}, {me['status']})")
        scopes = ",".join(key.get("scopes", []))
        expires = key.get("expires_at") or "never"
        click.echo(f"api key       csk_{key.get('prefix')}_**** scopes {scopes}, expires {expires}")
        for signing in me.get("signing_keys", []):
            revoked = f", revoked {signing['revoked_at']}" if signing.get("revoked_at") else ""
            click.echo(f"signing key   {signing['key_id']} ({signing['name']}{revoked})")
    mirror = report["mirror"]
    if not mirror["exists"]:
        click.echo(f"mirror        none at {mirror['path']} (run 'consortium sync')")
    elif "error" in mirror:
        click.echo(f"mirror        {mirror['error']}")
    else:
        counts = ", ".join(f"{n} {status}" for status, n in mirror["entries"].items())
        click.echo(
            f"mirror        {mirror['path']}: cursor {mirror['cursor']}, verified tree size "
            f"{mirror['tree_size']}, entries: {counts}"
        )
    trusted = report["trusted_checkpoint"]
    if not trusted["exists"]:
        click.echo(f"checkpoint    none at {trusted['path']} (run 'consortium verify init')")
    elif "error" in trusted:
        click.echo(f"checkpoint    {trusted['error']}")
    else:
        click.echo(f"checkpoint    {trusted['checkpoint'] or 'none verified yet'}")


# --- the feed, as JSON lines, unverified ---------------------------------------------------


@consortium.command()
@click.option("--after", help="start after this cursor (default: the beginning)")
# The server's largest page: a full sync then costs a tenth of the requests.
@click.option("--limit", type=click.IntRange(min=1), default=10_000, help="events per request")
@click.option("--cursor-file", type=_FILE, help="resume from and save the cursor here")
@click.pass_obj
def feed(config: Config, after: str | None, limit: int, cursor_file: Path | None) -> None:
    """Print the feed's events after a cursor as JSON lines (unverified; see 'sync')."""
    if after is None and cursor_file is not None and cursor_file.exists():
        after = cursor_file.read_text().strip() or None
    cursor = after
    try:
        for event, position in api_client(config).feed(after=after, limit=limit):
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            cursor = position
    finally:
        # Save progress even when interrupted, so the next sync resumes, never repeats.
        if cursor_file is not None and cursor is not None:
            cursor_file.write_text(f"{cursor}\n")


# --- the verifiable log, online ------------------------------------------------------------


@consortium.group(epilog="Exit status: 0 verified, 1 refused, 2 usage error.")
def log() -> None:
    """Fetch from the server and verify against the trusted state, in one go
    ('consortium verify init' first)."""


@log.command("checkpoint")
@state_option
@click.pass_obj
def log_checkpoint(config: Config, state: Path | None) -> None:
    """Fetch the latest checkpoint and advance the trusted state to it (with a consistency
    proof from the server)."""
    from consortium_client.follow import checkpoint_follow
    from consortium_client.verify import trusted_state_save

    path = state_path(config, state)
    followed = checkpoint_follow(api_client(config), state_load(path))
    trusted_state_save(path, followed)
    if followed.checkpoint is not None:  # always, once followed
        click.echo(f"verified: {checkpoint_describe(followed.checkpoint)}")


@log.command("inclusion")
@click.argument("index", type=click.IntRange(min=0))
@click.option("--out", type=_FILE, help="also save the verified leaf's bytes here")
@state_option
@click.pass_obj
def log_inclusion(config: Config, index: int, out: Path | None, state: Path | None) -> None:
    """Fetch leaf INDEX (an entry's id) and its proof; verify it is in the trusted
    checkpoint."""
    from consortium_client.follow import leaf_inclusion_check

    trusted = state_load(state_path(config, state))
    leaf = leaf_inclusion_check(api_client(config), trusted, index)
    if out:
        out.write_bytes(leaf)
    if trusted.checkpoint is not None:  # always: leaf_inclusion_check refuses without one
        click.echo(f"verified: leaf {index} is in {checkpoint_describe(trusted.checkpoint)}")


@log.command("cosign")
@click.option("--key", type=_FILE, help="your private signing key (default: signing_key)")
@click.option("--name", required=True, help="your partner name")
@state_option
@click.pass_obj
def log_cosign(config: Config, key: Path | None, name: str, state: Path | None) -> None:
    """Cosign the trusted checkpoint and post it."""
    from consortium_client.follow import checkpoint_cosign

    trusted = state_load(state_path(config, state))
    if trusted.checkpoint is None:
        raise UsageError("no trusted checkpoint: run 'consortium log checkpoint' first")
    note = checkpoint_cosign(trusted.checkpoint, name=name, private_key=private_key(config, key))
    result = api_client(config).cosign_post(note)
    click.echo(f"cosigned size {result['size']} as {name} ({result['added']} new)")


consortium.add_command(verify)
consortium.add_command(cosign)
consortium.add_command(sync_command)
consortium.add_command(match_command)
consortium.add_command(serve_match_command)


# --- running it ----------------------------------------------------------------------------


def _one_line(message: str) -> str:
    return " ".join(message.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run `consortium` with `argv` (default: the process's arguments); return the exit
    status. Errors are one line on standard error, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = consortium.main(args=args, prog_name="consortium", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "consortium"
        if not args:
            click.echo(consortium.get_help(click.Context(consortium, info_name="consortium")))
            return 2
        message = _one_line(exc.format_message()).rstrip(".")
        click.echo(f"consortium: {message} (see '{where} --help')", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"consortium: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except (ApiError, EnvelopeError, VerificationError, ConfigError) as exc:
        click.echo(f"consortium: {_one_line(str(exc))}", err=True)
        return 1
    except (click.Abort, KeyboardInterrupt):
        click.echo("consortium: interrupted", err=True)
        return 130
    except BrokenPipeError:
        # The reader went away (`consortium hash dir | head`): not an error of ours.
        sys.stderr.close()
        return 141
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
