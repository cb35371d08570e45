"""Which device a grading run uses: DEVICE=auto (default) | cpu | cuda."""
from __future__ import annotations

import os

CHOICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    pass


def cuda_available() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_device(requested: str = "auto") -> str:
    requested = (requested or "auto").strip().lower()
    if requested not in CHOICES:
        raise DeviceError(f"DEVICE={requested!r} is not one of {', '.join(CHOICES)}")
    if requested == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the grader's own checks then see no GPU either
        return "cpu"
    if cuda_available():
        return "cuda"
    if requested == "cuda":
        raise DeviceError("DEVICE=cuda, but torch sees no CUDA device here; use DEVICE=auto or DEVICE=cpu")
    return "cpu"
