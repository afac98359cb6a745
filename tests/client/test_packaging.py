"""The partner client installs on its own, from PyPI's packages, and runs without Django."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "client"


@pytest.mark.slow
def test_the_client_installs_alone_and_runs_without_django(tmp_path: Path) -> None:
    # A copy, so that building leaves nothing in the checkout.
    source = tmp_path / "client"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HOME"] = str(tmp_path / "home")
    bin_dir = venv / "bin"
    subprocess.run(  # noqa: S603 - pip of the venv just made
        [str(bin_dir / "pip"), "install", "-q", "--disable-pip-version-check", str(source)],
        check=True,
        env=env,
    )

    def run(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - the installed client
            list(command), env=env, capture_output=True, text=True, cwd=tmp_path
        )

    helped = run(str(bin_dir / "consortium"), "--help")
    assert (helped.returncode, helped.stderr) == (0, "")
    assert helped.stdout.startswith("Usage: consortium [OPTIONS] COMMAND [ARGS]...")
    configured = run(str(bin_dir / "python"), "-m", "consortium_client", "config")
    assert configured.returncode == 0, configured.stderr
    assert "http://127.0.0.1:8000" in configured.stdout
    imported = run(
        str(bin_dir / "python"),
        "-c",
        "import sys, consortium_client as c; c.Client; c.verify_entry; "
        "import consortium_client.cli; "
        "print(any(m.split('.')[0] == 'django' for m in sys.modules))",
    )
    assert (imported.returncode, imported.stdout) == (0, "False\n"), imported.stderr
    typed = run(
        str(bin_dir / "python"),
        "-c",
        "import consortium_client, pathlib; "
        "print((pathlib.Path(consortium_client.__file__).parent / 'py.typed').exists())",
    )
    assert typed.stdout == "True\n"
    # Without the imaging extras, hashing says what to install, in one line.
    hashed = run(str(bin_dir / "consortium"), "hash", str(tmp_path))
    assert hashed.returncode == 2, hashed.stderr
    assert hashed.stderr.count("\n") == 1


def test_the_python_api_exports_what_docs_client_md_names() -> None:
    import importlib

    import consortium_client
    from consortium_client import match_server, mirror_index

    sync_module = importlib.import_module("consortium_client.mirror_sync")
    for name in consortium_client.__all__:
        assert getattr(consortium_client, name) is not None, name
    assert consortium_client.Mirror is sync_module.Mirror
    assert consortium_client.MirrorMatcher is mirror_index.MirrorMatcher
    assert consortium_client.MatchClient is match_server.MatchClient
