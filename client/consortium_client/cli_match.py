"""`consortium match` and `consortium serve-match`: matching against the local mirror.

`match` hashes images locally (the image never leaves the machine) or reads hash lines, and
matches them against the mirror `consortium sync` keeps, or asks a running `serve-match`.
Exit status: 0 nothing matched, 1 something matched, 2 an error (an input that could not be
read or hashed, a mirror that cannot be used); an error outranks a match, so that a pipeline
never takes "not everything was checked" for "nothing matched".
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click

from consortium_client.cli_common import CliError
from consortium_client.config import Config
from consortium_client.hashvalues import ALGORITHMS, HashValueError, hash_value_parse
from consortium_client.match_server import (
    MAX_LIMIT,
    MatchClient,
    MatchServerError,
    MatchService,
    server_open,
)
from consortium_client.mirror_index import DEFAULT_LIMIT, MirrorMatch, MirrorMatcher, QueryResult
from consortium_client.mirror_store import MirrorStoreError
from consortium_client.sniffing import is_video

# Below this many query hashes a fresh `match` scans the snapshot rather than building the
# index's tables: a scan of 1M PDQ rows is ~10 ms, building their tables ~1 s.
TABLES_FROM_QUERIES = 64


class MatchError(CliError):
    """A one-line error that ends `match` with exit status 2 (1 means "a match")."""

    exit_code = 2


@dataclass
class MatchInput:
    """One thing to match: an image (several hashes) or one hash line."""

    name: str
    hashes: list[tuple[str, str, str | None]] = field(default_factory=list)  # alg, value, transform
    quality: int | None = None
    error: str | None = None


def hash_line_inputs(lines: Iterable[str], source: str) -> Iterator[MatchInput]:
    """Inputs from hash lines: `algorithm value`, `algorithm:value`, or a JSON object (with
    `algorithm` and `value`, or algorithm names as keys and a `path` or `file` naming it).
    Blank lines and `#` comments are skipped; a bad line is an input with an error."""
    for number, raw in enumerate(lines, start=1):
        text = (raw.removeprefix("\ufeff") if number == 1 else raw).strip()
        where = f"{source}:{number}"
        if not text or text.startswith("#"):
            continue
        try:
            if text.startswith("{"):
                yield _json_line_input(text, where)
                continue
            parts = text.split("#", 1)[0].replace(":", " ", 1).split()
            if len(parts) != 2:
                raise HashValueError("expected 'algorithm value'")
            algorithm, value = parts
            value = hash_value_parse(algorithm, value)
            hashes: list[tuple[str, str, str | None]] = [(algorithm, value, None)]
            yield MatchInput(f"{algorithm}:{value}", hashes)
        except HashValueError as exc:
            yield MatchInput(where, error=str(exc))


def _json_line_input(text: str, where: str) -> MatchInput:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise HashValueError("not a JSON object") from exc
    if not isinstance(document, dict):
        raise HashValueError("not a JSON object")
    if "algorithm" in document and "value" in document:
        pairs = [(document["algorithm"], document["value"])]
    else:
        pairs = [(name, document[name]) for name in ALGORITHMS if name in document]
    if not pairs:
        raise HashValueError("no hash in this line")
    hashes: list[tuple[str, str, str | None]] = [
        (str(alg), hash_value_parse(str(alg), value), None) for alg, value in pairs
    ]
    name = document.get("path") or document.get("file") or f"{hashes[0][0]}:{hashes[0][1]}"
    return MatchInput(str(name), hashes)


def image_inputs(paths: Sequence[Path], *, dihedral: bool) -> Iterator[MatchInput]:
    """Inputs from image files and directories (recursive, in name order); a file that cannot
    be read or hashed is an input with an error."""
    try:
        from consortium_client.imaging import ImageRejected, image_file_hashes
    except ImportError as exc:
        raise MatchError(
            "hashing images needs the imaging extras: pip install 'consortium-client[images]'"
        ) from exc
    for path in _files(paths):
        if _is_video(path):
            yield _video_input(path)
            continue
        try:
            hashed = image_file_hashes(path, dihedral=dihedral, canonical=True)
        except OSError as exc:
            yield MatchInput(str(path), error=f"cannot read: {exc.strerror or exc}")
            continue
        except ImageRejected as exc:
            yield MatchInput(str(path), error=exc.message)
            continue
        hashes: list[tuple[str, str, str | None]] = [
            (algorithm, value, None) for algorithm, value in hashed.values.items()
        ]
        hashes += _derived_hashes(hashed)
        yield MatchInput(str(path), hashes, quality=hashed.pdq_quality)


def _is_video(path: Path) -> bool:
    try:
        return is_video(path)
    except OSError:
        return False  # reported when the image path reads it


def _video_input(path: Path) -> MatchInput:
    """A video's md5, sha256 and vpdq, or the reason it has none."""
    try:
        from consortium_client.video import VideoRejected, video_file_hashes
    except ImportError:
        return MatchInput(str(path), error="a video: pip install 'consortium-client[video]'")
    try:
        hashed = video_file_hashes(path)
    except OSError as exc:
        return MatchInput(str(path), error=f"cannot read: {exc.strerror or exc}")
    except VideoRejected as exc:
        return MatchInput(str(path), error=str(exc))
    return MatchInput(str(path), [(name, value, None) for name, value in hashed.values.items()])


