"""`consortium sync`: keep the verified local mirror current (a thin wrapper over `sync`)."""

from __future__ import annotations

from pathlib import Path

import click

from consortium_client.api import ApiError, ConsortiumApi
from consortium_client.cli_common import CliError, api_client
from consortium_client.config import Config
from consortium_client.mirror_store import MirrorStoreError
from consortium_client.mirror_sync import DEFAULT_PAGE_SIZE, Syncer, SyncResult, sync_watch
from consortium_client.verify import (
    TrustedState,
    VerificationError,
    trusted_advance,
    trusted_state_load,
    trusted_state_save,
)


class SyncFailed(CliError):
    """One line on standard error, exit status 1; the mirror is as the last good page left it."""


def _vkeys(path: Path) -> tuple[str, ...]:
    return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())


def _state_advance(api: ConsortiumApi, path: Path, state: TrustedState, result: SyncResult) -> None:
    """Move the trusted state (shared with `consortium log ...`) to the checkpoint the mirror
    verified, by the same consistency rule: a mirror and a state never hold two histories."""
    old = state.checkpoint
    proof = None
    if old is not None and 0 < old.size < result.checkpoint.size:
        proof = api.consistency_proof(old.size, result.checkpoint.size)
    if old is None or old.size <= result.checkpoint.size:
        trusted_state_save(path, trusted_advance(state, result.checkpoint.note, proof))
        return
    raise VerificationError(
        f"rollback: the trusted state holds size {old.size}, the server's checkpoint "
        f"is of size {result.checkpoint.size}"
    )


def _report(result: SyncResult) -> None:
    click.echo(
        f"synced {result.events} events ({result.added} added, {result.revoked} revoked, "
        f"{result.erased} erased); verified up to size {result.checkpoint.size} "
        f"of {result.checkpoint.origin}"
    )


@click.command("sync")
@click.option(
    "--vkey",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the log's verifier key file, to trust instead of the server's on the first sync",
)
@click.option(
    "--witness",
    "witness_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="a file of witnesses' cosignature/v1 vkeys, one a line",
)
@click.option("--quorum", type=click.IntRange(min=0), help="how many witnesses must cosign")
@click.option(
    "--page-size",
    type=click.IntRange(1, 10_000),
    default=DEFAULT_PAGE_SIZE,
    show_default=True,
    help="events per feed page (one page is one transaction)",
)
@click.option("--watch", is_flag=True, help="keep following: sync again every --interval")
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="seconds between syncs with --watch",
)
@click.pass_obj
def sync_command(
    config: Config,
    vkey: Path | None,
    witness_file: Path | None,
    quorum: int | None,
    page_size: int,
    watch: bool,
    interval: float,
) -> None:
    """Pull the feed into the local mirror, verifying every page against a checkpoint.

    Each checkpoint is checked with the log key (trusted on first use, or --vkey), against
    the last one accepted (a rollback or a fork is refused) and, with --witness and
    --quorum, for witnesses' cosignatures; each event against the checkpoint's tree; each
    entry against its signed envelope. The trusted state file, if there is one, supplies
    the key and witnesses and is moved forward too. A failure is one line, and the mirror
    keeps every page that verified: the next sync resumes there.
    """
    api = api_client(config)
    state = None
    try:
        if config.state.exists():
            state = trusted_state_load(config.state)
        witnesses = _vkeys(witness_file) if witness_file else (state.witnesses if state else ())
        syncer = Syncer(
            api,
            config.mirror,
            vkey=vkey.read_text().strip() if vkey else (state.vkey if state else None),
            origin=state.origin if state else None,
            witnesses=witnesses,
            quorum=quorum if quorum is not None else (state.quorum if state else 0),
            page_size=page_size,
            progress=True,
        )
        config.mirror.parent.mkdir(parents=True, exist_ok=True)

        def report(result: SyncResult) -> None:
            nonlocal state
            if state is not None:
                _state_advance(api, config.state, state, result)
                state = trusted_state_load(config.state)
            _report(result)

        sync_watch(syncer, interval=interval, report=report, rounds=None if watch else 1)
    except (VerificationError, ApiError, MirrorStoreError, OSError, ValueError) as exc:
        raise SyncFailed(" ".join(str(exc).split())) from exc
    except KeyboardInterrupt:
        # --watch is stopped by Ctrl-C; every page applied so far is committed.
        return
