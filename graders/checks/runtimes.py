"""One adapter per runtime for the artifacts a notebook saved, shared by the modules: each asks the sandboxed checker
(ctx.run) and returns plain data, float64 outputs or a signature's description, cached for the module's run.
`failure` starts the message of a CheckFailed when the artifact does not load or run ("capstone.tflite fails on ...")."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from graders.checks import CheckContext, CheckFailed


def savedmodel_signature(ctx: CheckContext, path: Path, hint: str | None = None) -> dict:
    """The SavedModel's serving_default signature: {"inputs": {name: {"shape", "dtype"}}, "outputs": [names]}."""
    def load():
        info = ctx.run("savedmodel_info", f"{path.name} does not load", hint=hint, path=path)
        if "inputs" not in info:
            raise CheckFailed(f"{path.name} has no serving_default signature.", found=str(info.get("signatures")),
                              hint=hint)
        return info
    return ctx.cached(f"savedmodel:{path}", load)


def savedmodel_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str, hint: str | None = None,
                       xla: bool = False, device: str = "/CPU:0") -> np.ndarray:
    """The signature's first output on x (its only input), under XLA when asked (tf.function(jit_compile=True)
    around the loaded signature), on a TensorFlow device."""
    savedmodel_signature(ctx, path, hint)
    found = ctx.run("savedmodel_run", failure, hint=hint, path=path, x=x, xla=xla, device=device)
    return np.asarray(found["y"], np.float64)


def litert_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str, hint: str | None = None) -> np.ndarray:
    """A .tflite file's first output on x, resized to x's shape, in ai_edge_litert's Interpreter."""
    return np.asarray(ctx.run("litert_run", failure, hint=hint, path=path, x=x)["y"], np.float64)


def onnxruntime_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str,
                        hint: str | None = None) -> np.ndarray:
    """An ONNX file's first output on x (its first input), in ONNX Runtime on the CPU."""
    return np.asarray(ctx.run("ort_run", failure, hint=hint, path=path, x=x)["y"], np.float64)


def tensorflow_sees_a_gpu(ctx: CheckContext) -> bool:
    return ctx.cached("tf_gpu", lambda: bool(ctx.run("tf_gpu_available", "TensorFlow could not be asked for a GPU")
                                            ["available"]))