def _derived_hashes(hashed: Any) -> list[tuple[str, str, str | None]]:
    """The image's other PDQ hashes, as the server's image match derives them: turned and
    mirrored (unless --no-dihedral), without plain borders (`canonical`), and both; none twice."""
    from consortium_client.imaging import DIHEDRAL_TRANSFORMS

    # The first dihedral hash is the original, already among the values.
    derived = list(zip(DIHEDRAL_TRANSFORMS[1:], (hashed.pdq_dihedral or [])[1:], strict=False))
    if hashed.pdq_canonical is not None:
        derived.append(("canonical", hashed.pdq_canonical))
    derived += [
        (f"canonical+{transform}", value)
        for transform, value in zip(
            DIHEDRAL_TRANSFORMS[1:], (hashed.pdq_canonical_dihedral or [])[1:], strict=False
        )
    ]
    asked = {hashed.values["pdq"]}
    hashes: list[tuple[str, str, str | None]] = []
    for transform, value in derived:
        if value not in asked:
            asked.add(value)
            hashes.append(("pdq", value, transform))
    return hashes


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path  # a missing file is reported when it is read


def radii_parse(options: Sequence[str]) -> dict[str, int]:
    """`--radius N` (every perceptual hash; a video's frame distance only as `vpdq=N`) or
    `--radius ALGORITHM=N`, repeatable."""
    radii: dict[str, int] = {}
    for option in options:
        name, _, number = option.rpartition("=")
        try:
            radius = int(number)
        except ValueError as exc:
            raise click.BadParameter(f"{option!r}: expected N or ALGORITHM=N") from exc
        if not name:
            hashes = [n for n, spec in ALGORITHMS.items() if spec.perceptual and not spec.frames]
            radii.update(dict.fromkeys(hashes, radius))
        elif name in ALGORITHMS:
            radii[name] = radius
        else:
            raise click.BadParameter(f"unknown algorithm {name!r}", param_hint="--radius")
    return radii


@dataclass
class InputResult:
    input: MatchInput
    matches: list[MirrorMatch]
    truncated: bool

    def as_json(self) -> dict[str, Any]:
        if self.input.error is not None:
            return {"input": self.input.name, "error": self.input.error}
        hashes = []
        for algorithm, value, transform in self.input.hashes:
            item = {"algorithm": algorithm, "value": value}
            if transform is not None:
                item["transform"] = transform
            hashes.append(item)
        document: dict[str, Any] = {"input": self.input.name, "hashes": hashes}
        if self.input.quality is not None:
            document["quality"] = self.input.quality
        document["matches"] = [found.as_json() for found in self.matches]
        document["truncated"] = self.truncated
        return document


