"""The checks of module 05_capstone that a learner runs in the notebook (`grader.check(...)`), on the
core in polyglot_lab.checking. Written by `make notebooks` from the `# <notebook>` blocks of
graders/checks/m05_capstone.py: edit those, not this file. The checks that run only at submission are not here."""
from __future__ import annotations

import numpy as np
from polyglot_lab.probes.m05_capstone import (  # the probes, in the kernel side of the module
    attention,
    parity,
)

import re


from polyglot_lab.checking import CheckContext, CheckFailed, CheckSkipped, Registry
from polyglot_lab.checking.compare import expect_close, max_diff
from polyglot_lab.checking.converter import CONVERTER_FILE


from polyglot_lab.checking import runtimes
from polyglot_lab.checking.runtimes import (
    litert_outputs,
    onnxruntime_outputs,
    savedmodel_outputs,
    savedmodel_signature,
    tensorflow_sees_a_gpu,
)


from polyglot_lab.sequences import LENGTHS, first_token_returns

registry = Registry("05_capstone")
(KERAS_FILE,) = registry.artifacts("keras")
PT2_FILE, ONNX_FILE = registry.artifacts("export")
SAVEDMODEL_DIR, TFLITE_FILE = registry.artifacts("saved_model")
(CODEC_FILE,) = registry.artifacts("serve")
(REPORT_FILE,) = registry.artifacts("report")
RUNTIMES = ("keras_tf", "keras_torch", "torch", "onnxruntime", "tf_savedmodel", "tf_xla", "litert")
ARTIFACT_OF = {"keras_tf": KERAS_FILE, "keras_torch": KERAS_FILE, "torch": PT2_FILE, "onnxruntime": ONNX_FILE,
               "tf_savedmodel": SAVEDMODEL_DIR, "tf_xla": SAVEDMODEL_DIR, "litert": TFLITE_FILE}
TOLERANCE = {runtime: 1e-5 for runtime in RUNTIMES} | {"litert": 1e-4}  # fp32 on a CPU; XNNPACK sums in another order
ACCURACY_BAR = 0.9
REPORT_BYTES = 1_000_000
ACCURACY_SLACK = 0.03      # the report's accuracy, measured on the learner's sequences, against the grader's
LAYERS = ("token_embedding", "position_embedding", "attention", "norm1", "ff1", "ff2", "norm2", "classifier")


HINTS = {
    KERAS_FILE: "keras_model.save('capstone.keras')",
    PT2_FILE: "torch.export.save(torch.export.export(net, (tokens,), dynamic_shapes=...), 'capstone.pt2')",
    ONNX_FILE: "torch.onnx.export(program, ..., 'capstone.onnx', dynamo=True, input_names=['tokens'], "
               "output_names=['logits'], external_data=False)",
    CONVERTER_FILE: "Run the %%writefile cell: it writes onnx_to_tf.py into the notebook's folder.",
    SAVEDMODEL_DIR: "tf.saved_model.save(tf_model, 'capstone_savedmodel', signatures={'serving_default': tf_model.serve})",
    TFLITE_FILE: "tf.lite.TFLiteConverter.from_saved_model('capstone_savedmodel'), then write converter.convert()",
    CODEC_FILE: "Run the %%writefile cell: it writes serving_codec.py into the notebook's folder.",
    REPORT_FILE: "Write the report from the notebook: open('capstone_report.md', 'w').write(markdown)",
}


def pair_tolerance(a: str, b: str, scale: float) -> float:
    return max(TOLERANCE[a], TOLERANCE[b]) * max(1.0, scale)


