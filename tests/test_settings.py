"""Starting the server or the suite misconfigured: one line that says what to do, and stop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SUITE_ENV = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS")


def _deployment_env(*missing: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1/x"),
        "SECRET_KEY": "test-only-secret",
        "ALLOWED_HOSTS": "127.0.0.1",
    }
    for name in missing:
        env.pop(name)
    return env


@pytest.mark.parametrize(
    ("missing", "named"),
    [
        (("SECRET_KEY",), "set SECRET_KEY in the environment"),
        (("ALLOWED_HOSTS",), "set ALLOWED_HOSTS in the environment"),
        (("SECRET_KEY", "ALLOWED_HOSTS"), "set SECRET_KEY and ALLOWED_HOSTS in the environment"),
    ],
)
def test_manage_py_names_missing_settings_in_one_line(missing, named) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=_deployment_env(*missing),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"consortium: {named} ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "config",
    [
        pytest.param([], id="project-config-many-workers"),
        # Without gunicorn.conf.py (started elsewhere), the workers fail at boot: wsgi.py.
        pytest.param(["--config", "{empty}", "--workers", "1"], id="no-config-one-worker"),
    ],
)
def test_gunicorn_names_missing_settings_in_one_line_and_stops(
    tmp_path: Path, config: list[str]
) -> None:
    (tmp_path / "empty.conf.py").write_text("")
    args = [arg.format(empty=tmp_path / "empty.conf.py") for arg in config]
    gunicorn = Path(sys.executable).parent / "gunicorn"
    done = subprocess.run(  # noqa: S603 - a fixed command line
        [str(gunicorn), "--bind", "127.0.0.1:0", "--workers", "3", *args, "consortium.wsgi"],
        cwd=ROOT,
        env=_deployment_env("SECRET_KEY"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It stops by itself (the timeout above would fail the test) rather than booting
    # worker after worker, and what it says about the application is that one line.
    assert done.returncode != 0
    app_lines = [line for line in done.stderr.splitlines() if not line.startswith("[")]
    assert app_lines == [
        "consortium: set SECRET_KEY in the environment "
        "(DATABASE_URL is set, so this is a deployment, not the quick start)"
    ]


def _pytest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - a fixed command line
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_plain_pytest_gets_the_make_test_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k not in _SUITE_ENV}
    done = _pytest(env, "tests/test_docs.py", "-k", "problem_type")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_pytest_on_sqlite_refuses_in_one_line() -> None:
    done = _pytest({**os.environ, "DATABASE_URL": "sqlite:///unused.sqlite3"}, "tests/test_docs.py")
    assert done.returncode == 2
    (line,) = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if line]
    assert "the test suite needs PostgreSQL" in line
    assert "make test" in line
