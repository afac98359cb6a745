"""The settings `consortium` runs with: flags > environment > config file > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from consortium_client import cli
from consortium_client.config import ConfigError, Setting, api_key_masked, config_load

KEY = "csk_0123456789ab_s3cr3t-never-shown"


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The default config file, in the (test's own) user config directory."""
    path = tmp_path / "home" / "config" / "consortium" / "config.toml"
    path.parent.mkdir(parents=True)
    return path


def test_defaults_are_in_the_user_directories(tmp_path: Path) -> None:
    config = config_load(flags={})
    assert config.url == "http://127.0.0.1:8000"
    assert config.api_key is None
    assert config.mirror == tmp_path / "home" / "data" / "consortium" / "mirror.db"
    assert config.state == tmp_path / "home" / "config" / "consortium" / "trusted-state.json"
    assert config.timeout == 30.0
    assert {setting.source for setting in config.sources.values()} == {"default"}


def test_flags_beat_environment_beat_file_beat_defaults(config_file: Path, tmp_path) -> None:
    config_file.write_text(
        'url = "https://file.example"\napi_key = "from-file"\ntimeout = 5\n'
        'signing_key = "keys/acme.pem"\nmirror = "~/mirror.db"\n'
    )
    environ = {"CONSORTIUM_API_KEY": KEY, "CONSORTIUM_TIMEOUT": "7.5", "HOME": str(tmp_path)}
    config = config_load(flags={"timeout": 2.0}, environ=environ)
    assert config.url == "https://file.example"
    assert config.api_key == KEY
    assert config.timeout == 2.0
    # Relative paths in the file are relative to the file.
    assert config.signing_key == config_file.parent / "keys" / "acme.pem"
    assert config.sources["url"] == Setting("https://file.example", f"config {config_file}")
    assert config.sources["api_key"].source == "env CONSORTIUM_API_KEY"
    assert config.sources["timeout"] == Setting("2.0", "flag")
    assert config.sources["state"].source == "default"


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config_load(flags={}, config_file=tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config_load(flags={}, environ={"CONSORTIUM_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("url = ", "is not valid TOML"),
        ('ulr = "https://typo.example"', "unknown setting 'ulr'"),
        ('timeout = "soon"', "timeout must be a number"),
        ("url = 3", "url must be a string"),
        ("timeout = 0", "must be a positive number of seconds"),
    ],
)
def test_a_config_file_it_cannot_use_is_refused(
    config_file: Path, content: str, message: str
) -> None:
    config_file.write_text(content)
    with pytest.raises(ConfigError, match=message):
        config_load(flags={}, environ={})


def test_an_api_key_is_shown_only_by_its_prefix() -> None:
    assert api_key_masked(KEY) == "csk_0123456789ab_****"
    assert api_key_masked("something-else-long") == "some****"
    assert api_key_masked("short") == "****"
    assert api_key_masked(None) is None


def test_config_command_shows_values_and_sources_never_the_key(
    config_file: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file.write_text('url = "https://file.example"\n')
    monkeypatch.setenv("CONSORTIUM_API_KEY", KEY)
    assert cli.main(["--timeout", "3", "config"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert rows["url"] == ["https://file.example", "config", str(config_file)]
    assert rows["api_key"] == ["csk_0123456789ab_****", "env", "CONSORTIUM_API_KEY"]
    assert rows["timeout"] == ["3.0", "flag"]
    assert rows["mirror"][-1] == "default"
    assert "s3cr3t" not in out


def test_a_broken_config_file_is_one_line_and_does_not_hide_help(config_file: Path, capsys) -> None:
    config_file.write_text("url = [")
    assert cli.main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"consortium: the config file {config_file} is not valid TOML")
    assert err.count("\n") == 1
    assert cli.main(["config", "--help"]) == 0
    assert capsys.readouterr().out.startswith("Usage: consortium config")


def test_commands_use_the_configured_state(config_file: Path, tmp_path: Path, capsys) -> None:
    state = tmp_path / "elsewhere" / "state.json"
    config_file.write_text(f'state = "{state}"\n')
    assert cli.main(["verify", "checkpoint", str(tmp_path / "c")]) == 2
    assert f"no trusted state at {state}" in capsys.readouterr().err


def test_the_match_socket_is_a_setting_like_the_others(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert config_load(flags={}).match_socket == runtime / "consortium" / "match.sock"
    config_file.write_text('match_socket = "sockets/match.sock"\n')
    assert config_load(flags={}).match_socket == config_file.parent / "sockets" / "match.sock"
    monkeypatch.setenv("CONSORTIUM_MATCH_SOCKET", str(tmp_path / "env.sock"))
    assert config_load(flags={}).match_socket == tmp_path / "env.sock"
    assert cli.main(["--match-socket", str(tmp_path / "flag.sock"), "config"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("match_socket")]
    assert str(tmp_path / "flag.sock") in line
    assert line.endswith("flag")
