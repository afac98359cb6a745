"""`consortium`: the partner command line.

Configuration comes from flags or the environment: CONSORTIUM_URL (default
http://127.0.0.1:8000) and CONSORTIUM_API_KEY. Every failure prints one line to standard
error and exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from consortium_client.api import ApiError, ConsortiumApi
from consortium_client.dsse import EnvelopeError
from consortium_client.follow import checkpoint_cosign, checkpoint_follow, leaf_inclusion_check
from consortium_client.hashvalues import HashValueError, algorithm_get, hash_value_parse
from consortium_client.keys import (
    KeyFormatError,
    key_generate,
    key_id,
    private_key_load,
    private_key_pem,
    public_key_pem,
)
from consortium_client.payloads import (
    SignedSubmission,
    revocation_envelope,
    submission_envelope,
)
from consortium_client.verify import VerificationError
from consortium_client.verify_cli import (
    UsageError,
    checkpoint_describe,
    parsers_add,
    state_load,
    state_save,
)

EPILOG = """\
environment:
  CONSORTIUM_URL      the server, as for --url (default http://127.0.0.1:8000)
  CONSORTIUM_API_KEY  your API key, as for --api-key

A hashes file has one 'algorithm value' (or 'algorithm:value') a line, for example
'pdq 9f...' or 'md5:d4...'; blank lines and '#' comments are skipped. 'consortium hash'
prints one for an image. Run 'consortium COMMAND --help' for a command's options."""


class CliError(Exception):
    """A one-line error for the user."""


def hashes_read(lines: Iterable[str], labels: list[str]) -> list[dict[str, Any]]:
    """Read `algorithm value` (or `algorithm:value`) lines; blank lines and # comments skip."""
    entries = []
    for number, line in enumerate(lines, start=1):
        # A byte-order mark (Windows editors write one) is not part of the first line.
        text = line.removeprefix("\ufeff") if number == 1 else line
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
    if not entries:
        raise CliError("no hashes to submit")
    return entries


def _read_text(source: str) -> str:
    try:
        if source == "-":
            return sys.stdin.read()
        return Path(source).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CliError(f"cannot read {source}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"cannot read {source}: not UTF-8 text") from exc


def _private_key(path: str) -> Any:
    try:
        return private_key_load(Path(path).read_bytes())
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    except KeyFormatError as exc:
        raise CliError(f"{path}: {exc}") from exc


def _api(args: argparse.Namespace) -> ConsortiumApi:
    if not args.api_key:
        raise CliError("no API key: pass --api-key or set CONSORTIUM_API_KEY")
    try:
        return ConsortiumApi(args.url, args.api_key, timeout=args.timeout)
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _labels(text: str) -> list[str]:
    return [label.strip() for label in text.split(",") if label.strip()]


def cmd_keygen(args: argparse.Namespace) -> None:
    private_path = Path(f"{args.out}.pem")
    if private_path.exists():
        raise CliError(f"{private_path} exists; refusing to overwrite a private key")
    private_key = key_generate()
    private_path.write_bytes(private_key_pem(private_key))
    private_path.chmod(0o600)
    Path(f"{args.out}.pub.pem").write_bytes(public_key_pem(private_key.public_key()))
    print(key_id(private_key.public_key()))


def cmd_sign(args: argparse.Namespace) -> None:
    entries = hashes_read(_read_text(args.hashes).splitlines(), _labels(args.labels))
    signed = submission_envelope(args.list, entries, _private_key(args.key))
    sys.stdout.write(signed.body().decode())
    sys.stdout.write("\n")


def cmd_submit(args: argparse.Namespace) -> None:
    api = _api(args)
    if args.envelope:
        # What 'sign' printed: the envelope and the values beside it, sent as they are.
        body = _read_text(args.envelope).strip().encode()
        result = api.post_body("submissions", body)
    else:
        if not (args.key and args.list and args.hashes):
            raise CliError("submit needs --envelope, or --key, --list and a hashes file")
        entries = hashes_read(_read_text(args.hashes).splitlines(), _labels(args.labels))
        signed: SignedSubmission = submission_envelope(args.list, entries, _private_key(args.key))
        result = api.submit(signed)
    if args.ids:
        for entry in result["entries"]:
            print(entry["id"])
    else:
        print(json.dumps(result))


def cmd_hash(args: argparse.Namespace) -> None:
    from consortium_client.imaging import ImageRejected, image_file_hashes

    algorithms = args.algorithm or None
    for path in args.images:
        try:
            hashed = image_file_hashes(path)
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from exc
        except ImageRejected as exc:
            raise CliError(f"{path}: {exc.message}") from exc
        for algorithm, value in hashed.values.items():
            if algorithms is None or algorithm in algorithms:
                print(f"{algorithm} {value}")


def cmd_revoke(args: argparse.Namespace) -> None:
    envelope = revocation_envelope(args.entries, args.reason, _private_key(args.key))
    print(json.dumps(_api(args).post_envelope("revocations", envelope)))


def cmd_feed(args: argparse.Namespace) -> None:
    cursor_path = Path(args.cursor_file) if args.cursor_file else None
    after = args.after
    if after is None and cursor_path is not None and cursor_path.exists():
        after = cursor_path.read_text().strip() or None
    cursor = after
    try:
        for event, position in _api(args).feed(after=after, limit=args.limit):
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            cursor = position
    finally:
        # Save progress even when interrupted, so the next sync resumes, never repeats.
        if cursor_path is not None and cursor is not None:
            cursor_path.write_text(f"{cursor}\n")


def cmd_match(args: argparse.Namespace) -> None:
    # Imported here so that the other commands work without the imaging extras installed.
    from consortium_client.imaging import ImageRejected, image_file_hashes
    from consortium_client.mirror import mirror_load

    try:
        mirror = mirror_load(_read_text(args.mirror).splitlines())
    except OSError as exc:
        raise CliError(f"cannot read {args.mirror}: {exc.strerror}") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    queries: list[tuple[str, str, str]] = []  # (what, algorithm, value)
    for text in args.hash or []:
        parsed = hashes_read([text], [])[0]
        queries.append((text, parsed["algorithm"], parsed["value"]))
    for path in args.images:
        try:
            hashed = image_file_hashes(path, dihedral=args.dihedral)
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc.strerror}") from exc
        except ImageRejected as exc:
            raise CliError(f"{path}: {exc.message}") from exc
        queries += [(path, algorithm, value) for algorithm, value in hashed.values.items()]
        queries += [(path, "pdq", value) for value in hashed.pdq_dihedral or []]
    if not queries:
        raise CliError("nothing to match: give image files or --hash algorithm:value")
    for what, algorithm, value in queries:
        for found in mirror.match(algorithm, value, args.radius):
            print(
                json.dumps(
                    {"query": what, "algorithm": algorithm, "value": value, "match": found},
                    separators=(",", ":"),
                )
            )


def cmd_log_checkpoint(args: argparse.Namespace) -> None:
    state = checkpoint_follow(_api(args), state_load(args))
    state_save(args, state)
    if state.checkpoint is not None:  # always, once followed
        print(f"verified: {checkpoint_describe(state.checkpoint)}")


def cmd_log_inclusion(args: argparse.Namespace) -> None:
    state = state_load(args)
    leaf = leaf_inclusion_check(_api(args), state, args.index)
    if args.out:
        Path(args.out).write_bytes(leaf)
    if state.checkpoint is not None:  # always: leaf_inclusion_check refuses without one
        print(f"verified: leaf {args.index} is in {checkpoint_describe(state.checkpoint)}")


def cmd_log_cosign(args: argparse.Namespace) -> None:
    state = state_load(args)
    if state.checkpoint is None:
        raise UsageError("no trusted checkpoint: run 'consortium log checkpoint' first")
    note = checkpoint_cosign(state.checkpoint, name=args.name, private_key=_private_key(args.key))
    result = _api(args).cosign_post(note)
    print(f"cosigned size {result['size']} as {args.name} ({result['added']} new)")


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consortium",
        description="The partner command line of a Consortium hash-sharing server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("CONSORTIUM_URL", "http://127.0.0.1:8000"),
        help="the server, e.g. https://consortium.example (a trailing /api/v1 is accepted); "
        "default $CONSORTIUM_URL or http://127.0.0.1:8000",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CONSORTIUM_API_KEY"),
        help="your API key; default $CONSORTIUM_API_KEY",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the server's answer (default 30)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair; print its key id")
    keygen.add_argument("--out", required=True, help="writes OUT.pem and OUT.pub.pem")
    keygen.set_defaults(handler=cmd_keygen)

    hash_ = commands.add_parser(
        "hash", help="print an image's hashes as 'algorithm value' lines, computed locally"
    )
    hash_.add_argument(
        "--algorithm",
        action="append",
        choices=["pdq", "phash", "dhash", "ahash", "whash", "md5", "sha256"],
        help="only this algorithm (repeatable; default all)",
    )
    hash_.add_argument("images", nargs="+", help="image files (JPEG, PNG, GIF, WebP, ...)")
    hash_.set_defaults(handler=cmd_hash)

    sign = commands.add_parser(
        "sign", help="print a signed submission: the envelope and the values beside it"
    )
    sign.add_argument("--key", required=True, help="your private signing key (PEM)")
    sign.add_argument("--list", required=True, help="the list to submit to")
    sign.add_argument("--labels", default="", help="comma-separated labels for every entry")
    sign.add_argument("hashes", help="file of 'algorithm value' lines, or - for standard input")
    sign.set_defaults(handler=cmd_sign)

    submit = commands.add_parser("submit", help="sign (unless --envelope) and submit hashes")
    submit.add_argument(
        "--envelope", help="a signed submission made by 'sign' (or - for standard input)"
    )
    submit.add_argument("--key", help="your private signing key (PEM)")
    submit.add_argument("--list", help="the list to submit to")
    submit.add_argument("--labels", default="", help="comma-separated labels for every entry")
    submit.add_argument(
        "--ids", action="store_true", help="print only the new entries' ids, one a line"
    )
    submit.add_argument(
        "hashes", nargs="?", help="file of 'algorithm value' lines, or - for standard input"
    )
    submit.set_defaults(handler=cmd_submit)

    revoke = commands.add_parser("revoke", help="sign and send a revocation of your entries")
    revoke.add_argument("--key", required=True, help="your private signing key (PEM)")
    revoke.add_argument("--reason", required=True, help="why, as every partner will read it")
    revoke.add_argument("entries", nargs="+", type=int, help="entry ids (from 'submit --ids')")
    revoke.set_defaults(handler=cmd_revoke)

    feed = commands.add_parser("feed", help="print events after a cursor as JSON lines")
    feed.add_argument("--after", help="start after this cursor (default: the beginning)")
    # The server's largest page: a full sync then costs a tenth of the requests.
    feed.add_argument(
        "--limit", type=int, default=10_000, help="events per request (default 10000)"
    )
    feed.add_argument("--cursor-file", help="resume from and save the cursor here")
    feed.set_defaults(handler=cmd_feed)

    match = commands.add_parser("match", help="match images or hashes against a local mirror")
    match.add_argument("--mirror", required=True, help="JSON lines saved from 'feed'")
    match.add_argument("--hash", action="append", help="algorithm:value (repeatable)")
    match.add_argument("--radius", type=int, help="override the algorithm's default radius")
    match.add_argument("--dihedral", action="store_true", help="also rotations and mirrors")
    match.add_argument("images", nargs="*", help="image files to hash locally and match")
    match.set_defaults(handler=cmd_match)

    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state", help="the trusted-state file (as for 'verify')")
    log = commands.add_parser(
        "log",
        help="fetch from the server and verify against the trusted state, in one go",
        description="Fetch what the log serves and verify it against the trusted state "
        "('consortium verify init' first). Exit status: 0 verified, 1 refused, 2 usage error.",
    )
    log_commands = log.add_subparsers(dest="log_command", required=True, metavar="COMMAND")
    follow = log_commands.add_parser(
        "checkpoint",
        parents=[state],
        help="fetch the latest checkpoint and advance the trusted state to it (with a "
        "consistency proof from the server)",
    )
    follow.set_defaults(handler=cmd_log_checkpoint)
    inclusion = log_commands.add_parser(
        "inclusion",
        parents=[state],
        help="fetch a leaf and its proof, verify it is in the trusted checkpoint",
    )
    inclusion.add_argument("index", type=int, help="the leaf's index (an entry's id)")
    inclusion.add_argument("--out", help="also save the verified leaf's bytes here")
    inclusion.set_defaults(handler=cmd_log_inclusion)
    cosign = log_commands.add_parser(
        "cosign", parents=[state], help="cosign the trusted checkpoint and post it"
    )
    cosign.add_argument("--key", required=True, help="your private signing key (PEM)")
    cosign.add_argument("--name", required=True, help="your partner name")
    cosign.set_defaults(handler=cmd_log_cosign)

    parsers_add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser_build().parse_args(argv)
    try:
        args.handler(args)
    except UsageError as exc:
        print(f"consortium: {exc}", file=sys.stderr)
        return 2
    except (CliError, ApiError, EnvelopeError, VerificationError) as exc:
        print(f"consortium: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
