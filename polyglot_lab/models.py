"""Models the course hands you: small networks the grader and your notebook build alike, and the models later
modules start from (module 01's convnet, module 02's DigitsNet and convnet), which live in polyglot_lab/carried/
and are reached from here by name (`from polyglot_lab.models import train_digits_net`). They are earlier modules'
answers, so a learner release ships each one only with the module that starts from it (graders/release.py).

Each builder is deterministic given its arguments; the grader rebuilds the same architectures in
its own process and fills them with weights it chooses.
"""
from __future__ import annotations

import importlib
from collections import OrderedDict

import numpy as np

# name -> (the carried module that defines it, the module whose answer it is, the module that starts from it)
CARRIED = {
    **{name: ("polyglot_lab.carried.keras_baseline", "01", "02")
       for name in ("build_keras_baseline", "train_keras_baseline")},
    **{name: ("polyglot_lab.carried.digits_models", "02", "03") for name in ("digits_net", "train_digits_net")},
    **{name: ("polyglot_lab.carried.digits_models", "02", "04") for name in ("convnet", "train_convnet")},
}


def __getattr__(name: str):
    if name not in CARRIED:
        raise AttributeError(f"module 'polyglot_lab.models' has no attribute {name!r}")
    where, answers, needed_by = CARRIED[name]
    try:
        return getattr(importlib.import_module(where), name)
    except ModuleNotFoundError:
        raise ImportError(f"{name} is module {answers}'s answer: it comes with the release of module {needed_by} "
                          "(ask your instructor for the current release of the course)") from None


# -- small torch networks --------------------------------------------------------------------
def relu_mlp(widths: list[int]):
    """Linear/ReLU layers named fc1, act1, fc2, act2, ..., out: a network to inspect with hooks."""
    from torch import nn

    layers: OrderedDict = OrderedDict()
    for i, (n_in, n_out) in enumerate(zip(widths[:-2], widths[1:-1]), start=1):
        layers[f"fc{i}"] = nn.Linear(n_in, n_out)
        layers[f"act{i}"] = nn.ReLU()
    layers["out"] = nn.Linear(widths[-2], widths[-1])
    return nn.Sequential(layers)


def suspect_mlp(seed: int = 0):
    """A ReLU network with a planted bug: one of its layers is dead (its ReLU outputs only zeros)."""
    import torch

    rng = np.random.default_rng(seed)
    model = relu_mlp([64, 48, 48, 32, 10])
    dead = int(rng.integers(1, 4))
    with torch.no_grad():
        getattr(model, f"fc{dead}").bias.fill_(-100.0)  # every pre-activation far below zero
    return model


def bn_net(n_in: int = 64, hidden: int = 32, n_out: int = 10, dropout: float = 0.0):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear: a net whose output depends on train/eval mode."""
    from torch import nn

    return nn.Sequential(OrderedDict([
        ("fc", nn.Linear(n_in, hidden)), ("bn", nn.BatchNorm1d(hidden)), ("act", nn.ReLU()),
        ("dropout", nn.Dropout(dropout)), ("out", nn.Linear(hidden, n_out)),
    ]))


def pixel_statistics(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and std; pixels that never vary keep std 1 (as StandardScaler does)."""
    std = X.std(0)
    return X.mean(0).astype(np.float32), np.where(std > 1e-3, std, 1.0).astype(np.float32)
