"""Checks for module 03 (ONNX export). The learner's .onnx files are opened only by the sandboxed checker: their
graphs as plain data for the structural checks (ops.onnx_graph: external data, the full checker's verdict, names,
nodes, small constants, sizes) and their runs in ONNX Runtime (CheckerSession). The PyTorch reference is module 02's
DigitsNet (polyglot_lab.models), built here from the tensors the checker read out of the notebook's state dict."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)
from contextlib import contextmanager

import numpy as np

from polyglot_lab.probe import ARRAY, VALUE, need, probe
# </kernel>

from pathlib import Path
from types import SimpleNamespace

from graders.checks import (
    CheckContext,
    CheckFailed,
    CheckSkipped,
    Registry,
    describe_array,
)
from graders.checks.compare import close, expect_close, looks_like_probabilities, softmax
from graders.checks.runtimes import onnxruntime_info, onnxruntime_latency, onnxruntime_outputs, saved_tensors
from graders.data import holdout_digits
from polyglot_lab import models

registry = Registry("03_onnx_export")
FLOAT_FILE, STATE_FILE = registry.artifacts("export")
(GUARD_FILE,) = registry.artifacts("control_flow")
(INT8_FILE,) = registry.artifacts("quantize")
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
SIZE_RATIO_BAR = 0.75      # dynamic int8 keeps about a third of this model's bytes
ACCURACY_DROP_BAR = 0.03   # int8 may lose this much held-out accuracy, no more
CPU = ["CPUExecutionProvider"]
ARTIFACT_HINTS = {
    FLOAT_FILE: "export_onnx(model, 'digits.onnx', EXTERNAL_DATA), in the notebook's folder.",
    STATE_FILE: "Keep the notebook's first cells as they are: they save it.",
    GUARD_FILE: "torch.onnx.export(module, (example,), 'guard.onnx', dynamo=True, ...) once the export succeeds.",
    INT8_FILE: "quantize_dynamic('digits.onnx', 'digits_int8.onnx', weight_type=QuantType.QInt8)",
}


# <kernel>  helpers of this module's probes
def _model_file(io, name: str) -> str:
    """The path of the grader's model `name` (an input file, <name>.onnx)."""
    return str(io.input_file(f"{name}.onnx"))


@contextmanager
def _recording(cls, seen: list):
    """Record the arguments each new instance of `cls` is made with (the providers a session is given)."""
    original = cls.__init__

    def init(self, *args, **kwargs):
        seen.append((args, kwargs))
        original(self, *args, **kwargs)
    cls.__init__ = init
    try:
        yield seen
    finally:
        cls.__init__ = original
# </kernel>


# -- loading artifacts -------------------------------------------------------------------------
def load_onnx(ctx: CheckContext, name: str, exercise: str) -> dict:
    """The learner's ONNX file as the checker read it (ops.onnx_graph: external data, the full checker's verdict,
    inputs, outputs, nodes, small constants, bytes), or a CheckFailed that names what is wrong."""
    key = f"onnx:{name}"
    def load():
        path = ctx.artifact(name, exercise, hint=ARTIFACT_HINTS.get(name))
        graph = ctx.run("onnx_graph", f"{name} is not an ONNX model", path=path)
        missing = list(graph.get("missing") or [])
        if missing:
            raise CheckFailed(f"{name} keeps its weights in {missing[0]}, and that file is missing beside it.",
                              expected=f"{missing[0]} in the same folder as {name}", found="no such file",
                              hint="Keep the .onnx.data file next to the .onnx file (they travel together), or "
                                   "export with external_data=False to get one self-contained file.")
        return graph
    return ctx.cached(key, load)


def data_files(ctx: CheckContext, name: str, exercise: str) -> list[str]:
    """The external data files the learner's model keeps its weights in (none for a self-contained file)."""
    return list(load_onnx(ctx, name, exercise)["external"])


