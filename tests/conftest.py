from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import EngineProcess, PlatformConfig, Running, start_engine, start_worker

# The keys the platforms started here generate go to a folder of this run, not ~/.config/parley
# (processes the tests start inherit it, also those started without PARLEY_* variables).
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="parley-test-config-")


@pytest.fixture(scope="module")
def worker_config(tmp_path_factory: pytest.TempPathFactory) -> PlatformConfig:
    return PlatformConfig(tmp_path_factory.mktemp("worker"), capacity=4, rtp_timeout_s=12.0)


@pytest.fixture(scope="module")
def worker(worker_config: PlatformConfig) -> Iterator[Running]:
    running = start_worker(worker_config)
    yield running
    assert running.stop() == 0, running.log()[-3000:]


@pytest.fixture
def worker_uri(worker: Running, worker_config: PlatformConfig) -> str:
    return f"sip:100@127.0.0.1:{worker_config.worker_base_port}"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    """One engine server for every test that needs it: loading the models takes a while."""
    process = start_engine(tmp_path_factory.mktemp("engine"))
    yield process
    assert process.running.stop() == 0, process.running.log()[-3000:]
