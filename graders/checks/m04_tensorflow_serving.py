"""Checks for module 04 (TensorFlow). Everything the notebook produced is opened in the sandboxed checker
(ctx.run): the learner's converter on ONNX's backend cases and on models the grader exports itself, the ONNX file,
the SavedModel, the LiteRT files, and the learner's codec behind a real server. Verdicts and the expected values of
the grader's own models are computed here."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)
import numpy as np

from polyglot_lab.probe import ARRAY, VALUE, need, probe
# </kernel>

# <notebook>
import math
from pathlib import Path

from polyglot_lab.checking import CheckContext, CheckFailed, CheckSkipped, Registry
from polyglot_lab.checking.compare import close, expect_close, expect_ratio
from polyglot_lab.checking.converter import (
    CONVERTER_FILE,
    check_dynamic_signature,
    check_model_parity,
    ort_run,
    register_conformance_checks,
)
from polyglot_lab.checking.converter import converter_run as run_converter
from polyglot_lab.checking.runtimes import (
    litert_outputs,
    litert_tensors,
    onnxruntime_outputs,
    savedmodel_latency,
    savedmodel_outputs,
    savedmodel_signature,
    tensorflow_sees_a_gpu,
)
# </notebook>
from graders.data import holdout_digits
# <notebook>
from polyglot_lab import models

registry = Registry("04_tensorflow_serving")
_, ONNX_FILE = registry.artifacts("converter")  # onnx_to_tf.py is CONVERTER_FILE, shared with module 05
(SAVEDMODEL_DIR,) = registry.artifacts("saved_model")
TFLITE_FILE, TFLITE_DYNAMIC_FILE = registry.artifacts("tflite")
(CODEC_FILE,) = registry.artifacts("serve")
GROUPS = {"gemm": ["Gemm"], "conv": ["Conv"], "pool": ["MaxPool"], "reshape": ["Reshape", "Flatten"]}
LITERT_ATOL = 1e-4          # LiteRT's kernels (XNNPACK) sum in another order
QUANTIZED_SIZE_BAR = 0.5    # int8 weights: about 0.4 of the float file here; float16 weights about 0.6
# </notebook>
ACCURACY_DROP_BAR = 0.03
# <notebook>
RUNTIMES = ("torch", "onnxruntime", "tf_eager", "tf_xla", "litert")
HINTS = {
    CONVERTER_FILE: "Run the %%writefile cell: it writes onnx_to_tf.py into the notebook's folder.",
    ONNX_FILE: "Keep the notebook's first cell as it is: it exports digits_cnn.onnx.",
    SAVEDMODEL_DIR: "tf.saved_model.save(tf_model, 'digits_savedmodel', signatures={'serving_default': tf_model.serve})",
    TFLITE_FILE: "tf.lite.TFLiteConverter.from_saved_model('digits_savedmodel'), then write converter.convert()",
    CODEC_FILE: "Run the %%writefile cell: it writes serving_codec.py into the notebook's folder.",
}
# </notebook>
HINTS[TFLITE_DYNAMIC_FILE] = HINTS[TFLITE_FILE] + ", with converter.optimizations = [tf.lite.Optimize.DEFAULT]"


# <notebook>
def ort_predict(onnx_path: Path, X: np.ndarray) -> np.ndarray:
    """ONNX Runtime on a model the grader exported itself (in this process)."""
    return ort_run(onnx_path, np.ascontiguousarray(X, np.float32))


def reference_logits(ctx: CheckContext, X: np.ndarray) -> np.ndarray:
    """ONNX Runtime on the notebook's digits_cnn.onnx (in the checker): what every TensorFlow artifact must
    reproduce."""
    path = ctx.artifact(ONNX_FILE, "converter", hint=HINTS[ONNX_FILE])
    return onnxruntime_outputs(ctx, path, np.ascontiguousarray(X, np.float32), f"{ONNX_FILE} does not run in ONNX Runtime",
                               HINTS[ONNX_FILE])
# </notebook>


# -- the converter, run in its own process ---------------------------------------------------------
# <notebook>
def export_grader_models(ctx: CheckContext, job_dir: Path) -> list[dict]:
    """Convnets of other widths than the notebook's, with weights drawn for this run, exported by the grader;
    with inputs at batch sizes the learner did not use and ONNX Runtime's answers."""
    import logging

    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # one warning per missing torchvision op, every export
    X, _ = ctx.sample_digits()
    rng = ctx.rng("converter_models")
    entries = []
    for i, (channels, hidden) in enumerate(((8, 24), (24, 40))):
        torch.manual_seed(int(rng.integers(0, 2**31 - 1)))
        net = models.convnet(*models.pixel_statistics(X), channels=channels, hidden=hidden).eval()
        path = job_dir / f"m{i}.onnx"
        torch.onnx.export(net, (torch.from_numpy(X[:2]),), str(path), dynamo=True, verbose=False,
                          input_names=["pixels"], output_names=["logits"], external_data=False,
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
        inputs, expected = [], []
        for k, size in enumerate((1, int(rng.integers(3, 50)))):
            rows = X[rng.choice(len(X), size=size, replace=False)].astype(np.float32)
            np.save(job_dir / f"m{i}_x{k}.npy", rows)
            inputs.append(f"m{i}_x{k}.npy")
            expected.append(ort_predict(path, rows))
        entries.append({"file": path.name, "inputs": inputs, "expected": expected})
    return entries


def converter_run(ctx: CheckContext) -> dict:
    return run_converter(ctx, [op for group in GROUPS.values() for op in group], export_grader_models,
                         HINTS[CONVERTER_FILE])


def transposed_b_cases() -> set[str]:
    """The Gemm backend cases whose node has transB=1."""
    from polyglot_lab.conformance import backend_cases
    return {c.name.removeprefix("test_") for c in backend_cases("Gemm")
            if any(a.name == "transB" and a.i for a in c.model.graph.node[0].attribute)}


def failed_cases(failed: dict[str, str]) -> str:
    names = sorted(failed)
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def diagnose(group: str, failed: dict[str, str]) -> tuple[str, str]:
    """What a group's failures say: a mistake named only where the evidence shows it (Gemm failing exactly the
    transB=1 cases; TensorFlow's depth error, outputs in NHWC order or a channel axis that changed size for the
    layout), else which cases fail, which tells the attribute (pads, strides, auto_pad, allowzero...)."""
    if group == "gemm" and failed and set(failed) <= transposed_b_cases():
        return ("Gemm ignores transB: only the cases with a transposed B fail. PyTorch's Linear exports as Gemm with "
                "transB=1, so the model's weights go in the wrong orientation.",
                "tf.matmul(a, b, transpose_a=bool(transA), transpose_b=bool(transB))")
    op = {"conv": "Conv", "pool": "MaxPool"}.get(group)
    why = " ".join(failed.values())
    layout_hint = ("ONNX is NCHW with OIHW kernels, TensorFlow's CPU ops NHWC with HWIO kernels: "
                   "tf.transpose(x, [0, 2, 3, 1]) before, tf.transpose(y, [0, 3, 1, 2]) after, the kernel "
                   "tf.transpose(w, [2, 3, 1, 0]).")
    if op == "Conv" and "depth must be evenly divisible" in why:
        return ("Conv's channels do not line up: TensorFlow's conv2d says the input's depth does not fit the "
                "filter's. It reads the last axis as the channels, so either the input is still NCHW (ONNX's layout) "
                "or the kernel is still OIHW.", layout_hint)
    if op and "in NHWC order" in why:
        return (f"{op} returns its outputs in NHWC order: the values are right, but the result is never transposed "
                "back to ONNX's NCHW.", "tf.transpose(y, [0, 3, 1, 2]) on the way out.")
    if op and "the channel axis has" in why:
        return (f"{op}'s output has another number of channels than ONNX's: the window ran over the channel axis, "
                "as when an NCHW tensor (ONNX's layout) goes into an NHWC op (TensorFlow's).", layout_hint)
    hints = {"gemm": "alpha * op(A) @ op(B) + beta * C, op transposing where transA/transB say so",
             "conv": "pads are [top, left, bottom, right]: tf.pad, then VALID; strides and auto_pad as the node says",
             "pool": "pad with -inf before a VALID max_pool2d; strides and auto_pad as the node says",
             "reshape": "0 copies a dimension unless allowzero=1; Flatten keeps the axes before `axis` as the rows"}
    return (f"The {', '.join(GROUPS[group])} handler fails {len(failed)} of ONNX's own test cases ({failed_cases(failed)}): "
            "their names say which attribute is mishandled.", hints[group])


register_conformance_checks(registry, GROUPS, converter_run, diagnose)


@registry.check("converter", "model_parity")
def converter_model_parity(ctx: CheckContext):
    return check_model_parity(converter_run(ctx), "a convnet", "two convnets of other widths, at batch 1 and another")


@registry.check("converter", "dynamic_batch")
def converter_dynamic_batch(ctx: CheckContext):
    return check_dynamic_signature(converter_run(ctx), 1, "[None, 64]", "the batch size")
# </notebook>


# -- XLA -----------------------------------------------------------------------------------------
# <kernel>
@probe(jit_compile=VALUE, logits=ARRAY, report=VALUE)
def xla(ns, io):
    import tensorflow as tf

    serve = need(ns, "xla_serve")
    outputs = serve(tf.constant(io.inputs["X"]))
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    io.save(jit_compile=bool(getattr(serve, "_jit_compile", False)), logits=np.asarray(logits, np.float64))
    report = ns.get("xla_report")  # absent: the report check says so, the others still count
    io.save(report=None if report is None else {str(k): float(v) for k, v in dict(report).items()})
# </kernel>


# <notebook>
XLA_TIMING_ROWS = 360   # X_val's size: speed ratios depend on the batch
DIFF_FACTOR = 100.0     # max abs diffs of the same function over other rows: the same order of magnitude


@registry.inputs("xla")
def xla_inputs(ctx: CheckContext) -> dict:
    from polyglot_lab.data import digits
    X, _ = digits()
    rows = ctx.rng("xla").choice(len(X), size=int(ctx.rng("xla_n").integers(5, 60)), replace=False)
    return {"X": X[rows]}


def xla_timing(ctx: CheckContext) -> tuple[float, float]:
    """The grader's own median seconds per call without and with XLA, on rows the size of X_val: the notebook's
    SavedModel (the same converted model xla_serve compiles), timed in the checker, never in the learner's kernel."""
    from polyglot_lab.data import digits
    X, _ = digits()
    rows = X[ctx.rng("xla_timing").choice(len(X), size=XLA_TIMING_ROWS, replace=False)]
    why = f"The grader times XLA on your {SAVEDMODEL_DIR} to check speed_ratio against its own measurement"
    try:
        path = ctx.artifact(SAVEDMODEL_DIR, "saved_model", hint=HINTS[SAVEDMODEL_DIR])
    except CheckFailed as missing:
        raise CheckFailed(f"{why}: {missing.message}", hint=missing.hint) from None
    return savedmodel_latency(ctx, path, rows, 25, f"{why}, and it could not be run")


@registry.check("xla", "jit_compiled")
def xla_jit_compiled(ctx: CheckContext):
    if not ctx.outputs(xla)["jit_compile"]:
        raise CheckFailed("xla_serve is not compiled with XLA.", expected="tf.function(..., jit_compile=True)",
                          found="jit_compile off")
    return "tf.function(jit_compile=True)"


def xla_measured_diff(ctx: CheckContext) -> float:
    """The grader's max |xla_serve - ONNX Runtime| on its own rows."""
    found, expected = ctx.outputs(xla)["logits"], reference_logits(ctx, xla_inputs(ctx)["X"])
    return float(np.abs(found - expected).max()) if found.shape == expected.shape else math.inf


@registry.check("xla", "parity")
def xla_parity(ctx: CheckContext):
    found, expected = ctx.outputs(xla)["logits"], reference_logits(ctx, xla_inputs(ctx)["X"])
    diff = expect_close(found, expected, "The XLA-compiled function's logits",
                        mistake="The XLA-compiled function differs from ONNX Runtime.")
    return f"XLA matches ONNX Runtime (max abs diff {diff:.1e})"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@registry.check("xla", "report")
def xla_report(ctx: CheckContext):
    """The two figures, each against the grader's own measurement of the same thing in this run."""
    outputs = ctx.outputs(xla)
    report = outputs["report"]
    if report is None:
        raise CheckFailed("xla_report is not defined.", expected="xla_report = {'max_abs_diff': ..., 'speed_ratio': ...}",
                          found="no xla_report")
    ratio, diff = report.get("speed_ratio"), report.get("max_abs_diff")
    if not (is_number(ratio) and ratio > 0 and is_number(diff) and diff >= 0):
        raise CheckFailed("xla_report is missing a number or holds one that cannot be measured.",
                          expected="{'max_abs_diff': >= 0, 'speed_ratio': plain time / XLA time > 0}", found=str(report))
    measured_diff = xla_measured_diff(ctx)
    if math.isfinite(measured_diff) and measured_diff > 0 and not (
            measured_diff / DIFF_FACTOR <= diff <= measured_diff * DIFF_FACTOR):
        raise CheckFailed("xla_report's max_abs_diff is not what xla_serve gives: the grader measures another order "
                          "of magnitude between your xla_serve and ONNX Runtime.",
                          expected=f"within {DIFF_FACTOR:g}x of {measured_diff:.1e} (the grader's rows)",
                          found=f"{diff:.1e}", hint="max_abs_diff = np.abs(xla_serve(batch)['logits'].numpy() - "
                                                    "reference).max(), computed, not typed.")
    plain_s, xla_s = xla_timing(ctx)
    measured = plain_s / xla_s
    expect_ratio(ratio, measured, "xla_report's speed_ratio",
                 "it looks inverted (XLA's time over the plain function's).",
                 hint=f"speed_ratio = median time of tf_model.serve / median time of xla_serve (above 1: XLA is "
                      f"faster). Warm up, then take the median of many calls of each on all of X_val "
                      f"({XLA_TIMING_ROWS} rows); the ratio is measured, never assumed.")
    return f"XLA speed ratio {ratio:.2f} (the grader measures {measured:.2f}), max abs diff {diff:.1e}"
# </notebook>


# -- SavedModel ------------------------------------------------------------------------------------
# <notebook>
def serving_signature(ctx: CheckContext) -> dict:
    return savedmodel_signature(ctx, ctx.artifact(SAVEDMODEL_DIR, "saved_model", hint=HINTS[SAVEDMODEL_DIR]),
                                HINTS[SAVEDMODEL_DIR])


@registry.check("saved_model", "names")
def saved_model_names(ctx: CheckContext):
    signature = serving_signature(ctx)
    inputs, outputs = sorted(signature["inputs"]), sorted(signature["outputs"])
    if inputs != ["pixels"] or outputs != ["logits"]:
        raise CheckFailed("The serving signature's tensors are not named as asked: clients call them by name.",
                          expected="input 'pixels', output 'logits'", found=f"inputs {inputs}, outputs {outputs}",
                          hint="tf.TensorSpec([None, 64], tf.float32, name='pixels'); return {'logits': ...}")
    return "input 'pixels', output 'logits'"


@registry.check("saved_model", "dynamic_batch")
def saved_model_dynamic_batch(ctx: CheckContext):
    specs = serving_signature(ctx)["inputs"]
    shape = next(iter(specs.values()))["shape"] if specs else None
    if not shape or shape[0] is not None:
        raise CheckFailed("The signature fixes the batch size.", expected="[None, 64]", found=str(shape),
                          hint="An input_signature with None as the first dimension.")
    return f"input shape {shape}"


def savedmodel_logits(ctx: CheckContext, X: np.ndarray, device: str | None = None) -> np.ndarray:
    return savedmodel_outputs(ctx, ctx.artifact(SAVEDMODEL_DIR, "saved_model", hint=HINTS[SAVEDMODEL_DIR]),
                              np.ascontiguousarray(X, np.float32), f"{SAVEDMODEL_DIR} fails on a batch of {len(X)} rows",
                              HINTS[SAVEDMODEL_DIR], device=device or "/CPU:0")


def fixed_batch(ctx: CheckContext) -> int | None:
    """The batch size the signature fixes, or None when it takes any."""
    specs = serving_signature(ctx)["inputs"]
    shape = next(iter(specs.values()))["shape"] if specs else None
    return shape[0] if shape and isinstance(shape[0], int) else None


@registry.check("saved_model", "parity")
def saved_model_parity(ctx: CheckContext):
    X, _ = ctx.sample_digits()
    batch = fixed_batch(ctx)
    if batch:  # a fixed batch costs dynamic_batch: the outputs are still judged, in batches of that size (8 at most)
        X = X[:min(len(X), 8 * batch)]
        padded = np.resize(X, (-(-len(X) // batch) * batch, X.shape[1]))
        found = np.concatenate([savedmodel_logits(ctx, padded[i:i + batch]) for i in range(0, len(padded), batch)])[:len(X)]
    else:
        found = savedmodel_logits(ctx, X)
    expected = reference_logits(ctx, X)
    diff = expect_close(found, expected, "The SavedModel's logits",
                        mistake="The SavedModel's outputs differ from ONNX Runtime's on the grader's held-out digits.")
    return f"matches ONNX Runtime on {len(X)} held-out rows (max abs diff {diff:.1e})"


@registry.check("saved_model", "gpu_parity")
def saved_model_gpu_parity(ctx: CheckContext):
    if not tensorflow_sees_a_gpu(ctx):
        raise CheckSkipped("TensorFlow sees no GPU here")
    X, _ = ctx.sample_digits()
    found, expected = savedmodel_logits(ctx, X, "/GPU:0"), savedmodel_logits(ctx, X)
    diff = expect_close(found, expected, "The SavedModel on the GPU", 1e-4,
                        mistake="The SavedModel gives other outputs on the GPU.")
    return f"the same outputs on the GPU (max abs diff {diff:.1e})"
# </notebook>


# -- LiteRT ----------------------------------------------------------------------------------------
# <notebook>
def litert_logits(ctx: CheckContext, name: str, X: np.ndarray) -> np.ndarray:
    return litert_outputs(ctx, ctx.artifact(name, "tflite", hint=HINTS[name]), np.ascontiguousarray(X, np.float32),
                          f"LiteRT cannot run {name} on a batch of {len(X)}", HINTS[name])


@registry.check("tflite", "float_parity")
def tflite_float_parity(ctx: CheckContext):
    X, _ = ctx.sample_digits()
    found, expected = litert_logits(ctx, TFLITE_FILE, X), reference_logits(ctx, X)
    diff = expect_close(found, expected, f"{TFLITE_FILE}'s logits", LITERT_ATOL,
                        mistake=f"{TFLITE_FILE} differs from ONNX Runtime: is it the float conversion?",
                        hint="Leave converter.optimizations empty for the float file.")
    return f"{TFLITE_FILE} matches ONNX Runtime (max abs diff {diff:.1e})"


@registry.check("tflite", "quantized_smaller")
def tflite_quantized_smaller(ctx: CheckContext):
    sizes = {name: ctx.artifact(name, "tflite", hint=HINTS[name]).stat().st_size for name in (TFLITE_FILE, TFLITE_DYNAMIC_FILE)}
    ratio = sizes[TFLITE_DYNAMIC_FILE] / sizes[TFLITE_FILE]
    if ratio >= QUANTIZED_SIZE_BAR:
        raise CheckFailed(f"The quantized LiteRT model is not smaller than the float one{' at all' if ratio >= 1 else ''}"
                          + ("" if ratio >= 1 else " as int8 weights make it (float16 weights halve it at most)") + ".",
                          expected=f"size ratio < {QUANTIZED_SIZE_BAR}", found=f"{ratio:.2f} ({sizes[TFLITE_DYNAMIC_FILE]:,} "
                          f"vs {sizes[TFLITE_FILE]:,} bytes)", hint="converter.optimizations = [tf.lite.Optimize.DEFAULT]")
    return f"{TFLITE_DYNAMIC_FILE} is {ratio:.2f}x the float file's size"


@registry.check("tflite", "int8_weights")
def tflite_int8_weights(ctx: CheckContext):
    """Dynamic-range quantization, read from the file itself: int8 tensors (the weights) and a float input and output
    (the activations stay float). The size alone cannot say it: float16 weights or a smaller model shrink a file too."""
    path = ctx.artifact(TFLITE_DYNAMIC_FILE, "tflite", hint=HINTS[TFLITE_DYNAMIC_FILE])
    found = litert_tensors(ctx, path, f"LiteRT cannot read {TFLITE_DYNAMIC_FILE}'s tensors")
    kinds = sorted({t["dtype"] for t in found["tensors"]})
    int8 = [t for t in found["tensors"] if t["dtype"] == "int8"]
    if not int8:
        raise CheckFailed(f"{TFLITE_DYNAMIC_FILE} holds no int8 tensor: its weights were not quantized to int8"
                          + (" (float16 weights: target_spec.supported_types = [tf.float16])." if "float16" in kinds
                             else "."),
                          expected="int8 weight tensors", found=f"tensor types {', '.join(kinds)}",
                          hint="converter.optimizations = [tf.lite.Optimize.DEFAULT], and nothing else")
    ends = {t["dtype"] for t in found["inputs"] + found["outputs"]}
    if ends != {"float32"}:
        raise CheckFailed(f"{TFLITE_DYNAMIC_FILE} takes or returns {', '.join(sorted(ends - {'float32'}))} tensors: "
                          "that is full-integer quantization, not dynamic-range (whose activations stay float).",
                          expected="float32 input and output", found=f"input/output types {', '.join(sorted(ends))}",
                          hint="Set only converter.optimizations = [tf.lite.Optimize.DEFAULT]: no "
                               "inference_input_type / inference_output_type.")
    return f"{TFLITE_DYNAMIC_FILE} stores {len(int8)} int8 tensors; its input and output stay float32"
# </notebook>


@registry.check("tflite", "quantized_accuracy")
def tflite_quantized_accuracy(ctx: CheckContext):
    X, y = holdout_digits()
    reference = float((reference_logits(ctx, X).argmax(1) == y).mean())
    found = float((litert_logits(ctx, TFLITE_DYNAMIC_FILE, X).argmax(1) == y).mean())
    if found < reference - ACCURACY_DROP_BAR:
        raise CheckFailed(f"The quantized LiteRT model's accuracy collapsed: {found:.3f} against {reference:.3f} for "
                          "ONNX Runtime on the grader's held-out digits.",
                          expected=f">= {reference - ACCURACY_DROP_BAR:.3f}", found=f"{found:.3f}",
                          hint="Dynamic-range quantization (optimizations=[tf.lite.Optimize.DEFAULT], nothing else) "
                               "keeps the accuracy; a representative_dataset unlike the digits, or another SavedModel "
                               "than digits_savedmodel, does not.")
    return f"held-out accuracy {found:.3f} (ONNX Runtime {reference:.3f})"


# -- serving ---------------------------------------------------------------------------------------
# <notebook>
SERVE_FEATURES = 5  # not 64: a codec must read the signature


def reference_savedmodel(directory: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A SavedModel of the grader's: 'pixels' (n, 5) -> 'logits' (n, 3) = x @ W + b."""
    import tensorflow as tf

    W, b = rng.normal(size=(SERVE_FEATURES, 3)).astype(np.float32), rng.normal(size=3).astype(np.float32)

    class Affine(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, SERVE_FEATURES], tf.float32, name="pixels")])
        def serve(self, pixels):
            return {"logits": tf.matmul(pixels, W) + b}

    module = Affine()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return W, b


BAD_REQUESTS = {
    "bad JSON": {"raw": '{"instances": [[1, 2,'},
    "a body that is not an object": {"raw": "[1, 2, 3]"},
    "neither 'instances' nor 'inputs'": {"json": {"rows": [[0.0] * SERVE_FEATURES]}},
    "both 'instances' and 'inputs'": {"json": {"instances": [[0.0] * SERVE_FEATURES], "inputs": [[0.0] * SERVE_FEATURES]}},
    "a wrong shape": {"json": {"instances": [[0.0] * (SERVE_FEATURES + 2)]}},
    "strings for numbers": {"json": {"instances": [["a"] * SERVE_FEATURES]}},
    "an oversized batch": {"json": {"instances": [[0.0] * SERVE_FEATURES] * 20_000}},
}


def http_answer(answer) -> dict:
    """One answer as the checker recorded it, in the shape the checks read: {"status": int or None, "json", "error"}."""
    if not isinstance(answer, dict):
        return {"status": None, "json": None, "error": "no answer"}
    status = answer.get("status")
    return {"status": status if isinstance(status, int) and not isinstance(status, bool) else None,
            "json": answer.get("json"), "error": str(answer.get("error") or "")[:300]}


def serve_through_codec(ctx: CheckContext, model_dir: Path, name: str, requests: dict, burst: list, hint: str) -> dict:
    """The grader's SavedModel served through the learner's codec, in the checker (the codec is learner code): each
    request sent once, the burst concurrently. {"answers": {purpose: {"status", "json"}}, "burst": [...], "alive"}."""
    codec = ctx.artifact(CODEC_FILE, "serve", hint=HINTS[CODEC_FILE])
    found = ctx.run("serve", f"The server could not be run with {CODEC_FILE}", hint=hint, model_dir=model_dir,
                    codec=codec, name=name, requests=requests, burst=burst)
    if "startup_error" in found:
        raise CheckFailed(f"The server did not start with {CODEC_FILE}: {str(found['startup_error'])[:400]}", hint=hint)
    return found


def serving_session(ctx: CheckContext) -> dict:
    """Serve the grader's model through the learner's codec, send every request once; the answers, by purpose."""
    def load():
        rng = ctx.rng("serve")
        model_dir = ctx.checker.folder("serve") / "affine"
        W, b = reference_savedmodel(model_dir, rng)
        X = rng.normal(size=(int(rng.integers(2, 9)), SERVE_FEATURES)).astype(np.float32)
        burst = [rng.normal(size=(int(rng.integers(1, 30)), SERVE_FEATURES)).astype(np.float32) for _ in range(24)]
        requests = {"rows": {"json": {"instances": X.tolist()}}, "columns": {"json": {"inputs": {"pixels": X.tolist()}}},
                    **{f"bad:{what}": body for what, body in BAD_REQUESTS.items()}}
        found = serve_through_codec(ctx, model_dir, "digits", requests, [{"json": {"instances": rows.tolist()}} for rows in burst],
                                    hint="serving_codec.py must import on its own and define request_to_tensors and "
                                         "response_from_tensors.")
        answers: dict = found["answers"] if isinstance(found.get("answers"), dict) else {}
        results = {"rows": http_answer(answers.get("rows")), "columns": http_answer(answers.get("columns")),
                   "bad": {what: http_answer(answers.get(f"bad:{what}")) for what in BAD_REQUESTS},
                   "burst": [http_answer(a) for a in (list(found.get("burst") or []) + [None] * len(burst))[:len(burst)]],
                   "alive": bool(found.get("alive"))}
        results.update(X=X, expected=X @ W + b, burst_inputs=burst, W=W, b=b)
        return results
    return ctx.cached("serving", load)


@registry.check("serve", "predictions")
def serve_predictions(ctx: CheckContext):
    results = serving_session(ctx)
    for layout, key in (("rows", "predictions"), ("columns", "outputs")):
        answer = results[layout]
        found = (answer["json"] or {}).get(key) if isinstance(answer["json"], dict) else None
        if answer["status"] != 200 or found is None or not close(np.asarray(found, np.float64), results["expected"]):
            raise CheckFailed(f"A valid {'row' if layout == 'rows' else 'columnar'} request did not get the model's "
                              f"answer under '{key}'.", expected=f"200 and '{key}': the model's outputs",
                              found=f"{answer['status']}: {str(answer['json'])[:200]}",
                              hint="Read the input names and shapes from `inputs` (the grader serves a model with "
                                   f"{SERVE_FEATURES} features, not 64).")
    return "row and columnar requests answered with the model's outputs"


@registry.check("serve", "bad_requests")
def serve_bad_requests(ctx: CheckContext):
    results = serving_session(ctx)
    wrong = []
    for what, answer in results["bad"].items():
        status = answer["status"]
        if status is None or not 400 <= status < 500 or not isinstance(answer["json"], dict) or "error" not in answer["json"]:
            wrong.append(f"{what} answered {status if status is not None else 'nothing (' + answer.get('error', '') + ')'}")
    if wrong:
        raise CheckFailed("Some bad requests do not get a 4xx answer with {\"error\": ...}: " + "; ".join(wrong) + ".",
                          expected="4xx and a JSON error for each bad request", found=f"{len(wrong)} of {len(BAD_REQUESTS)} wrong",
                          hint="Raise BadRequest('why') for every request you refuse (catch json.JSONDecodeError too); "
                               "anything else you raise is answered 500, as a bug.")
    return f"all {len(BAD_REQUESTS)} kinds of bad request get 4xx and a reason"


@registry.check("serve", "burst")
def serve_burst(ctx: CheckContext):
    results = serving_session(ctx)
    failures = [i for i, (answer, rows) in enumerate(zip(results["burst"], results["burst_inputs"]))
                if answer["status"] != 200 or not close(np.asarray((answer["json"] or {}).get("predictions", []), np.float64),
                                                          rows @ results["W"] + results["b"])]
    if failures or not results["alive"]:
        raise CheckFailed("A burst of concurrent requests was not answered correctly"
                          + ("" if results["alive"] else ", and the server died") + ".",
                          expected=f"{len(results['burst'])} correct answers", found=f"{len(failures)} wrong" + (
                              "" if not failures else f", e.g. {len(results['burst_inputs'][failures[0]])} rows answered "
                              f"{results['burst'][failures[0]]['status']}: {str(results['burst'][failures[0]]['json'])[:200]}"))
    return f"{len(results['burst'])} concurrent requests answered correctly"
# </notebook>


# -- compare -------------------------------------------------------------------------------------
# <kernel>
@probe(latency=VALUE)
def compare(ns, io):
    latency = need(ns, "latency")
    io.save(latency={str(runtime): {str(b): float(r) for b, r in dict(ratios).items()}
                     for runtime, ratios in dict(latency).items()})
# </kernel>


# <notebook>
@registry.check("compare", "latency_table")
def compare_latency_table(ctx: CheckContext):
    latency = ctx.outputs(compare)["latency"]
    missing = [r for r in RUNTIMES if r not in latency or sorted(latency[r]) != ["1", "256"]]
    if missing:
        raise CheckFailed(f"latency lacks batch 1 and 256 ratios for: {', '.join(missing)}.", found=str(sorted(latency)),
                          hint="latency = {runtime: {'1': ratio, '256': ratio}} for " + ", ".join(RUNTIMES))
    ratios = [v for r in RUNTIMES for v in latency[r].values()]
    if not all(math.isfinite(v) and v > 0 for v in ratios) or any(abs(v - 1) > 1e-9 for v in latency["onnxruntime"].values()):
        raise CheckFailed("The ratios must be positive, measured against ONNX Runtime (whose own ratio is 1.0).",
                          found=str(latency["onnxruntime"]))
    selves = [r for r in RUNTIMES if r != "onnxruntime" and all(abs(v - 1) <= 1e-9 for v in latency[r].values())]
    if selves:
        raise CheckFailed(f"{', '.join(selves)}: exactly 1.0 at both batch sizes, as a runtime divided by itself would "
                          "give; two measured medians are never equal.", found=str({r: latency[r] for r in selves}),
                          hint="Divide each runtime's median by ONNX Runtime's median at the same batch size.")
    slowest = max(RUNTIMES, key=lambda r: latency[r]["1"])
    return f"five runtimes at batch 1 and 256; slowest at batch 1: {slowest} ({latency[slowest]['1']:.1f}x ONNX Runtime)"
# </notebook>
