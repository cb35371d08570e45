"""One adapter per runtime for the artifacts a notebook saved, shared by the modules: Keras, torch programs (.pt2),
ONNX Runtime, SavedModels (with and without XLA), LiteRT. Each asks the sandboxed checker (ctx.run) and returns plain
data, float64 outputs or a description, the descriptions cached for the module's run. `failure` starts the message
of a CheckFailed when the artifact does not load or run ("capstone.tflite fails on ...")."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from polyglot_lab.checking import CheckContext, CheckFailed


CPU = ("CPUExecutionProvider",)


def keras_summary(ctx: CheckContext, path: Path, failure: str, hint: str | None = None) -> dict:
    """A .keras file as the checker loaded it (safe mode): input and output shapes, layers, parameter count."""
    return ctx.cached(f"keras:{path}", lambda: ctx.run("keras_summary", failure, hint=hint, path=path))


def keras_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str, hint: str | None = None,
                  call: bool = False, backend: str | None = None) -> np.ndarray:
    """A .keras file's outputs on x: model.predict (or model(x) with `call`) on the TensorFlow backend, or on
    `backend` in a process of the checker's own."""
    if backend is not None:
        found = ctx.run("keras_predict_backend", failure, hint=hint, path=path, x=x, backend=backend)
    else:
        found = ctx.run("keras_predict", failure, hint=hint, path=path, x=x, call=call)
    return np.asarray(found["y"], np.float64)


def program_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str, hint: str | None = None,
                    device: str = "cpu") -> np.ndarray:
    """A torch.export program's (.pt2) outputs on x, on a torch device (archives that ask for pickle are refused)."""
    return np.asarray(ctx.run("pt2_run", failure, hint=hint, path=path, x=x, device=device)["y"], np.float64)


def program_training_ops(ctx: CheckContext, path: Path, failure: str) -> list[str]:
    """The .pt2 program's dropout and batch-norm ops that train, as its graph records them."""
    ops = ctx.cached(f"pt2_ops:{path}", lambda: ctx.run("pt2_training_ops", failure, path=path)["ops"])
    return sorted({str(op["op"]) for op in ops if op.get("training")})


def saved_tensors(ctx: CheckContext, path: Path, failure: str, hint: str | None = None) -> dict:
    """What torch.load(path, weights_only=True) holds: {"type": "dict", key: array, ...} for a state dict."""
    return ctx.run("torch_state", failure, hint=hint, path=path)


def onnxruntime_info(ctx: CheckContext, path: Path, failure: str, hint: str | None = None,
                     providers=CPU) -> dict:
    """An ONNX Runtime session's view of a file: {"inputs": [{"name", "shape"}], ...}."""
    return ctx.cached(f"ort:{path}:{','.join(providers)}",
                      lambda: ctx.run("ort_info", failure, hint=hint, path=path, providers=list(providers)))


def onnxruntime_latency(ctx: CheckContext, path: Path, x: np.ndarray, repeats: int, failure: str,
                        providers=CPU) -> float:
    """Median seconds per run on x, measured in the checker after a warm-up."""
    found = ctx.run("ort_latency", failure, path=path, x=x, repeats=repeats, providers=list(providers))
    return float(found["median_s"])


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


def savedmodel_latency(ctx: CheckContext, path: Path, x: np.ndarray, repeats: int, failure: str) -> tuple[float, float]:
    """Median seconds per call of a SavedModel's serving signature without and with XLA, timed interleaved in one
    process: the grader's own speed ratio, once per module run."""
    found = ctx.cached(f"savedmodel_latency:{path}", lambda: ctx.run("savedmodel_latency", failure, path=path, x=x,
                                                                     repeats=repeats))
    return float(found["plain_s"]), float(found["xla_s"])


def litert_tensors(ctx: CheckContext, path: Path, failure: str) -> dict:
    """A .tflite file's tensors, inputs and outputs: lists of {name, dtype (numpy's name), shape}."""
    return ctx.cached(f"litert_tensors:{path}", lambda: ctx.run("litert_tensors", failure, path=path))


def litert_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str, hint: str | None = None) -> np.ndarray:
    """A .tflite file's first output on x, resized to x's shape, in ai_edge_litert's Interpreter."""
    return np.asarray(ctx.run("litert_run", failure, hint=hint, path=path, x=x)["y"], np.float64)


def onnxruntime_outputs(ctx: CheckContext, path: Path, x: np.ndarray, failure: str,
                        hint: str | None = None, providers=CPU) -> np.ndarray:
    """An ONNX file's first output on x (its first input), in ONNX Runtime (on the CPU unless `providers` say)."""
    return np.asarray(ctx.run("ort_run", failure, hint=hint, path=path, x=x, providers=list(providers))["y"],
                      np.float64)


def tensorflow_sees_a_gpu(ctx: CheckContext) -> bool:
    return ctx.cached("tf_gpu", lambda: bool(ctx.run("tf_gpu_available", "TensorFlow could not be asked for a GPU")
                                            ["available"]))