class CheckerSession:
    """An ONNX Runtime session on a learner's file, held by the sandboxed checker: the part of ORT's API the checks
    use (inputs, run, a latency measured there)."""

    def __init__(self, ctx: CheckContext, path: Path, name: str, providers):
        self.ctx, self.path, self.name, self.providers = ctx, path, name, list(providers)
        self.info = onnxruntime_info(ctx, path, f"ONNX Runtime cannot load {name}", providers=self.providers)

    def get_inputs(self):
        return [SimpleNamespace(name=i["name"], shape=i["shape"]) for i in self.info["inputs"]]

    def run(self, _outputs, feed: dict) -> list:
        (x,) = feed.values()
        return [onnxruntime_outputs(self.ctx, self.path, x, f"{self.name} fails on a batch of {len(x)} rows",
                                    providers=self.providers)]

    def latency(self, X: np.ndarray, repeats: int) -> float:
        """Median seconds per run on X, measured in the checker (warm-up first)."""
        return onnxruntime_latency(self.ctx, self.path, X, repeats, f"{self.name} could not be timed", self.providers)


def onnx_session(ctx: CheckContext, name: str, exercise: str, providers=CPU) -> CheckerSession:
    key = f"session:{name}:{','.join(providers)}"
    def load():
        load_onnx(ctx, name, exercise)  # names a missing .data file before ONNX Runtime trips on it
        return CheckerSession(ctx, ctx.workdir / name, name, providers)
    return ctx.cached(key, load)


def run_session(session, X: np.ndarray, name: str) -> np.ndarray:
    """The first output for rows X. A model with a fixed batch size gets X in chunks of that size (the last one
    padded), so that a fixed batch costs the dynamic-batch check only."""
    first = session.get_inputs()[0]
    fixed = first.shape[0] if first.shape and isinstance(first.shape[0], int) and first.shape[0] > 0 else None
    X = np.ascontiguousarray(X, dtype=np.float32)
    try:
        if fixed is None:
            return np.asarray(session.run(None, {first.name: X})[0], np.float64)
        outputs = []
        for start in range(0, len(X), fixed):
            chunk = X[start:start + fixed]
            padded = np.concatenate([chunk, np.repeat(chunk[-1:], fixed - len(chunk), axis=0)])
            outputs.append(np.asarray(session.run(None, {first.name: padded})[0], np.float64)[:len(chunk)])
        return np.concatenate(outputs)
    except CheckFailed:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CheckFailed(f"{name} fails on a batch of {len(X)} rows: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:300]}",
                          hint="Export with a dynamic batch dimension: dynamic_shapes={'x': {0: Dim('batch')}}.") from None


def torch_reference(ctx: CheckContext):
    """Module 02's DigitsNet with the weights the notebook saved (read by the checker, rebuilt here from plain
    arrays): the PyTorch side of every parity check."""
    def load():
        import torch

        path = ctx.artifact(STATE_FILE, "export", hint=ARTIFACT_HINTS[STATE_FILE])
        hint = "Keep the notebook's first cells as they are: they save it."
        saved = saved_tensors(ctx, path, f"{STATE_FILE} does not load with torch.load(weights_only=True)", hint)
        state = {k: torch.from_numpy(np.array(v)) for k, v in saved.items() if isinstance(v, np.ndarray)}
        try:
            model = models.digits_net(state["mean"], state["std"])
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001
            raise CheckFailed(f"{STATE_FILE} does not hold DigitsNet's state dict: {type(exc).__name__}: "
                              f"{str(exc)[:200]}", hint=hint) from None
        return model.eval()
    return ctx.cached("reference", load)


