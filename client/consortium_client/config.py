"""What the `consortium` command runs with, and where each setting came from.

Every setting can come from a flag, an environment variable, the user's config file
(`config.toml` in the user's config directory) or a default, in that order of precedence;
`consortium config` shows the value in force and its source. Commands receive a `Config`
as click's context object.

The config file is TOML with the settings' names as top-level keys:

    url = "https://consortium.example"
    api_key = "csk_0123456789ab_..."
    signing_key = "~/keys/acme.pem"
    mirror = "/var/lib/consortium/mirror.db"
    match_socket = "/run/consortium/match.sock"
    timeout = 30

A relative path in the file is relative to the file's directory; `~` is expanded
everywhere. An unknown key or a value of the wrong type is refused, so that a typo never
silently falls back to a default.
"""

from __future__ import annotations

import os
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

APP = "consortium"
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
CONFIG_FILE = "config.toml"
STATE_FILE = "trusted-state.json"
MIRROR_FILE = "mirror.db"

# Setting name -> its environment variable. The order is the order `consortium config` shows.
ENVIRONMENT = {
    "url": "CONSORTIUM_URL",
    "api_key": "CONSORTIUM_API_KEY",
    "signing_key": "CONSORTIUM_SIGNING_KEY",
    "mirror": "CONSORTIUM_MIRROR",
    "state": "CONSORTIUM_STATE",
    "timeout": "CONSORTIUM_TIMEOUT",
    "match_socket": "CONSORTIUM_MATCH_SOCKET",
}
CONFIG_ENVIRONMENT = "CONSORTIUM_CONFIG"
MATCH_SOCKET_FILE = "match.sock"
_PATHS = ("signing_key", "mirror", "state", "match_socket")


class ConfigError(ValueError):
    """A setting that cannot be used (a bad value, an unreadable or invalid config file)."""


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
    # Where `serve-match` answers and `match --server` asks.
    match_socket: Path = field(default_factory=lambda: match_socket_default())
    sources: dict[str, Setting] = field(default_factory=dict)


def config_dir() -> Path:
    """The user's config directory for consortium (`~/.config/consortium` on Linux, or
    under `$XDG_CONFIG_HOME`)."""
    return platformdirs.user_config_path(APP)


def data_dir() -> Path:
    """The user's data directory for consortium (`~/.local/share/consortium` on Linux)."""
    return platformdirs.user_data_path(APP)


def match_socket_default() -> Path:
    """`match.sock` in the user's runtime directory (`$XDG_RUNTIME_DIR/consortium` on
    Linux): private to the user, and gone at logout like the server that answers on it."""
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR platformdirs falls back to a per-user directory under /tmp
        # and warns; the fallback is what we want.
        warnings.simplefilter("ignore")
        return platformdirs.user_runtime_path(APP) / MATCH_SOCKET_FILE


def config_file_default() -> Path:
    return config_dir() / CONFIG_FILE


def _defaults() -> dict[str, str | None]:
    return {
        "url": DEFAULT_URL,
        "api_key": None,
        "signing_key": None,
        "mirror": str(data_dir() / MIRROR_FILE),
        "state": str(config_dir() / STATE_FILE),
        "timeout": str(DEFAULT_TIMEOUT),
        "match_socket": str(match_socket_default()),
    }


def config_file_read(path: Path) -> dict[str, str]:
    """The settings a config file sets, as text; ConfigError for anything it cannot use."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from exc
    settings: dict[str, str] = {}
    for key, value in document.items():
        if key not in ENVIRONMENT:
            known = ", ".join(ENVIRONMENT)
            raise ConfigError(f"the config file {path} has an unknown setting {key!r} ({known})")
        wanted = (int, float) if key == "timeout" else (str,)
        if isinstance(value, bool) or not isinstance(value, wanted):
            kind = "a number" if key == "timeout" else "a string"
            raise ConfigError(f"the config file {path}: {key} must be {kind}")
        text = str(value)
        if key in _PATHS:
            expanded = Path(text).expanduser()
            text = str(expanded if expanded.is_absolute() else path.parent / expanded)
        settings[key] = text
    return settings


def config_load(
    *,
    flags: Mapping[str, str | float | Path | None],
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Config:
    """The settings in force: each from `flags` (None = not given), else the environment,
    else the config file, else its default; with where each came from.

    `config_file` None means `$CONSORTIUM_CONFIG` or the default path, which may be
    missing; a file named explicitly (flag or environment) must exist.
    """
    environ = os.environ if environ is None else environ
    file_settings: dict[str, str] = {}
    if config_file is None and environ.get(CONFIG_ENVIRONMENT):
        config_file = Path(environ[CONFIG_ENVIRONMENT]).expanduser()
    if config_file is not None:
        file_settings = config_file_read(config_file)
    else:
        config_file = config_file_default()
        if config_file.is_file():
            file_settings = config_file_read(config_file)

    sources: dict[str, Setting] = {}
    for name, variable in ENVIRONMENT.items():
        flag = flags.get(name)
        if flag is not None:
            text, source = str(flag), "flag"
        elif environ.get(variable):
            text, source = environ[variable], f"env {variable}"
        elif name in file_settings:
            text, source = file_settings[name], f"config {config_file}"
        else:
            default = _defaults()[name]
            sources[name] = Setting(default, "default")
            continue
        if name in _PATHS:
            text = str(Path(text).expanduser())
        sources[name] = Setting(text, source)

    def path(name: str) -> Path | None:
        value = sources[name].value
        return None if value is None else Path(value)

    timeout_text = sources["timeout"].value or str(DEFAULT_TIMEOUT)
    try:
        timeout = float(timeout_text)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout < float("inf"):
        raise ConfigError(
            f"timeout ({sources['timeout'].source}) must be a positive number of seconds, "
            f"not {timeout_text!r}"
        )
    defaults = _defaults()
    return Config(
        url=sources["url"].value or DEFAULT_URL,
        api_key=sources["api_key"].value,
        signing_key=path("signing_key"),
        mirror=path("mirror") or Path(str(defaults["mirror"])),
        state=path("state") or Path(str(defaults["state"])),
        timeout=timeout,
        match_socket=path("match_socket") or Path(str(defaults["match_socket"])),
        sources=sources,
    )


def api_key_masked(api_key: str | None) -> str | None:
    """An API key as it may be shown: its public prefix (`csk_<12 hex>`, what
    `apikey_revoke` takes), never its secret."""
    if api_key is None:
        return None
    parts = api_key.split("_")
    if len(parts) >= 3 and parts[0] == "csk":
        return f"csk_{parts[1]}_****"
    return api_key[:4] + "****" if len(api_key) > 8 else "****"
