"""A test's own PostgreSQL cluster and redis-server, on free ports in a temporary folder, so a
test can stop and start them, or make them refuse writes, without disturbing anyone else's
servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

import redis

Refusal = Literal["oom", "misconf", "readonly"]


def _pg_bin() -> Path:
    if "PARLEY_TEST_PG_BIN" in os.environ:
        return Path(os.environ["PARLEY_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
REDIS_SERVER = Path(os.environ.get("PARLEY_TEST_REDIS_SERVER", "/usr/bin/redis-server"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _need(path: Path, what: str) -> None:
    if not path.exists():
        raise RuntimeError(
            f"{what} is needed by the ingest tests and is not at {path}; install it "
            "(Debian: apt-get install postgresql redis-server) or run .ci/test-services.sh"
        )


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.getuid() == 0 else argv


class PrivatePostgres:
    def __init__(self) -> None:
        _need(PG_BIN / "initdb", "PostgreSQL (initdb)")
        self.root = Path(tempfile.mkdtemp(prefix="parley-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        if os.getuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres"]
            ),
            check=True,
            capture_output=True,
        )
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def start(self) -> None:
        # Durability settings stay as they are: an immediate stop (a crash, to the server) must
        # not lose what it acknowledged.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        subprocess.run(
            _as_postgres(
                [
                    *(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options),
                    *("-w", "-t", "30", "-l", str(self.root / "server.log"), "start"),
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
            check=False,
            capture_output=True,
        )

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class PrivateRedis:
    """redis-server with an append-only file, so what it held survives a restart."""

    def __init__(self) -> None:
        _need(REDIS_SERVER, "redis-server")
        self.root = Path(tempfile.mkdtemp(prefix="parley-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        argv = [str(REDIS_SERVER), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.root), "--appendonly", "yes", "--appendfsync", "always"]
        argv += ["--save", "", "--loglevel", "warning"]
        log = (self.root / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {self.root / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes its append-only file and exits
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def refuse_writes(self, how: Refusal) -> None:
        """Makes the running server answer writes with an error, the way a real one comes to:
        `oom`: maxmemory reached with the noeviction policy (OOM); `misconf`: an RDB snapshot
        failed and stop-writes-on-bgsave-error holds (MISCONF); `readonly`: it was made the
        replica of a master that is not there (READONLY)."""
        with redis.Redis(port=self.port) as admin:
            if how == "oom":
                admin.config_set("maxmemory-policy", "noeviction")
                admin.config_set("maxmemory", "1")
            elif how == "misconf":
                admin.config_set("save", "3600 1")
                admin.config_set("stop-writes-on-bgsave-error", "yes")
                # The snapshot cannot be renamed onto a folder, root or not.
                (self.root / "dump.rdb" / "in-the-way").mkdir(parents=True)
                self._bgsave(admin, expect="err")
            else:
                admin.config_set("replica-read-only", "yes")
                admin.replicaof("127.0.0.1", str(free_port()))

    def accept_writes(self) -> None:
        """Undoes `refuse_writes`, whichever it was."""
        with redis.Redis(port=self.port) as admin:
            admin.config_set("maxmemory", "0")
            admin.replicaof("NO", "ONE")
            if (self.root / "dump.rdb").is_dir():
                shutil.rmtree(self.root / "dump.rdb")
                self._bgsave(admin, expect="ok")
            admin.config_set("save", "")

    @staticmethod
    def _bgsave(admin: redis.Redis, *, expect: str) -> None:
        admin.bgsave()
        deadline = time.monotonic() + 10
        while True:
            info = admin.info("persistence")
            done = not info["rdb_bgsave_in_progress"]
            if done and info["rdb_last_bgsave_status"] == expect:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"BGSAVE did not end with {expect!r}: {info}")
            time.sleep(0.05)