def reference_logits(ctx: CheckContext, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch_reference(ctx)(torch.from_numpy(np.ascontiguousarray(X, np.float32))).numpy().astype(np.float64)


# -- export ------------------------------------------------------------------------------------
# <kernel>
@probe(external_data=VALUE)
def export(ns, io):
    io.save(external_data=bool(need(ns, "EXTERNAL_DATA")))
# </kernel>


@registry.check("export", "loads")
def export_loads(ctx: CheckContext):
    graph = load_onnx(ctx, FLOAT_FILE, "export")
    if graph["checker_error"] is not None:
        raise CheckFailed(f"{FLOAT_FILE} fails onnx.checker's full check: {str(graph['checker_error'])[:300]}")
    data = data_files(ctx, FLOAT_FILE, "export")
    return f"{FLOAT_FILE} loads and passes the full checker" + (f" (weights in {data[0]})" if data else "")


@registry.check("export", "names")
def export_names(ctx: CheckContext):
    graph = load_onnx(ctx, FLOAT_FILE, "export")
    inputs = [i["name"] for i in graph["inputs"]]
    outputs = list(graph["outputs"])
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        wrong = "input" if inputs != [INPUT_NAME] else "output"
        raise CheckFailed(f"The model's {wrong} name is not the one asked for: servers and later modules feed "
                          "and read tensors by name.", expected=f"inputs {[INPUT_NAME]}, outputs {[OUTPUT_NAME]}",
                          found=f"inputs {inputs}, outputs {outputs}",
                          hint=f"torch.onnx.export(..., input_names=['{INPUT_NAME}'], output_names=['{OUTPUT_NAME}'])")
    return f"input '{INPUT_NAME}', output '{OUTPUT_NAME}'"


@registry.check("export", "dynamic_batch")
def export_dynamic_batch(ctx: CheckContext):
    dims = load_onnx(ctx, FLOAT_FILE, "export")["first_input_dims"]
    if dims and isinstance(dims[0], int):
        raise CheckFailed(f"The batch size is fixed at {dims[0]}: the model takes no other batch size.",
                          expected="a symbolic first dimension (dim_param, such as 'batch')",
                          found=f"dim_value {dims[0]}",
                          hint="torch.onnx.export(..., dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
    session = onnx_session(ctx, FLOAT_FILE, "export")
    X, _ = holdout_digits()
    for size in (1, 37):
        out = run_session(session, X[:size], FLOAT_FILE)
        if out.shape != (size, 10):
            raise CheckFailed("The output has the wrong shape.", expected=f"({size}, 10)", found=str(out.shape))
    return f"dynamic batch '{dims[0] if dims and dims[0] else '?'}': runs at batch 1 and 37"


def training_nodes(graph: dict) -> list[str]:
    """Nodes that behave as in training: Dropout with training_mode true (a constant, or an input that may be),
    BatchNormalization with training_mode=1."""
    constants = graph["small_constants"]
    found = []
    for node in graph["nodes"]:
        if node["op"] == "Dropout" and len(node["inputs"]) > 2 and node["inputs"][2]:
            if bool(np.asarray(constants.get(node["inputs"][2], True)).all()):
                found.append(f"Dropout '{node['name']}'")
        if node["op"] == "BatchNormalization" and node["ints"].get("training_mode"):
            found.append(f"BatchNormalization '{node['name']}'")
    return found


@registry.check("export", "eval_mode")
def export_eval_mode(ctx: CheckContext):
    found = training_nodes(load_onnx(ctx, FLOAT_FILE, "export"))
    if found:
        raise CheckFailed("The model was exported in train mode: the graph keeps training behaviour "
                          f"({', '.join(found[:3])}). ONNX Runtime happens to drop a Dropout, other runtimes apply it.",
                          expected="no Dropout in training mode", found=", ".join(found[:3]),
                          hint="model.eval() before torch.onnx.export: the exporter records the mode it sees.")
    return "exported in eval mode"


@registry.check("export", "parity")
def export_parity(ctx: CheckContext):
    session = onnx_session(ctx, FLOAT_FILE, "export")
    X, _ = holdout_digits()
    rng = ctx.rng("export")
    worst = 0.0
    for size in (1, int(rng.integers(3, 60)), len(X)):  # none of them the batch size exported with, most likely
        rows = X[rng.choice(len(X), size=size, replace=False)]
        found, expected = run_session(session, rows, FLOAT_FILE), reference_logits(ctx, rows)
        if found.shape != expected.shape:
            raise CheckFailed("The ONNX model's output has the wrong shape.", expected=str(expected.shape),
                              found=describe_array(found))
        if looks_like_probabilities(found) and close(found, softmax(expected)):
            raise CheckFailed("The ONNX model outputs probabilities where logits were asked: a softmax was added to "
                              "the graph.", expected="the model's logits", found="rows that sum to 1",
                              hint="Export the model itself; apply softmax where probabilities are needed.")
        worst = max(worst, expect_close(
            found, expected, "ONNX Runtime's outputs", mistake=f"ONNX Runtime's outputs differ from PyTorch's at batch size {size}.",
            hint=f"Export the trained model in eval mode; do not change it between saving {STATE_FILE} and exporting."))
    return f"ONNX Runtime matches PyTorch at three batch sizes (max abs diff {worst:.1e})"


@registry.check("export", "external_data_choice")
def export_external_data_choice(ctx: CheckContext):
    declared = bool(ctx.outputs(export)["external_data"])
    used = data_files(ctx, FLOAT_FILE, "export")
    if declared and not used:
        raise CheckFailed("EXTERNAL_DATA is True, but digits.onnx holds its weights itself.",
                          expected="weights in digits.onnx.data", found="one self-contained file",
                          hint="torch.onnx.export(..., external_data=EXTERNAL_DATA)")
    if used and not declared:
        raise CheckFailed(f"EXTERNAL_DATA is False, but digits.onnx keeps its weights in {used[0]}.",
                          expected="one self-contained file", found=f"weights in {used[0]}",
                          hint="torch.onnx.export(..., external_data=EXTERNAL_DATA)")
    return f"as declared: {'weights in ' + used[0] if used else 'one self-contained file'}"


# -- a small model of the grader's, for validate, inspect and runtime ---------------------------
def grader_model(ctx: CheckContext, broken: bool = False):
    """A small MLP built with onnx.helper; `broken` adds an int64 bias to a float tensor (a type error
    that only the full checker's shape inference sees)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = ctx.rng("grader_model")
    n_in = int(rng.integers(5, 12))
    widths = [int(rng.integers(4, 16)) for _ in range(int(rng.integers(1, 4)))] + [3]
    nodes, initializers, previous, fan_in = [], [], "features", n_in
    for i, width in enumerate(widths):
        weight = rng.normal(0, 1 / np.sqrt(fan_in), (fan_in, width)).astype(np.float32)
        bias = rng.normal(0, 0.1, width).astype(np.int64 if broken and i == 0 else np.float32)
        initializers += [numpy_helper.from_array(weight, f"W{i}"), numpy_helper.from_array(bias, f"b{i}")]
        nodes += [helper.make_node("MatMul", [previous, f"W{i}"], [f"matmul{i}"]),
                  helper.make_node("Add", [f"matmul{i}", f"b{i}"], [f"dense{i}"])]
        previous = f"dense{i}"
        if i < len(widths) - 1:
            nodes.append(helper.make_node("Relu", [previous], [f"relu{i}"]))
            previous = f"relu{i}"
        fan_in = width
    nodes.append(helper.make_node("Softmax", [previous], ["scores"], axis=-1))
    graph = helper.make_graph(nodes, "grader_mlp", [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", n_in])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 3])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(rng.choice([17, 18, 19, 20])))])
    model.ir_version = 9  # what this ONNX Runtime reads
    return model




# <kernel>
@probe(value_info=VALUE, broken_error=VALUE)
def validate(ns, io):
    validate_onnx = need(ns, "validate_onnx")
    inferred = validate_onnx(_model_file(io, "good"))
    if not hasattr(inferred, "graph"):
        raise TypeError(f"validate_onnx must return the shape-inferred onnx.ModelProto, it returned {type(inferred).__name__}")
    try:
        validate_onnx(_model_file(io, "broken"))
        broken_error = None
    except Exception as exc:  # noqa: BLE001 - raising is what a validator must do here
        broken_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
    io.save(value_info=sorted(v.name for v in inferred.graph.value_info), broken_error=broken_error)
# </kernel>


@registry.inputs("validate")
def validate_inputs(ctx: CheckContext) -> dict:
    return {"good.onnx": grader_model(ctx).SerializeToString(),
            "broken.onnx": grader_model(ctx, broken=True).SerializeToString()}


@registry.check("validate", "catches_invalid")
def validate_catches_invalid(ctx: CheckContext):
    error = ctx.outputs(validate)["broken_error"]
    if error is None:
        raise CheckFailed("validate_onnx accepted a model with a type error (an int64 bias added to float "
                          "activations): the plain checker does not run shape inference.",
                          expected="an exception", found="no exception",
                          hint="onnx.checker.check_model(path, full_check=True), and strict shape inference.")
    return f"rejects a broken model ({error[:80]})"


@registry.check("validate", "shapes_inferred")
def validate_shapes_inferred(ctx: CheckContext):
    import onnx

    expected = sorted(v.name for v in onnx.shape_inference.infer_shapes(grader_model(ctx)).graph.value_info)
    found = ctx.outputs(validate)["value_info"]
    if found != expected:
        raise CheckFailed("validate_onnx does not return the model with its intermediate shapes inferred.",
                          expected=f"value_info for {len(expected)} intermediate tensors",
                          found=f"value_info for {len(found)}",
                          hint="return onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)")
    return f"shapes inferred for all {len(expected)} intermediate tensors"


# -- inspect -----------------------------------------------------------------------------------
# <kernel>
@probe(report=VALUE)
def inspect(ns, io):
    report = dict(need(ns, "inspect_onnx")(_model_file(io, "good")))
    plain = {
        "opset": int(report.get("opset", -1)),
        "inputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("inputs", {})).items()},
        "outputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("outputs", {})).items()},
        "ops": {str(k): int(v) for k, v in dict(report.get("ops", {})).items()},
    }
    io.save(report=plain)
# </kernel>


@registry.inputs("inspect")
def inspect_inputs(ctx: CheckContext) -> dict:
    return {"good.onnx": grader_model(ctx).SerializeToString()}


def inspect_reference(model) -> dict:
    from collections import Counter

    def shape(value):
        return [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return {"opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": {v.name: shape(v) for v in model.graph.input},
            "outputs": {v.name: shape(v) for v in model.graph.output},
            "ops": dict(Counter(node.op_type for node in model.graph.node))}


@registry.check("inspect", "matches")
def inspect_matches(ctx: CheckContext):
    found, expected = ctx.outputs(inspect)["report"], inspect_reference(grader_model(ctx))
    for key in ("opset", "inputs", "outputs", "ops"):
        if found.get(key) != expected[key]:
            raise CheckFailed(f"inspect_onnx's '{key}' is wrong for a model of the grader's.",
                              expected=str(expected[key]), found=str(found.get(key)),
                              hint={"opset": "the version of the default domain ('') in model.opset_import",
                                    "ops": "collections.Counter(node.op_type for node in model.graph.node)"}.get(
                                  key, "{value.name: [d.dim_param or d.dim_value for d in "
                                       "value.type.tensor_type.shape.dim]}"))
    return f"opset {expected['opset']}, {sum(expected['ops'].values())} nodes of {len(expected['ops'])} op types"


# -- runtime -----------------------------------------------------------------------------------
# <kernel>
@probe(providers_given=VALUE, providers=VALUE, intra_op_threads=VALUE, reference_predictions=ARRAY, evaluators=VALUE)
def runtime(ns, io):
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    path, inputs = _model_file(io, "good"), io.inputs
    with _recording(onnxruntime.InferenceSession, []) as sessions:
        session = need(ns, "make_session")(path, int(inputs["threads"]))
    if not isinstance(session, onnxruntime.InferenceSession):
        raise TypeError(f"make_session must return an onnxruntime.InferenceSession, it returned {type(session).__name__}")
    args, kwargs = sessions[-1] if sessions else ((), {})
    providers = kwargs.get("providers", args[2] if len(args) > 2 else None)
    io.save(providers_given=[p if isinstance(p, str) else str(p[0]) for p in providers] if providers else None,
            providers=list(session.get_providers()),
            intra_op_threads=int(session.get_session_options().intra_op_num_threads))
    with _recording(ReferenceEvaluator, []) as evaluators:
        predictions = need(ns, "reference_predict")(path, inputs["X"])
    io.save(reference_predictions=np.asarray(predictions, dtype=np.float64), evaluators=len(evaluators))
# </kernel>


@registry.inputs("runtime")
def runtime_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("runtime")
    n_in = grader_model(ctx).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    return {"good.onnx": grader_model(ctx).SerializeToString(), "threads": int(rng.integers(1, 4)),
            "X": rng.normal(size=(int(rng.integers(3, 20)), n_in)).astype(np.float32)}


def expected_providers(device: str) -> list[str]:
    import onnxruntime as ort
    available = ort.get_available_providers()
    return (["CUDAExecutionProvider"] if device == "cuda" and "CUDAExecutionProvider" in available else []) + CPU


@registry.check("runtime", "explicit_providers")
def runtime_explicit_providers(ctx: CheckContext):
    out = ctx.outputs(runtime)
    if not out["providers_given"]:
        raise CheckFailed("make_session leaves the choice of execution providers to ONNX Runtime.",
                          expected="providers=[...] passed explicitly", found="no providers argument",
                          hint="ort.InferenceSession(path, options, providers=['CPUExecutionProvider']); put "
                               "'CUDAExecutionProvider' first when ort.get_available_providers() has it.")
    expected = expected_providers(ctx.device)
    if out["providers"] != expected:
        raise CheckFailed("The session does not use the providers this machine offers, best first.",
                          expected=str(expected), found=str(out["providers"]))
    return f"providers {expected}, given explicitly"


@registry.check("runtime", "threads")
def runtime_threads(ctx: CheckContext):
    found, wanted = ctx.outputs(runtime)["intra_op_threads"], runtime_inputs(ctx)["threads"]
    if found != wanted:
        raise CheckFailed("The session does not use the number of threads asked for.",
                          expected=f"intra_op_num_threads = {wanted}", found=str(found),
                          hint="options = ort.SessionOptions(); options.intra_op_num_threads = threads")
    return f"intra_op_num_threads = {wanted}"


@registry.check("runtime", "reference_evaluator")
def runtime_reference_evaluator(ctx: CheckContext):
    import onnxruntime as ort

    out, given = ctx.outputs(runtime), runtime_inputs(ctx)
    if not out["evaluators"]:
        raise CheckFailed("reference_predict does not use onnx.reference.ReferenceEvaluator: it is the second, "
                          "independent oracle.", hint="ReferenceEvaluator(path).run(None, {input_name: X})[0]")
    session = ort.InferenceSession(grader_model(ctx).SerializeToString(), providers=CPU)  # the grader's own model
    expected = run_session(session, given["X"], "the grader's model")
    expect_close(out["reference_predictions"], expected, "reference_predict's outputs",
                 mistake="reference_predict's outputs differ from ONNX Runtime's on the grader's model.")
    return "ReferenceEvaluator agrees with ONNX Runtime"


@registry.check("runtime", "cuda_provider")
def runtime_cuda_provider(ctx: CheckContext):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise CheckSkipped("this ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    on_gpu = onnx_session(ctx, FLOAT_FILE, "export", providers=["CUDAExecutionProvider", *CPU])
    X, _ = holdout_digits()
    found, expected = run_session(on_gpu, X, FLOAT_FILE), run_session(onnx_session(ctx, FLOAT_FILE, "export"), X, FLOAT_FILE)
    diff = expect_close(found, expected, f"{FLOAT_FILE} on CUDA", 1e-4,
                        mistake=f"{FLOAT_FILE} gives other outputs on the CUDA execution provider.")
    return f"the CUDA execution provider agrees (max abs diff {diff:.1e})"


# -- control flow ------------------------------------------------------------------------------
@registry.check("control_flow", "both_branches")
def control_flow_both_branches(ctx: CheckContext):
    session = onnx_session(ctx, GUARD_FILE, "control_flow")
    X, _ = holdout_digits()
    rng = ctx.rng("control_flow")
    for what, rows, expected_scale in (("raw pixels (0..16)", X, 1 / 16), ("already scaled pixels (0..1)", X / 16, 1.0)):
        rows = rows[rng.choice(len(rows), size=int(rng.integers(3, 40)), replace=False)]
        found = run_session(session, rows, GUARD_FILE)
        if found.shape != rows.shape or not np.allclose(found, rows * expected_scale, atol=1e-6):
            raise CheckFailed(f"{GUARD_FILE} gives the wrong answer for a batch of {what}: the exported graph took "
                              "the other branch (or baked in the one it saw while exporting).",
                              expected="x / 16 when x.max() > 1, else x unchanged",
                              found=describe_array(found) if found.shape != rows.shape else
                              f"scaled by {np.median(found[rows > 0] / rows[rows > 0]):.4g}",
                              hint="torch.cond(x.max() > 1, lambda x: x / 16, lambda x: x.clone(), (x,)) keeps both "
                                   "branches in the graph (an ONNX If).")
    return "both branches survive the export, at batch sizes it was not exported with"


# -- quantize ----------------------------------------------------------------------------------
def size_ratio(ctx: CheckContext) -> float:
    return load_onnx(ctx, INT8_FILE, "quantize")["bytes"] / load_onnx(ctx, FLOAT_FILE, "quantize")["bytes"]


# <kernel>
@probe(report=VALUE)
def quantize(ns, io):
    report = dict(need(ns, "report"))
    io.save(report={str(k): (float(v) if isinstance(v, (int, float, np.number)) else str(v)) for k, v in report.items()})
# </kernel>


@registry.check("quantize", "smaller")
def quantize_smaller(ctx: CheckContext):
    ratio = size_ratio(ctx)
    if ratio >= SIZE_RATIO_BAR:
        raise CheckFailed(f"{INT8_FILE} is not smaller than the float model" + (" at all." if ratio >= 1 else " by much."),
                          expected=f"size ratio < {SIZE_RATIO_BAR}", found=f"size ratio {ratio:.2f}",
                          hint="quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8) stores the "
                               "weights as int8; check that the file you saved is its output.")
    return f"{INT8_FILE} is {ratio:.2f}x the float model's size"


def holdout_accuracy(session, name: str) -> float:
    X, y = holdout_digits()
    return float((run_session(session, X, name).argmax(1) == y).mean())


@registry.check("quantize", "accuracy_kept")
def quantize_accuracy_kept(ctx: CheckContext):
    float_accuracy = holdout_accuracy(onnx_session(ctx, FLOAT_FILE, "quantize"), FLOAT_FILE)
    int8_accuracy = holdout_accuracy(onnx_session(ctx, INT8_FILE, "quantize"), INT8_FILE)
    if int8_accuracy < float_accuracy - ACCURACY_DROP_BAR:
        raise CheckFailed(f"The quantized model's accuracy collapsed: {int8_accuracy:.3f} against the float model's "
                          f"{float_accuracy:.3f} on the grader's held-out digits.",
                          expected=f">= {float_accuracy - ACCURACY_DROP_BAR:.3f}", found=f"{int8_accuracy:.3f}",
                          hint="Quantize the weights only (quantize_dynamic, weight_type=QuantType.QInt8); "
                               "quantizing the standardisation (Sub/Div) or the logits loses the scale.")
    return f"held-out accuracy {int8_accuracy:.3f} (float {float_accuracy:.3f})"


def median_latency(session: CheckerSession, X: np.ndarray, repeats: int = 30) -> float:
    return session.latency(X, repeats)


@registry.check("quantize", "report")
def quantize_report(ctx: CheckContext):
    report = ctx.outputs(quantize)["report"]
    missing = [k for k in ("size_ratio", "accuracy_change", "latency_ratio") if not isinstance(report.get(k), float)]
    if missing:
        raise CheckFailed(f"report lacks a number for {', '.join(missing)}.", found=str(report),
                          hint="report = {'size_ratio': ..., 'accuracy_change': ..., 'latency_ratio': ...}")
    ratio = size_ratio(ctx)
    if not abs(report["size_ratio"] - ratio) <= 0.02 * ratio:
        raise CheckFailed("The reported size ratio is not the files' (count the .onnx.data file too).",
                          expected=f"{ratio:.3f} (int8 bytes / float bytes)", found=f"{report['size_ratio']:.3f}")
    if not (abs(report["accuracy_change"]) <= 1 and 0 < report["latency_ratio"] < 100):
        raise CheckFailed("The reported accuracy change or latency ratio is not plausible.",
                          expected="accuracy_change in [-1, 1], latency_ratio int8 / float > 0", found=str(report))
    X, _ = holdout_digits()
    X = np.ascontiguousarray(X, np.float32)
    measured = (median_latency(onnx_session(ctx, INT8_FILE, "quantize"), X)
                / median_latency(onnx_session(ctx, FLOAT_FILE, "quantize"), X))
    return (f"size ratio {ratio:.2f}; latency ratio {report['latency_ratio']:.2f} in the notebook, "
            f"{measured:.2f} measured by the grader (batch {len(X)})")