def results_group(
    inputs: Sequence[MatchInput], results: Sequence[QueryResult]
) -> list[InputResult]:
    """Per input, its hashes' matches: one per entry (the nearest, if several of the image's
    hashes reach it), by distance then entry id."""
    grouped = []
    position = 0
    for item in inputs:
        mine = results[position : position + len(item.hashes)]
        position += len(item.hashes)
        nearest: dict[int, MirrorMatch] = {}
        for (_, _, transform), result in zip(item.hashes, mine, strict=True):
            for found in result.matches:
                if transform is not None:
                    found = MirrorMatch(**{**found.__dict__, "transform": transform})
                kept = nearest.get(found.entry)
                # On a tie the first hash asked for stays: the image as given before a
                # turned or trimmed copy of it.
                if kept is None or found.distance < kept.distance:
                    nearest[found.entry] = found
        ordered = sorted(nearest.values(), key=lambda m: (m.distance, m.entry))
        grouped.append(InputResult(item, ordered, any(r.truncated for r in mine)))
    return grouped


def _text_lines(result: InputResult, limit: int) -> Iterator[str]:
    name = result.input.name
    if not result.matches:
        yield f"{name}: no match"
    for found in result.matches:
        line = (
            f"{name}: match {found.algorithm} distance {found.distance} list {found.hash_list} "
            f"entry {found.entry} partner {found.partner}"
        )
        if found.labels:
            line += f" labels {','.join(found.labels)}"
        if found.transform is not None:
            line += f" transform {found.transform}"
        if found.variant is not None:
            line += f" variant {found.variant}"
        if found.query_share is not None:
            line += f" frames {found.query_share:.0%} of the query, {found.stored_share:.0%} stored"
        line += f" rule {found.rule}"
        yield line
    if result.truncated:
        yield f"{name}: more matches were within reach than --limit {limit}"


@click.command("match")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--hashes",
    "hash_files",
    multiple=True,
    type=click.Path(allow_dash=True, dir_okay=False, path_type=Path),
    help="A file of hash lines ('algorithm value', or JSON lines as 'hash' prints), "
    "or - for standard input. Repeatable.",
)
@click.option("--hash", "hash_values", multiple=True, help="One hash, ALGORITHM:VALUE. Repeatable.")
@click.option(
    "--radius",
    "radius_options",
    multiple=True,
    help="Search within N bits: N for every perceptual hash, or ALGORITHM=N (vpdq=N: a "
    "video's frame distance). Default: each algorithm's default distance (pdq 31, phash 4, "
    "dhash 3, ahash and whash 0, vpdq frames 31).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIMIT),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="Matches kept per hash, the nearest first.",
)
@click.option(
    "--dihedral/--no-dihedral",
    default=True,
    show_default=True,
    help="Also match images turned and mirrored (the PDQ hashes of their 8 rotations and "
    "mirrors): the chosen method of docs/matching.md.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input, a line each.")
