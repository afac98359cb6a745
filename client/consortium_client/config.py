"""What the `consortium` command runs with, and where each setting came from.

Every setting can come from a flag, an environment variable, the user's config file
(`config.toml` in the user's config directory) or a default, in that order of precedence;
`consortium config` shows the value in force and its source. Commands receive a `Config`
as click's context object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    """One setting's value in force and where it came from: `flag`, `env CONSORTIUM_...`,
    `config <path>` or `default`."""

    value: str | None
    source: str


@dataclass(frozen=True)
class Config:
    """The settings in force. Paths are resolved; `api_key` is never printed whole."""

    url: str
    api_key: str | None
    signing_key: Path | None
    mirror: Path
    state: Path
    timeout: float
    sources: dict[str, Setting] = field(default_factory=dict)
