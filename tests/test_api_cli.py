"""The API's command line on a fresh SQLite install: create the first admin (password from
stdin or the environment), issue a key, run `parley api` and log in over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def _parley(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "admin.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return clean | {"PARLEY_DATA_DIR": str(tmp_path), "PARLEY_HTTP_PORT": str(port)}


def test_commands_refuse_a_database_that_is_not_there(env: dict[str, str]) -> None:
    """A wrong data_dir must not quietly start an empty database beside the real one."""
    folder = Path(env["PARLEY_DATA_DIR"])
    for command in (["users", "create", "root", "--role", "admin"], ["db", "current"]):
        refused = _parley(env, *command, stdin="long enough pw\n")
        assert refused.returncode == 2, refused.stderr
        assert f"no database at {folder / 'parley.db'}" in refused.stderr
        assert "parley db upgrade" in refused.stderr and "PARLEY_DATA_DIR" in refused.stderr
    assert not (folder / "parley.db").exists()


def test_a_fresh_install_gets_an_admin_who_can_log_in(env: dict[str, str]) -> None:
    assert _parley(env, "db", "upgrade").returncode == 0
    created = _parley(env, "users", "create", "root", "--role", "admin", stdin="long enough pw\n")
    assert created.returncode == 0, created.stderr
    assert "created admin root" in created.stdout
    again = _parley(env, "users", "create", "root", "--role", "admin", stdin="long enough pw\n")
    assert again.returncode == 1 and "exists already" in again.stderr
    short = _parley(
        env | {"PARLEY_USER_PASSWORD": "short"}, "users", "create", "x", "--role", "auditor"
    )
    assert short.returncode == 2 and "8 characters" in short.stderr
    bad = _parley(
        env, "users", "create", "no spaces", "--role", "auditor", stdin="long enough pw\n"
    )
    assert bad.returncode == 2
    key = _parley(env, "api-keys", "create", "--user", "root", "--name", "wallboard")
    assert key.returncode == 0 and key.stdout.startswith("parley_")
    nobody = _parley(env, "api-keys", "create", "--user", "nobody", "--name", "x")
    assert nobody.returncode == 1 and "no user named" in nobody.stderr

    server = subprocess.Popen(
        [sys.executable, "-m", "admin.cli", "api"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{env['PARLEY_HTTP_PORT']}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "parley api did not start"
            time.sleep(0.1)
        token = httpx.post(
            f"{base}/auth/token", data={"username": "root", "password": "long enough pw"}
        )
        assert token.status_code == 200
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert (
            httpx.get(
                f"{base}/calls", params={"caller": "+15551234567"}, headers=bearer
            ).status_code
            == 200
        )
        assert (
            httpx.get(f"{base}/auth/me", headers={"X-API-Key": key.stdout.strip()}).json()[
                "username"
            ]
            == "root"
        )
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=10)
    assert "request" in output and "/calls" in output  # one access line per request...
    assert "5551234567" not in output and "long enough pw" not in output  # ...without the query
    assert key.stdout.strip() not in output