@click.option(
    "--server",
    metavar="SOCKET",
    is_flag=False,
    flag_value="",
    default=None,
    help="Ask a running 'serve-match' (its socket path, or tcp:PORT; "
    "alone: the match_socket setting) instead of loading the mirror.",
)
@click.pass_obj
def match_command(
    config: Config,
    inputs: tuple[Path, ...],
    hash_files: tuple[Path, ...],
    hash_values: tuple[str, ...],
    radius_options: tuple[str, ...],
    limit: int,
    dihedral: bool,
    as_json: bool,
    server: str | None,
) -> None:
    """Match images or hashes against the local mirror.

    INPUTS are image files or directories (hashed here: the images never leave this
    machine); '-' reads hash lines from standard input. Exit status: 0 no match, 1 a match,
    2 an error (an error outranks a match).
    """
    radii = radii_parse(radius_options)
    items: list[MatchInput] = []
    for text in hash_values:
        items += hash_line_inputs([text], "--hash")
    for source in [*hash_files, *(p for p in inputs if str(p) == "-")]:
        items += hash_line_inputs(_lines(source), str(source))
    images = [p for p in inputs if str(p) != "-"]
    if images:
        items += image_inputs(images, dihedral=dihedral)
    if not items:
        raise click.UsageError("nothing to match: give images, directories, --hash or --hashes")
    queries = [(alg, value) for item in items for alg, value, _ in item.hashes]
    results = _search(config, queries, radii=radii, limit=limit, server=server)
    failed = matched = False
    for result in results_group(items, results):
        if result.input.error is not None:
            failed = True
            click.echo(f"consortium: {result.input.name}: {result.input.error}", err=True)
            if as_json:
                click.echo(json.dumps(result.as_json(), separators=(",", ":")))
            continue
        matched = matched or bool(result.matches)
        if as_json:
            click.echo(json.dumps(result.as_json(), separators=(",", ":")))
        else:
            for line in _text_lines(result, limit):
                click.echo(line)
    raise click.exceptions.Exit(2 if failed else 1 if matched else 0)


def _lines(source: Path) -> list[str]:
    try:
        if str(source) == "-":
            return sys.stdin.read().splitlines()
        return source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise MatchError(f"cannot read {source}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise MatchError(f"cannot read {source}: not UTF-8 text") from exc


def _search(
    config: Config,
    queries: list[tuple[str, str]],
    *,
    radii: dict[str, int],
    limit: int,
    server: str | None,
) -> list[QueryResult]:
    if not queries:
        return []
    try:
        if server is not None:
            with MatchClient(server or str(config.match_socket), timeout=config.timeout) as client:
                return client.search(queries, radii=radii, limit=limit)
        matcher = MirrorMatcher.load(config.mirror, tables=len(queries) >= TABLES_FROM_QUERIES)
        return matcher.search(queries, radii=radii, limit=limit)
    except (MirrorStoreError, MatchServerError, HashValueError) as exc:
        raise MatchError(str(exc)) from exc


@click.command("serve-match")
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Unix socket to answer on (made mode 0600). Default: the match_socket "
    "setting (CONSORTIUM_MATCH_SOCKET; match.sock in the user's runtime directory).",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Answer on 127.0.0.1:PORT instead of a Unix socket (any local user may connect).",
)
@click.option(
    "--poll",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between checks of the mirror's cursor; a change is applied at once.",
)
@click.pass_obj
def serve_match_command(
    config: Config, socket_path: Path | None, port: int | None, poll: float
) -> None:
    """Keep the mirror's index warm and answer matches on a local socket.

    One JSON request a line, one JSON answer a line (docs/client.md). The index follows the
    mirror as 'consortium sync' changes it. Stops on SIGINT or SIGTERM.
    """
    logging.basicConfig(level=logging.INFO, format="consortium serve-match: %(message)s")
    try:
        service = MatchService(config.mirror)
    except MirrorStoreError as exc:
        raise MatchError(str(exc)) from exc
    where = None if port is not None else socket_path or config.match_socket
    try:
        server = server_open(service, socket_path=where, port=port)
    except (MatchServerError, OSError) as exc:
        raise MatchError(str(exc)) from exc
    stop = threading.Event()
    watcher = threading.Thread(target=service.watch, args=(stop, poll), daemon=True)
    watcher.start()

    def _terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    address = f"127.0.0.1:{port}" if port is not None else str(where)
    click.echo(
        f"consortium serve-match: {len(service.matcher)} entries at cursor "
        f"{service.matcher.cursor}, answering on {address}",
        err=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        server.server_close()
        if where is not None:
            where.unlink(missing_ok=True)
