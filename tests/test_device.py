"""Where the engine's models run: `engine.device` resolved against what torch sees, a GPU
asked for and absent refused at start with a clear error, and the engine saying where its
models are."""

from __future__ import annotations

import os
import subprocess

import pytest
from pydantic import ValidationError

from admin.settings import Settings
from agent.device import DeviceError, ctranslate2_device, resolve_device
from tests.support import PARLEY


def test_auto_takes_a_gpu_when_there_is_one_and_the_cpu_otherwise() -> None:
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("cpu", cuda_available=True) == "cpu"
    assert resolve_device("cuda:1", cuda_available=True) == "cuda:1"
    with pytest.raises(DeviceError, match="torch sees no CUDA GPU"):
        resolve_device("cuda", cuda_available=False)
    with pytest.raises(DeviceError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    assert ctranslate2_device("cuda:1") == ("cuda", 1)
    assert ctranslate2_device("cuda") == ("cuda", 0)
    assert ctranslate2_device("cpu") == ("cpu", 0)


def test_this_machine_resolves_auto_to_what_torch_sees() -> None:
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected


def test_settings_take_only_a_device_name() -> None:
    assert Settings(engine={"device": "cuda:0"}).engine.device == "cuda:0"
    assert Settings().engine.device == "auto"
    with pytest.raises(ValidationError, match="device"):
        Settings(engine={"device": "gpu"})


def test_an_engine_asked_for_a_gpu_it_has_not_says_so_and_exits() -> None:
    # With its GPUs hidden, a machine that has some is one that has none.
    engine = subprocess.run(
        [*PARLEY, "engine", "--port", "1"],
        env={**os.environ, "PARLEY_ENGINE__DEVICE": "cuda", "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert engine.returncode == 2, engine.stderr
    assert "engine.device is cuda, but torch sees no CUDA GPU" in engine.stderr