def grader_sequences(ctx: CheckContext, salt: str, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Fresh sequences for this grading run, padded to a length (20..28) the notebook never used."""
    rng = ctx.rng(salt)
    return first_token_returns(n, seed=int(rng.integers(2**31)), pad_to=int(rng.integers(LENGTHS[1] + 4, 29)))


def keras_summary(ctx: CheckContext) -> dict:
    """capstone.keras as the checker loaded it (safe mode): its inputs' shapes, layers and parameter count."""
    return runtimes.keras_summary(ctx, ctx.artifact(KERAS_FILE, "keras", hint=HINTS[KERAS_FILE]),
                                  f"{KERAS_FILE} does not load", HINTS[KERAS_FILE])


def keras_logits(ctx: CheckContext, tokens: np.ndarray) -> np.ndarray:
    keras_summary(ctx)  # a file that does not load says so first
    return runtimes.keras_outputs(ctx, ctx.workdir / KERAS_FILE, tokens, f"{KERAS_FILE} fails on tokens of shape "
                                  f"{tokens.shape}", "keras.Input((None,), dtype='int32', name='tokens')")


def keras_torch_logits(ctx: CheckContext, tokens: np.ndarray) -> np.ndarray:
    """The same .keras file on Keras's torch backend (a process of the checker's own)."""
    path = ctx.artifact(KERAS_FILE, "keras", hint=HINTS[KERAS_FILE])
    return runtimes.keras_outputs(ctx, path, tokens, f"{KERAS_FILE} does not run on Keras's torch backend",
                                  "Build the model from Keras layers and keras.ops only: no tf.* calls.",
                                  backend="torch")


def onnx_input_dims(ctx: CheckContext) -> list:
    """The first input's dimensions: an int where fixed, None where dynamic."""
    path = ctx.artifact(ONNX_FILE, "export", hint=HINTS[ONNX_FILE])
    info = runtimes.onnxruntime_info(ctx, path, f"{ONNX_FILE} does not load", HINTS[ONNX_FILE])
    return list(info["inputs"][0]["shape"]) if info.get("inputs") else []


def onnx_logits(ctx: CheckContext, tokens: np.ndarray) -> np.ndarray:
    """ONNX Runtime on capstone.onnx. A fixed batch or length costs only the dynamic_axes check: the grader runs
    the file in batches of its size and pads or trims the padding columns to its length."""
    dims = onnx_input_dims(ctx)
    batch, length = (d if isinstance(d, int) else None for d in (dims + [None, None])[:2])
    if length is not None:
        real = int((tokens != 0).any(0).nonzero()[0].max()) + 1
        if length < real:
            raise CheckFailed(f"{ONNX_FILE} takes sequences of exactly {length} tokens: too short for the grader's.",
                              hint=HINTS[ONNX_FILE])
        tokens = np.pad(tokens[:, :real], ((0, 0), (0, length - real)))
    step = batch or len(tokens)
    path = ctx.artifact(ONNX_FILE, "export", hint=HINTS[ONNX_FILE])
    parts = [onnxruntime_outputs(ctx, path, np.resize(tokens[i:i + step], (step, tokens.shape[1])),
                                 f"{ONNX_FILE} does not run in ONNX Runtime", HINTS[ONNX_FILE])[:len(tokens[i:i + step])]
             for i in range(0, len(tokens), step)]
    return np.concatenate(parts)


def pt2_logits(ctx: CheckContext, tokens: np.ndarray) -> np.ndarray:
    path = ctx.artifact(PT2_FILE, "export", hint=HINTS[PT2_FILE])
    return runtimes.program_outputs(ctx, path, tokens, f"{PT2_FILE} does not load, or fails on tokens of shape "
                                    f"{tokens.shape}", "Export with a dynamic batch and length: " + HINTS[PT2_FILE])


def serving_signature(ctx: CheckContext) -> dict:
    return savedmodel_signature(ctx, ctx.artifact(SAVEDMODEL_DIR, "saved_model", hint=HINTS[SAVEDMODEL_DIR]),
                                HINTS[SAVEDMODEL_DIR])


def savedmodel_logits(ctx: CheckContext, tokens: np.ndarray, xla: bool = False, device: str = "/CPU:0") -> np.ndarray:
    return savedmodel_outputs(ctx, ctx.artifact(SAVEDMODEL_DIR, "saved_model", hint=HINTS[SAVEDMODEL_DIR]),
                              tokens.astype(np.int64), f"{SAVEDMODEL_DIR} fails on tokens of shape {tokens.shape}"
                              f"{' under XLA' if xla else ''}", HINTS[SAVEDMODEL_DIR], xla=xla, device=device)


def litert_logits(ctx: CheckContext, tokens: np.ndarray) -> np.ndarray:
    return litert_outputs(ctx, ctx.artifact(TFLITE_FILE, "saved_model", hint=HINTS[TFLITE_FILE]), tokens,
                          f"LiteRT cannot run {TFLITE_FILE} on tokens of shape {tokens.shape}", HINTS[TFLITE_FILE])


RUNNERS = {"keras_tf": keras_logits, "keras_torch": keras_torch_logits, "torch": pt2_logits, "onnxruntime": onnx_logits,
           "tf_savedmodel": savedmodel_logits, "tf_xla": lambda ctx, t: savedmodel_logits(ctx, t, xla=True),
           "litert": litert_logits}


@registry.check("keras", "saved")
def keras_saved(ctx: CheckContext):
    model = keras_summary(ctx)
    shape = [tuple(t) for t in model["inputs"]]
    missing = [name for name in LAYERS if name not in {layer["name"] for layer in model["layers"] if layer["depth"] == 1}]
    if shape != [(None, None)]:
        raise CheckFailed("The model must take one input of token ids of any batch size and length.",
                          expected="[(None, None)]", found=str(shape), hint="keras.Input((None,), dtype='int32')")
    if missing:
        raise CheckFailed(f"Layers the next exercises rely on are missing or named otherwise: {', '.join(missing)}.",
                          expected=", ".join(LAYERS), hint="Name each layer: layers.Dense(..., name='ff1').")
    return f"loads on its own; input {shape[0]}; {model['params']:,} parameters"


def grader_accuracy(ctx: CheckContext) -> tuple[float, int]:
    """capstone.keras's accuracy on 1,000 fresh sequences, and the length they are padded to."""
    def measure():
        tokens, labels = grader_sequences(ctx, "accuracy", n=1000)
        return float((keras_logits(ctx, tokens).argmax(1) == labels).mean()), tokens.shape[1]
    return ctx.cached("grader_accuracy", measure)


@registry.check("keras", "accuracy")
def keras_accuracy(ctx: CheckContext):
    accuracy, length = grader_accuracy(ctx)
    if accuracy < ACCURACY_BAR:
        raise CheckFailed(f"Accuracy on the grader's sequences is under the bar: {accuracy:.3f} < {ACCURACY_BAR}.",
                          expected=f">= {ACCURACY_BAR}", found=f"{accuracy:.3f} (padded to {length})",
                          hint="Train longer, or check that the mask keeps padding out of attention and pooling.")
    return f"accuracy {accuracy:.3f} on 1,000 fresh sequences padded to {length} (bar {ACCURACY_BAR})"


@registry.check("keras", "padding")
def keras_padding(ctx: CheckContext):
    tokens, _ = grader_sequences(ctx, "padding", n=64)
    short = tokens[:, :LENGTHS[1]]
    expect_close(keras_logits(ctx, tokens), keras_logits(ctx, short),
                 "More padding changes the model's answer: the mask is ignored somewhere, in the attention "
                 "(keys that are PAD are attended to) or in the pooling (PAD positions are averaged in)",
                 hint="attention_mask of shape (batch, 1, length), True for real tokens; a masked mean.")
    return f"padding to {short.shape[1]} or {tokens.shape[1]} gives the same answers"


# A case without a mask tells the softmax's axis apart: with one, a softmax over a wrong axis is NaN wherever a whole
# slice is masked, whatever the axis.
ATTENTION_CASES = {"a": (3, 2, 7, 8, "keys"), "b": (2, 3, 6, 4, "full"), "c": (2, 2, 5, 6, "none")}


@registry.inputs("attention")
def attention_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("attention")
    inputs: dict[str, np.ndarray] = {}
    for case, (batch, heads, length, dim, kind) in ATTENTION_CASES.items():
        for name in "qkv":
            inputs[f"{name}_{case}"] = (2.0 * rng.normal(size=(batch, heads, length, dim))).astype(np.float32)
        if kind == "keys":  # padding: each sequence's last keys are hidden from every query
            lengths = rng.integers(2, length, batch)
            mask = np.arange(length)[None, None, None, :] < lengths[:, None, None, None]
        elif kind == "full":  # any pattern, with at least one visible key for each query
            mask = rng.random((batch, 1, length, length)) < 0.6
            mask[..., 0] = True
        else:                 # every key visible
            mask = np.ones((batch, 1, 1, length), bool)
        inputs[f"mask_{case}"] = mask
    return inputs


@registry.check("attention", "from_tensors")
def attention_from_tensors(ctx: CheckContext):
    used = [c for c in ctx.outputs(attention)["calls"] if "attention" in c]
    if used:
        raise CheckFailed(f"attention calls torch's own attention ({', '.join(used)}): write it from tensors.",
                          hint="q @ k.transpose(-2, -1), masked_fill, softmax, @ v")
    return "written from tensor operations"


def export_tokens(ctx: CheckContext) -> np.ndarray:
    return grader_sequences(ctx, "export", n=int(ctx.rng("export_n").integers(3, 40)))[0]


@registry.check("export", "dynamic_axes")
def export_dynamic_axes(ctx: CheckContext):
    dims = onnx_input_dims(ctx)
    fixed = [what for what, d in zip(("batch", "sequence length"), dims) if isinstance(d, int)]
    if len(dims) != 2 or fixed:
        raise CheckFailed(f"{ONNX_FILE} fixes the {' and the '.join(fixed) or 'shape'} of its input: a fixed "
                          f"{' and '.join(fixed) or 'shape'} in the export.", expected="['batch', 'length'] (symbolic)",
                          found=str(dims), hint="dynamic_shapes={'tokens': {0: Dim('batch'), 1: Dim('length', max=32)}}")
    return f"input dims {dims}"


@registry.check("export", "names")
def export_names(ctx: CheckContext):
    path = ctx.artifact(ONNX_FILE, "export", hint=HINTS[ONNX_FILE])
    info = runtimes.onnxruntime_info(ctx, path, f"{ONNX_FILE} does not load", HINTS[ONNX_FILE])
    inputs, outputs = ([a["name"] for a in info.get(key, [])] for key in ("inputs", "outputs"))
    if inputs != ["tokens"] or outputs != ["logits"]:
        raise CheckFailed(f"{ONNX_FILE}'s inputs {inputs} and outputs {outputs} are not named as asked: the "
                          "converter and the serving signature take their names from them.", expected="input 'tokens', output 'logits'",
                          found=f"inputs {inputs}, outputs {outputs}",
                          hint="torch.onnx.export(..., input_names=['tokens'], output_names=['logits'])")
    return "input 'tokens', output 'logits'"


@registry.check("export", "onnx_parity")
def export_onnx_parity(ctx: CheckContext):
    tokens = export_tokens(ctx)
    diff = expect_close(onnx_logits(ctx, tokens), keras_logits(ctx, tokens),
                        f"{ONNX_FILE} in ONNX Runtime against {KERAS_FILE}",
                        hint="Export the model that holds the Keras weights, in eval mode.")
    return f"matches Keras on tokens of shape {tokens.shape} (max abs diff {diff:.1e})"


@registry.check("export", "pt2_parity")
def export_pt2_parity(ctx: CheckContext):
    tokens = export_tokens(ctx)
    diff = expect_close(pt2_logits(ctx, tokens), keras_logits(ctx, tokens),
                        f"{PT2_FILE} against {KERAS_FILE}", hint="Export the model that holds the Keras weights.")
    return f"matches Keras on tokens of shape {tokens.shape} (max abs diff {diff:.1e})"


@registry.check("saved_model", "signature")
def saved_model_signature(ctx: CheckContext):
    signature = serving_signature(ctx)
    inputs, outputs = signature["inputs"], sorted(signature["outputs"])
    spec = inputs.get("tokens")
    if spec is None or len(inputs) != 1 or outputs != ["logits"]:
        raise CheckFailed("The serving signature's tensors are not named as asked: clients call them by name.",
                          expected="input 'tokens', output 'logits'", found=f"inputs {sorted(inputs)}, outputs {outputs}")
    if spec["dtype"] != "int64" or spec["shape"] != [None, None]:
        raise CheckFailed("'tokens' must be int64 of any batch size and length.", expected="int64 [None, None]",
                          found=f"{spec['dtype']} {spec['shape']}",
                          hint="Take the ONNX input's symbolic dimensions as None in the TensorSpec.")
    return "serving_default: tokens int64 [None, None] -> logits"


@registry.check("saved_model", "parity")
def saved_model_parity(ctx: CheckContext):
    tokens = export_tokens(ctx)
    expected = onnx_logits(ctx, tokens)
    plain = expect_close(savedmodel_logits(ctx, tokens), expected, f"{SAVEDMODEL_DIR} against ONNX Runtime")
    xla = expect_close(savedmodel_logits(ctx, tokens, xla=True), expected,
                       f"{SAVEDMODEL_DIR} compiled with XLA against ONNX Runtime")
    return f"matches ONNX Runtime on tokens of shape {tokens.shape}: {plain:.1e}, with XLA {xla:.1e}"


@registry.check("saved_model", "litert_parity")
def saved_model_litert_parity(ctx: CheckContext):
    tokens = export_tokens(ctx)
    diff = expect_close(litert_logits(ctx, tokens), onnx_logits(ctx, tokens),
                        f"{TFLITE_FILE} in LiteRT against ONNX Runtime", TOLERANCE["litert"],
                        hint="Convert the float model (no optimizations) from the SavedModel.")
    return f"matches ONNX Runtime on tokens of shape {tokens.shape} (max abs diff {diff:.1e})"


@registry.check("saved_model", "gpu_parity")
def saved_model_gpu_parity(ctx: CheckContext):
    if not tensorflow_sees_a_gpu(ctx):
        raise CheckSkipped("TensorFlow sees no GPU here")
    tokens = export_tokens(ctx)
    diff = expect_close(savedmodel_logits(ctx, tokens, device="/GPU:0"), savedmodel_logits(ctx, tokens),
                        "The SavedModel on the GPU against the CPU", 1e-4)
    return f"the same outputs on the GPU (max abs diff {diff:.1e})"


def grader_matrix(ctx: CheckContext) -> dict:
    """The grader's own matrix: every runtime on the same fresh sequences, from the artifacts."""
    def compute():
        tokens, _ = grader_sequences(ctx, "parity", n=64)
        logits = {runtime: RUNNERS[runtime](ctx, tokens) for runtime in RUNTIMES}
        scale = max(float(np.abs(v).max()) for v in logits.values())
        max_abs = [[max_diff(logits[a], logits[b]) for b in RUNTIMES] for a in RUNTIMES]
        return {"runtimes": list(RUNTIMES), "max_abs": max_abs, "scale": scale, "length": tokens.shape[1]}
    return ctx.cached("grader_matrix", compute)


def learner_matrix(runtimes: list, rows) -> dict[tuple[str, str], float]:
    return {(a, b): float(rows[i][j]) for i, a in enumerate(runtimes) for j, b in enumerate(runtimes)}


PARITY_FACTOR = 10  # a pair's figure on the learner's batch against the grader's on its own: fp32 rounding, not a law


def rounding_step(scale: float) -> float:
    """A quarter of one float32 step at the logits' size: below it, a difference is the rounding of one small logit,
    and whether a batch shows it at all is chance."""
    return float(np.spacing(np.float32(max(scale, 1.0)))) / 4


def compare_with_grader(found: dict[tuple[str, str], float], what: str, ctx: CheckContext,
                        zero_cause: str = "the notebook compared a runtime with itself (the same outputs used twice)") -> str:
    """Each pair against the grader's own measurement of it, from the artifacts on its sequences: the same verdict
    (within tolerance or not), the same size within PARITY_FACTOR (the figures differ with the inputs, by rounding
    only), and never exactly 0 where the grader measures a difference (two runtimes do not agree to the last bit)."""
    grader = grader_matrix(ctx)
    ours = learner_matrix(grader["runtimes"], grader["max_abs"])
    pairs = [(a, b) for a, b in ours if a < b and (a, b) in found]
    step = rounding_step(grader["scale"])

    def agrees(value, a, b):
        return value <= pair_tolerance(a, b, grader["scale"])

    zeros = [(a, b) for a, b in pairs if found[(a, b)] == 0 and ours[(a, b)] >= step]
    if zeros:
        a, b = zeros[0]
        raise CheckFailed(f"{what}: {a} vs {b} is exactly 0, where the grader measures {ours[(a, b)]:.3g} between "
                          f"these artifacts. Two runtimes never agree to the last bit, so {zero_cause}."
                          + (f" {len(zeros) - 1} more pairs are 0 the same way." if len(zeros) > 1 else ""),
                          expected=f"{a} vs {b}: about {ours[(a, b)]:.2g} (within a factor {PARITY_FACTOR})",
                          found=f"0 for {', '.join(f'{x} vs {y}' for x, y in zeros[:4])}",
                          hint="Check that each runtime's outputs come from that runtime: a typo that reuses one "
                               "runtime's outputs for another gives 0.")
    off = [(a, b) for a, b in pairs if agrees(found[(a, b)], a, b) != agrees(ours[(a, b)], a, b)]
    if off:
        a, b = off[0]
        raise CheckFailed(f"{what} does not match the artifacts: {len(off)} pairs get another verdict than the "
                          f"grader's own measurement, e.g. {a} vs {b}: {found[(a, b)]:.3g}, where the grader measures "
                          f"{ours[(a, b)]:.3g} (tolerance {pair_tolerance(a, b, grader['scale']):.2g}).",
                          expected="the grader's verdict for each pair", found=f"{len(off)} pairs off",
                          hint="Compute the matrix from the saved artifacts, in one run.")

    def ratio(a, b):
        return max(found[(a, b)], step) / max(ours[(a, b)], step)
    far = [(a, b) for a, b in pairs if not 1 / PARITY_FACTOR <= ratio(a, b) <= PARITY_FACTOR]
    if far:
        a, b = max(far, key=lambda p: abs(np.log(ratio(*p))))
        raise CheckFailed(f"{what} does not match the artifacts: {len(far)} pairs are more than {PARITY_FACTOR} times "
                          f"{'larger' if ratio(a, b) > 1 else 'smaller'} than the grader's own measurement, the most "
                          f"{a} vs {b}: {found[(a, b)]:.3g}, where the grader measures {ours[(a, b)]:.3g}.",
                          expected=f"each pair within a factor {PARITY_FACTOR} of the grader's figure",
                          found=f"{len(far)} pairs off",
                          hint="Compute the matrix from the saved artifacts, in one run, on one batch of 64 "
                               "sequences or more.")
    worst = max(pairs or [(RUNTIMES[0], RUNTIMES[1])], key=lambda p: ours[p])
    return (f"agrees with the grader's matrix on sequences padded to {grader['length']}; the largest difference is "
            f"{worst[0]} vs {worst[1]}: {ours[worst]:.1e}")


def parity_outputs(ctx: CheckContext) -> tuple[list, dict, dict]:
    matrix = ctx.outputs(parity)["parity"]
    runtimes = matrix["runtimes"]
    missing = [r for r in RUNTIMES if r not in runtimes]
    shapes = {key: np.shape(matrix[key]) for key in ("max_abs", "max_rel")}
    if missing or any(shape != (len(runtimes), len(runtimes)) for shape in shapes.values()):
        raise CheckFailed("The parity matrix is incomplete." + (f" Runtimes missing: {', '.join(missing)}." if missing else ""),
                          expected=f"runtimes {list(RUNTIMES)}; max_abs and max_rel square, one row per runtime",
                          found=f"runtimes {runtimes}; shapes {shapes}")
    return runtimes, learner_matrix(runtimes, matrix["max_abs"]), learner_matrix(runtimes, matrix["max_rel"])


@registry.check("parity", "complete")
def parity_complete(ctx: CheckContext):
    runtimes, max_abs, max_rel = parity_outputs(ctx)
    for name, matrix in (("max_abs", max_abs), ("max_rel", max_rel)):
        values = np.array(list(matrix.values()))
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise CheckFailed(f"{name} holds negative or non-finite numbers.", found=str(values.tolist())[:200])
        if any(matrix[(a, a)] != 0 for a in runtimes) or any(matrix[(a, b)] != matrix[(b, a)] for a in runtimes for b in runtimes):
            raise CheckFailed(f"{name} must be symmetric with zeros on the diagonal: a difference is a distance.",
                              hint="max_abs[i][j] = max|out_i - out_j|, the same both ways.")
    return f"{len(runtimes)} runtimes, every pair, symmetric"


@registry.check("parity", "within_tolerance")
def parity_within_tolerance(ctx: CheckContext):
    _, max_abs, _ = parity_outputs(ctx)
    scale = grader_matrix(ctx)["scale"]
    over = [(a, b, v) for (a, b), v in max_abs.items() if a < b and a in TOLERANCE and b in TOLERANCE
            and not v <= pair_tolerance(a, b, scale)]
    if over:
        a, b, v = max(over, key=lambda item: item[2])
        raise CheckFailed(f"{len(over)} pairs of runtimes disagree beyond their tolerance, the most {a} vs {b}: {v:.3g}.",
                          expected="1e-5 (1e-4 with LiteRT) times the size of the logits",
                          hint="A runtime that disagrees has a conversion bug: compare its outputs layer by layer.")
    return "every pair within its tolerance"


@registry.check("parity", "matches_grader")
def parity_matches_grader(ctx: CheckContext):
    _, max_abs, _ = parity_outputs(ctx)
    return compare_with_grader(max_abs, "The parity matrix", ctx)


SCALE_FACTOR = 3  # the largest logit on the learner's batch against the grader's on its own: the same model's


@registry.check("parity", "relative")
def parity_relative(ctx: CheckContext):
    _, max_abs, max_rel = parity_outputs(ctx)
    scale = grader_matrix(ctx)["scale"]
    pairs = [(a, b) for (a, b) in max_abs if a < b and a in TOLERANCE and b in TOLERANCE]
    zero_rel = [p for p in pairs if max_abs[p] > 0 and max_rel[p] == 0 or max_abs[p] == 0 and max_rel[p] != 0]
    if zero_rel:
        a, b = zero_rel[0]
        raise CheckFailed(f"max_rel and max_abs disagree on whether {a} vs {b} differ at all: max_abs "
                          f"{max_abs[(a, b)]:.3g}, max_rel {max_rel[(a, b)]:.3g}.",
                          expected="max_rel[i][j] = max_abs[i][j] / max(max|out_i|, max|out_j|)",
                          hint="Compute max_rel from max_abs and the sizes of the two outputs.")
    implied = {p: max_abs[p] / max_rel[p] for p in pairs if max_rel[p] > 0}
    off = {p: size for p, size in implied.items() if not scale / SCALE_FACTOR <= size <= scale * SCALE_FACTOR}
    if off:
        a, b = next(iter(off))
        size = off[(a, b)]
        cause = (" max_rel equals max_abs: it is not divided by the size of the outputs." if np.isclose(size, 1.0)
                 else "")
        raise CheckFailed(f"max_rel is not max_abs relative to the size of the logits: for {a} vs {b}, max_abs / "
                          f"max_rel = {size:.3g}, where the logits' largest magnitude is about {scale:.3g} (the "
                          f"grader's measurement on its sequences).{cause}",
                          expected=f"max_abs / max_rel within a factor {SCALE_FACTOR} of {scale:.3g}",
                          found=f"{size:.3g} for {len(off)} pairs",
                          hint="max_rel[i][j] = max_abs[i][j] / max(max|out_i|, max|out_j|).")
    return f"max_rel is max_abs over the logits' size (about {scale:.3g})"


SECTIONS = ("task", "accuracy", "runtimes", "parity", "known limits")
NUMBER = r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def report_sections(ctx: CheckContext) -> dict[str, str]:
    """The report's text under each '## ' heading, keyed by the heading in lower case."""
    with ctx.artifact(REPORT_FILE, "report", hint=HINTS[REPORT_FILE]).open("rb") as report:
        text = report.read(REPORT_BYTES).decode("utf-8", errors="replace")  # a report, not a dump: the rest is unread
    sections: dict[str, str] = {}
    heading = None
    for line in text.splitlines():
        if re.match(r"##(?!#)", line.strip()):
            heading = line.strip().lstrip("#").strip().lower()
            sections.setdefault(heading, "")
        elif heading is not None:
            sections[heading] += line + "\n"
    return sections


def section(sections: dict[str, str], word: str) -> str:
    found = next((body for heading, body in sections.items() if word in heading), None)
    if found is None:
        raise CheckFailed(f"The report has no section about '{word}'.", expected=f"a '## {word.title()}' heading",
                          found=", ".join(repr(h) for h in sections if h) or "no headings")
    return found


def table(body: str) -> list[list[str]]:
    """The first Markdown pipe table in `body`: a list of rows of cells, the header first, without the rule."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in body.splitlines()
            if line.strip().startswith("|")]
    return [row for row in rows if not all(re.fullmatch(r":?-{2,}:?", cell) for cell in row if cell)]


def number(cell: str) -> float | None:
    match = re.search(NUMBER, cell.replace("\u2212", "-"))
    return float(match.group().replace(",", "")) if match else None


@registry.check("report", "sections")
def report_has_sections(ctx: CheckContext):
    sections = report_sections(ctx)
    for word in SECTIONS:
        section(sections, word)
    empty = [w for w in SECTIONS if not section(sections, w).strip()]
    if empty:
        raise CheckFailed(f"These sections of the report are empty: {', '.join(empty)}.")
    return "task, accuracy, runtimes, parity and known limits"


def artifact_size(ctx: CheckContext, runtime: str) -> int:
    path = ctx.artifact(ARTIFACT_OF[runtime], None)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


ACCURACY_FORMS = re.compile(  # 97.3% or 97.3 percent, 973/1000 (or 973 of 1,000), or a proportion 0.973
    rf"(?P<percent>{NUMBER})\s*(?:%|percent\b)|(?P<hits>\d[\d,]*)\s*(?:/|out of|of)\s*(?P<total>\d[\d,]*)"
    rf"|(?P<proportion>(?<![\d.,])(?:0?\.\d+|[01](?:\.0*)?)(?![\d,]|\.\d))", re.I)


def accuracy_candidates(text: str) -> list[tuple[int, float]]:
    """Every figure in `text` written as an accuracy can be (a percentage, a count out of a total, a proportion in
    [0, 1]), with its position: counts such as '1,000 sequences' or '16 tokens' are none of these."""
    found = []
    for match in ACCURACY_FORMS.finditer(text.replace("\u2212", "-")):
        if match["percent"]:
            value = float(match["percent"].replace(",", "")) / 100
        elif match["hits"]:
            hits, total = (float(match[g].replace(",", "")) for g in ("hits", "total"))
            value = hits / total if 0 < total and hits <= total else -1.0
        else:
            value = float(match["proportion"])
        if 0 <= value <= 1:
            found.append((match.start(), value))
    return found


def reported_accuracy(body: str) -> float | None:
    """The accuracy a report's section states: of the figures written as an accuracy can be, the one nearest the
    word 'accuracy' (the first, where the section never says the word)."""
    candidates = accuracy_candidates(body)
    words = [m.start() for m in re.finditer(r"accura", body, re.I)]
    if not candidates:
        return None
    if not words:
        return candidates[0][1]
    return min(candidates, key=lambda c: min(abs(c[0] - w) for w in words))[1]


@registry.check("report", "accuracy")
def report_accuracy(ctx: CheckContext):
    body = section(report_sections(ctx), "accuracy")
    reported = reported_accuracy(body)
    accuracy, _ = grader_accuracy(ctx)
    if reported is None:
        raise CheckFailed("The Accuracy section states no accuracy the grader can read.",
                          expected=f"a proportion (e.g. {accuracy:.3f}) or a percentage ({accuracy:.1%})",
                          found=body.strip()[:200] or "an empty section",
                          hint="Write it as 0.973 or 97.3%, next to the word 'accuracy'.")
    if abs(reported - accuracy) > ACCURACY_SLACK:
        raise CheckFailed(f"The report's accuracy, {reported:.3f}, does not match the model's: the grader measures "
                          f"{accuracy:.3f} on fresh sequences.", expected=f"{accuracy:.3f} ± {ACCURACY_SLACK}",
                          found=f"{reported:.3f}", hint=HINTS[REPORT_FILE] + "; take the figure from the evaluation.")
    return f"accuracy {reported:.3f} (grader: {accuracy:.3f})"


def column_of(header: list[str], word: str) -> int | None:
    return next((i for i, h in enumerate(header) if word in h), None)


@registry.check("report", "sizes")
def report_sizes(ctx: CheckContext):
    rows = table(section(report_sections(ctx), "runtimes"))
    header = [h.lower() for h in rows[0]] if rows else []
    column = column_of(header, "size")
    if column is None:
        raise CheckFailed("The runtimes table has no size column.", expected="| runtime | ... | size (bytes) | ... |",
                          found=" | ".join(header) or "no table")
    name_column = column_of(header, "runtime")
    name_column = 0 if name_column is None else name_column
    sizes = {row[name_column].strip("`* ").lower(): number(row[column]) for row in rows[1:]
             if len(row) > max(column, name_column)}
    scale = 1024 if "kib" in header[column] else 1000 if "kb" in header[column] else 1
    for runtime in RUNTIMES:
        actual = artifact_size(ctx, runtime)
        found = sizes.get(runtime)
        found = None if found is None else found * scale
        if found is None or abs(found - actual) > 0.01 * actual:
            raise CheckFailed(f"The report's size for {runtime} does not match {ARTIFACT_OF[runtime]}.",
                              expected=f"{actual:,} bytes", found="missing" if found is None else f"{found:,.0f}",
                              hint="Measure the files the notebook saved: os.path.getsize, or the sum over a folder.")
    return f"the sizes of {len(RUNTIMES)} runtimes' artifacts"


@registry.check("report", "parity_figures")
def report_parity_figures(ctx: CheckContext):
    rows = table(section(report_sections(ctx), "parity"))
    if not rows:
        raise CheckFailed("The parity section has no table.", expected="a table with a row and a column per runtime")
    columns = [c.strip("` ").lower() for c in rows[0]]
    found = {}
    for row in rows[1:]:
        a = row[0].strip("` ").lower()
        for b, cell in zip(columns[1:], row[1:]):
            value = number(cell)
            if value is not None:
                found[(a, b)] = value
    missing = [(a, b) for a in RUNTIMES for b in RUNTIMES if a < b and (a, b) not in found and (b, a) not in found]
    if missing:
        raise CheckFailed(f"The report's parity table lacks {len(missing)} pairs, e.g. {missing[0][0]} vs {missing[0][1]}.",
                          expected=f"a row and a column for each of {', '.join(RUNTIMES)}")
    found.update({(b, a): v for (a, b), v in list(found.items()) if (b, a) not in found})
    return compare_with_grader(found, "The report's parity table", ctx,
                               "the notebook compared a runtime with itself, or rounded its figure to 0 (write "
                               "it with an exponent: f'{value:.2e}')")
