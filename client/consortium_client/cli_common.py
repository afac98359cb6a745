"""What every `consortium` command shares: its errors, file reading, keys, the API client.

A command raises `CliError` (exit status 1) or `UsageError` (exit status 2) with one line
for the user; `consortium_client.cli.main` prints it as `consortium: <line>` on standard
error. Commands take the settings in force (`Config`) with `@click.pass_obj`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from consortium_client.api import ConsortiumApi
from consortium_client.config import Config
from consortium_client.keys import KeyFormatError, private_key_load

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A one-line error for the user: the command failed (exit status 1)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"consortium: {self.format_message()}", file=file or sys.stderr)


class UsageError(CliError):
    """The command cannot run as given (exit status 2): a file that cannot be read, a
    missing setting, options that do not fit together. Nothing was done."""

    exit_code = 2


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes (`-` is standard input); UsageError if it cannot be read."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def read_text(path: str | Path) -> str:
    """A UTF-8 text file (a byte-order mark is dropped); `-` is standard input."""
    try:
        return read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CliError(f"cannot read {path}: not UTF-8 text") from exc


def private_key(config: Config, path: Path | None) -> Any:
    """The signing key at `path`, else the configured one."""
    path = path or config.signing_key
    if path is None:
        raise UsageError(
            "no signing key: pass --key, or set CONSORTIUM_SIGNING_KEY or signing_key "
            "in the config file"
        )
    try:
        return private_key_load(read_bytes(path))
    except KeyFormatError as exc:
        raise CliError(f"{path}: {exc}") from exc


def api_client(config: Config) -> ConsortiumApi:
    """The HTTP client for the configured server and API key."""
    if not config.api_key:
        raise UsageError(
            "no API key: pass --api-key, or set CONSORTIUM_API_KEY or api_key in the config file"
        )
    try:
        return ConsortiumApi(config.url, config.api_key, timeout=config.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


def state_option(function: F) -> F:
    """`--state FILE`: the trusted-state file, overriding the configured one."""
    return click.option(
        "--state",
        type=click.Path(dir_okay=False, path_type=Path),
        help="the trusted-state file (default: the 'state' setting, see 'consortium config')",
    )(function)


def state_path(config: Config, state: Path | None) -> Path:
    return state if state is not None else config.state


def imaging_required() -> None:
    """UsageError, in one line, when the imaging extras are not installed."""
    try:
        import consortium_client.imaging  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"hashing images needs the imaging extras ({exc.name} is not installed): "
            "pip install 'consortium-client[images]'"
        ) from exc
