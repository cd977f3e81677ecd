"""Where the engine's models run: the CPU, or a GPU when one is there and wanted.

`engine.device` is `auto` (a CUDA GPU when torch sees one, else the CPU), `cpu`, or `cuda`
(`cuda:1` for the second card). Whisper (CTranslate2, float16 on a GPU, int8 on the CPU) and
the knowledge bases' sentence embeddings go there. Silero VAD stays on the CPU: a batch of
512-sample windows costs well under a millisecond there, less than the copies to and from a
GPU would; Piper's voice runs on onnxruntime's CPU provider.

The torch that Parley installs is the CPU build: a GPU needs the CUDA build of the same
version in the engine's environment (docs/operators.md).
"""

from __future__ import annotations

import re

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class DeviceError(RuntimeError):
    pass


def resolve_device(wanted: str, *, cuda_available: bool | None = None) -> str:
    """The torch device to use for `wanted`; DeviceError for a GPU asked for and not there."""
    if not _DEVICE.match(wanted):
        raise DeviceError(f"engine.device must be auto, cpu, cuda or cuda:N, not {wanted!r}")
    if wanted == "cpu":
        return "cpu"
    if cuda_available is None:
        import torch

        cuda_available = bool(torch.cuda.is_available())
    if wanted == "auto":
        return "cuda" if cuda_available else "cpu"
    if not cuda_available:
        raise DeviceError(
            f"engine.device is {wanted}, but torch sees no CUDA GPU (the CPU build of torch, "
            "no driver, or CUDA_VISIBLE_DEVICES empty); use auto or cpu"
        )
    return wanted


def ctranslate2_device(device: str) -> tuple[str, int]:
    """CTranslate2's (device, index) for a torch device string."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return "cuda", int(index or 0)
    return "cpu", 0
