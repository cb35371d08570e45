"""Checks for module 03 (ONNX export). The learner's .onnx files are opened only by the sandboxed checker: their
graphs as plain data for the structural checks (ops.onnx_graph: external data, the full checker's verdict, names,
nodes, small constants, sizes) and their runs in ONNX Runtime (CheckerSession). The PyTorch reference is module 02's
DigitsNet (polyglot_lab.models), built here from the tensors the checker read out of the notebook's state dict."""
from __future__ import annotations

# <kernel>  imports of the probes (the kernel side, written to the probes file by `make notebooks`)

import numpy as np

from polyglot_lab.probe import ARRAY, VALUE, constructor_recorder, need, probe
# </kernel>

# <notebook>
from pathlib import Path
from types import SimpleNamespace

from polyglot_lab.checking import CheckContext, CheckFailed, CheckSkipped, Registry, describe_array
from polyglot_lab.checking.compare import close, expect_close, looks_like_probabilities, softmax
from polyglot_lab.checking.runtimes import onnxruntime_info, onnxruntime_latency, onnxruntime_outputs, saved_tensors
# </notebook>
from graders.data import holdout_digits
# <notebook>
from polyglot_lab import models

registry = Registry("03_onnx_export")
FLOAT_FILE, STATE_FILE = registry.artifacts("export")
(GUARD_FILE,) = registry.artifacts("control_flow")
(INT8_FILE,) = registry.artifacts("quantize")
INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
SIZE_RATIO_BAR = 0.75      # dynamic int8 keeps about a third of this model's bytes
# </notebook>
ACCURACY_DROP_BAR = 0.03   # int8 may lose this much held-out accuracy, no more
# <notebook>
CPU = ["CPUExecutionProvider"]
ARTIFACT_HINTS = {
    FLOAT_FILE: "export_onnx(model, 'digits.onnx', EXTERNAL_DATA), in the notebook's folder.",
    STATE_FILE: "Keep the notebook's first cells as they are: they save it.",
    GUARD_FILE: "torch.onnx.export(module, (example,), 'guard.onnx', dynamo=True, ...) once the export succeeds.",
    INT8_FILE: "quantize_dynamic('digits.onnx', 'digits_int8.onnx', weight_type=QuantType.QInt8)",
}
# </notebook>


# <kernel>  helpers of this module's probes
def _model_file(io, name: str) -> str:
    """The path of the grader's model `name` (an input file, <name>.onnx)."""
    return str(io.input_file(f"{name}.onnx"))
# </kernel>


# -- loading artifacts -------------------------------------------------------------------------
# <notebook>
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
                          hint=f"Run {name} in ONNX Runtime in the notebook on a batch of {len(X)} rows to see where "
                               "it fails (a shape fixed while exporting, an op this runtime lacks).") from None


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
# </notebook>


# -- export ------------------------------------------------------------------------------------
# <kernel>
@probe(external_data=VALUE)
def export(ns, io):
    io.save(external_data=bool(need(ns, "EXTERNAL_DATA")))
# </kernel>


# <notebook>
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
    X, _ = ctx.sample_digits()
    sizes = (1, int(ctx.rng("export:batch").integers(2, len(X))))
    for size in sizes:
        out = run_session(session, X[:size], FLOAT_FILE)
        if out.shape != (size, 10):
            raise CheckFailed("The output has the wrong shape.", expected=f"({size}, 10)", found=str(out.shape))
    return f"dynamic batch '{dims[0] if dims and dims[0] else '?'}': runs at batch {sizes[0]} and {sizes[1]}"


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
    X, _ = ctx.sample_digits()
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
# </notebook>


# -- small models of the grader's, for validate, inspect and runtime ----------------------------
# <notebook>
OPSETS = range(13, 25)                    # default-domain opsets this ONNX Runtime and ReferenceEvaluator run
INPUT_NAMES = ("features", "x", "inputs", "rows", "data", "vectors", "samples", "batch_in")
OUTPUT_NAMES = ("scores", "probabilities", "y", "out", "classes", "softmax_out")
BATCH_NAMES = ("n", "batch", "N", "rows_count", "b", "num_samples")


def grader_model_specs(ctx: CheckContext) -> list[dict]:
    """Two model designs drawn per run, different in every respect inspect_onnx reports (opset, names, input
    width, depth, classes), so that no hard-coded answer fits both: the second exists for inspect."""
    rng = ctx.rng("grader_model")

    def two(values):
        return [v.item() if hasattr(v, "item") else v for v in rng.choice(np.asarray(values), size=2, replace=False)]
    specs: list[dict] = [{} for _ in range(2)]
    for key, values in (("opset", list(OPSETS)), ("n_in", range(5, 12)), ("depth", (1, 2, 3)),
                        ("n_out", range(3, 7)), ("input", INPUT_NAMES), ("output", OUTPUT_NAMES),
                        ("batch", BATCH_NAMES)):
        for spec, value in zip(specs, two(list(values))):
            spec[key] = value
    for spec in specs:
        spec["widths"] = [int(rng.integers(4, 16)) for _ in range(int(spec["depth"]))] + [int(spec["n_out"])]
        spec["seed"] = int(rng.integers(2**31))
    return specs


def grader_model(ctx: CheckContext, broken: bool = False, variant: int = 0):
    """A small MLP built with onnx.helper (MatMul, Add, Relu, then Softmax); `broken` adds an int64 bias to a
    float tensor (a type error that only the full checker's shape inference sees)."""
    from onnx import TensorProto, helper, numpy_helper

    spec = grader_model_specs(ctx)[variant]
    rng = np.random.default_rng(spec["seed"])
    nodes, initializers, previous, fan_in = [], [], spec["input"], int(spec["n_in"])
    widths = spec["widths"]
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
    nodes.append(helper.make_node("Softmax", [previous], [spec["output"]], axis=-1))
    graph = helper.make_graph(
        nodes, "grader_mlp",
        [helper.make_tensor_value_info(spec["input"], TensorProto.FLOAT, [spec["batch"], int(spec["n_in"])])],
        [helper.make_tensor_value_info(spec["output"], TensorProto.FLOAT, [spec["batch"], widths[-1]])], initializers)
    opsets = [helper.make_opsetid("", int(spec["opset"]))]
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)  # the IR that opset needs, which ONNX Runtime reads
    return model
# </notebook>


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


# <notebook>
@registry.inputs("validate")
def validate_inputs(ctx: CheckContext) -> dict:
    return {"good.onnx": grader_model(ctx).SerializeToString(),
            "broken.onnx": grader_model(ctx, broken=True).SerializeToString()}


@registry.check("validate", "catches_invalid")
def validate_catches_invalid(ctx: CheckContext):
    error = ctx.outputs(validate)["broken_error"]
    if error is None:
        raise CheckFailed("validate_onnx returned normally on a model with a type error (an int64 bias added to "
                          "float activations): it must raise. Only the full checker (full_check=True) or strict "
                          "shape inference sees this error; a try/except that swallows it hides it too.",
                          expected="an exception", found="no exception",
                          hint="onnx.checker.check_model(path, full_check=True), and strict shape inference; let "
                               "their errors propagate.")
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
# </notebook>


# -- inspect -----------------------------------------------------------------------------------
# <notebook>
INSPECTED = ("first", "second")  # two models of the grader's, different in every field, read in one run
# </notebook>


# <kernel>
@probe(reports=VALUE)
def inspect(ns, io):
    inspect_onnx, reports = need(ns, "inspect_onnx"), {}
    for name in io.inputs["models"]:
        report = dict(inspect_onnx(_model_file(io, name)))
        reports[name] = {
            "opset": int(report.get("opset", -1)),
            "inputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("inputs", {})).items()},
            "outputs": {str(k): [d if isinstance(d, str) else int(d) for d in v] for k, v in dict(report.get("outputs", {})).items()},
            "ops": {str(k): int(v) for k, v in dict(report.get("ops", {})).items()},
        }
    io.save(reports=reports)
# </kernel>


# <notebook>
@registry.inputs("inspect")
def inspect_inputs(ctx: CheckContext) -> dict:
    return {"models": list(INSPECTED),
            **{f"{name}.onnx": grader_model(ctx, variant=i).SerializeToString() for i, name in enumerate(INSPECTED)}}
# </notebook>


# The grader's reading of the models is the exercise's answer: these checks run at submission.
def inspect_reference(model) -> dict:
    from collections import Counter

    def shape(value):
        return [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return {"opset": next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "inputs": {v.name: shape(v) for v in model.graph.input},
            "outputs": {v.name: shape(v) for v in model.graph.output},
            "ops": dict(Counter(node.op_type for node in model.graph.node))}


def inspect_mismatch(ctx: CheckContext, keys: tuple[str, ...], hint: str) -> list[dict]:
    """The grader's reading of each model; a CheckFailed naming the first of `keys` the learner's report gets
    wrong, on which model, and whether both models got the same answer (a value typed in, not read)."""
    found = ctx.outputs(inspect)["reports"]
    expected = [inspect_reference(grader_model(ctx, variant=i)) for i in range(len(INSPECTED))]
    for i, name in enumerate(INSPECTED):
        report = found.get(name, {})
        for key in keys:
            if report.get(key) != expected[i][key]:
                typed = len(found) > 1 and all(r.get(key) == report.get(key) for r in found.values())
                raise CheckFailed(f"inspect_onnx's '{key}' is wrong for the grader's {name} model"
                                  + (" (the same answer for two different models: read it from the file, do not "
                                     "type it in)." if typed else "."),
                                  expected=str(expected[i][key]), found=str(report.get(key)), hint=hint)
    return expected


@registry.check("inspect", "opset")
def inspect_opset(ctx: CheckContext):
    expected = inspect_mismatch(ctx, ("opset",), "the version of the default domain ('' or 'ai.onnx') in "
                                                 "model.opset_import")
    return "opsets " + " and ".join(str(e["opset"]) for e in expected)


@registry.check("inspect", "shapes")
def inspect_shapes(ctx: CheckContext):
    expected = inspect_mismatch(ctx, ("inputs", "outputs"), "{value.name: [d.dim_param or d.dim_value for d in "
                                                            "value.type.tensor_type.shape.dim]}")
    return "inputs and outputs: " + "; ".join(f"{e['inputs']} -> {e['outputs']}" for e in expected)


@registry.check("inspect", "ops")
def inspect_ops(ctx: CheckContext):
    expected = inspect_mismatch(ctx, ("ops",), "collections.Counter(node.op_type for node in model.graph.node)")
    return "op histograms: " + "; ".join(str(e["ops"]) for e in expected)


# -- runtime -----------------------------------------------------------------------------------
# <kernel>
@probe(providers_given=VALUE, providers=VALUE, intra_op_threads=VALUE, reference_predictions=ARRAY, evaluators=VALUE,
       reference_error=VALUE)
def runtime(ns, io):
    import onnxruntime
    from onnx.reference import ReferenceEvaluator

    path, inputs = _model_file(io, "good"), io.inputs
    make_session, given, providers, threads = need(ns, "make_session"), [], [], []
    for wanted in inputs["threads"]:  # two thread counts: the session must follow the argument
        with constructor_recorder(onnxruntime.InferenceSession) as sessions:
            session = make_session(path, int(wanted))
        if not isinstance(session, onnxruntime.InferenceSession):
            raise TypeError(f"make_session must return an onnxruntime.InferenceSession, it returned {type(session).__name__}")
        args, kwargs = sessions[-1] if sessions else ((), {})
        chosen = kwargs.get("providers", args[2] if len(args) > 2 else None)
        given.append([p if isinstance(p, str) else str(p[0]) for p in chosen] if chosen else None)
        providers.append(list(session.get_providers()))
        threads.append(int(session.get_session_options().intra_op_num_threads))
    io.save(providers_given=given[0], providers=providers[0], intra_op_threads=threads)
    reference_predict = need(ns, "reference_predict")
    with constructor_recorder(ReferenceEvaluator) as evaluators:
        try:  # an error here costs the reference check only: the session checks above stand
            io.save(reference_predictions=np.asarray(reference_predict(path, inputs["X"]), dtype=np.float64),
                    reference_error=None)
        except Exception as exc:  # noqa: BLE001 - the grader reports it
            io.save(reference_error=f"{type(exc).__name__}: {str(exc).strip()[:300]}")
    io.save(evaluators=len(evaluators))
# </kernel>


# <notebook>
@registry.inputs("runtime")
def runtime_inputs(ctx: CheckContext) -> dict:
    rng = ctx.rng("runtime")
    n_in = grader_model(ctx).graph.input[0].type.tensor_type.shape.dim[1].dim_value
    threads = [int(t) for t in rng.choice(np.arange(1, 9), size=2, replace=False)]  # no one typed-in count fits both
    return {"good.onnx": grader_model(ctx).SerializeToString(), "threads": threads,
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
        fixed = len(set(found)) == 1 and found[0] > 0
        raise CheckFailed("The session does not use the number of threads asked for"
                          + (f": both sessions got {found[0]}, whatever the argument said." if fixed else "."),
                          expected=f"intra_op_num_threads = {wanted[0]}, then {wanted[1]}",
                          found=" then ".join(str(t) for t in found) + (" (0: ONNX Runtime's default)" if 0 in found else ""),
                          hint="options = ort.SessionOptions(); options.intra_op_num_threads = threads (the argument)")
    return f"intra_op_num_threads = {wanted[0]}, then {wanted[1]}, as asked"


@registry.check("runtime", "reference_evaluator")
def runtime_reference_evaluator(ctx: CheckContext):
    import onnxruntime as ort

    out, given = ctx.outputs(runtime), runtime_inputs(ctx)
    if not out["evaluators"]:
        raise CheckFailed("reference_predict does not use onnx.reference.ReferenceEvaluator: it is the second, "
                          "independent oracle.", hint="ReferenceEvaluator(path).run(None, {input_name: X})[0]")
    if out["reference_error"] is not None:
        raise CheckFailed(f"reference_predict raised on the grader's model: {out['reference_error']}",
                          hint="Read the input name from the model (evaluator.input_names[0]) rather than typing it "
                               "in, if the error names an input: the grader's model has its own names.")
    session = ort.InferenceSession(grader_model(ctx).SerializeToString(), providers=CPU)  # the grader's own model
    expected = run_session(session, given["X"], "the grader's model")
    expect_close(out["reference_predictions"], expected, "reference_predict's outputs",
                 mistake="reference_predict's outputs differ from ONNX Runtime's on the grader's model.",
                 hint="Return the first output for X: evaluator.run(None, feed)[0].")
    return "ReferenceEvaluator agrees with ONNX Runtime"


@registry.check("runtime", "cuda_provider")
def runtime_cuda_provider(ctx: CheckContext):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise CheckSkipped("this ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    on_gpu = onnx_session(ctx, FLOAT_FILE, "export", providers=["CUDAExecutionProvider", *CPU])
    X, _ = ctx.sample_digits()
    found, expected = run_session(on_gpu, X, FLOAT_FILE), run_session(onnx_session(ctx, FLOAT_FILE, "export"), X, FLOAT_FILE)
    diff = expect_close(found, expected, f"{FLOAT_FILE} on CUDA", 1e-4,
                        mistake=f"{FLOAT_FILE} gives other outputs on the CUDA execution provider.")
    return f"the CUDA execution provider agrees (max abs diff {diff:.1e})"
# </notebook>


# -- control flow ------------------------------------------------------------------------------
# <notebook>
@registry.check("control_flow", "both_branches")
def control_flow_both_branches(ctx: CheckContext):
    session = onnx_session(ctx, GUARD_FILE, "control_flow")
    X, _ = ctx.sample_digits()
    rng = ctx.rng("control_flow")
    cases = (("raw pixels (0..16)", X, 1 / 16, 1.0), ("already scaled pixels (0..1)", X / 16, 1.0, 1 / 16))
    for what, rows, expected_scale, other_scale in cases:
        rows = rows[rng.choice(len(rows), size=int(rng.integers(3, 40)), replace=False)]
        found = run_session(session, rows, GUARD_FILE)
        if found.shape == rows.shape and np.allclose(found, rows * expected_scale, atol=1e-6):
            continue
        hint = ("torch.cond(x.max() > 1, lambda x: x / 16, lambda x: x.clone(), (x,)) keeps both branches in the "
                "graph (an ONNX If).")
        if found.shape != rows.shape:
            raise CheckFailed(f"{GUARD_FILE} gives an output of another shape for a batch of {what}.",
                              expected=f"x's shape {rows.shape}", found=describe_array(found), hint=hint)
        scale = f"scaled by {np.median(found[rows > 0] / rows[rows > 0]):.4g}"
        if np.allclose(found, rows * other_scale, atol=1e-6):
            raise CheckFailed(f"{GUARD_FILE} gives the other branch's answer for a batch of {what}: the graph holds "
                              "one branch only (the one it saw while exporting) or tests the wrong condition.",
                              expected=f"x scaled by {expected_scale:.4g}", found=scale, hint=hint)
        raise CheckFailed(f"{GUARD_FILE} gives neither branch's answer for a batch of {what}.",
                          expected=f"x scaled by {expected_scale:.4g} (x / 16 when x.max() > 1, else x unchanged)",
                          found=scale if np.all(rows >= 0) else describe_array(found), hint=hint)
    return "both branches survive the export, at batch sizes it was not exported with"


@registry.check("control_flow", "dynamic_batch")
def control_flow_dynamic_batch(ctx: CheckContext):
    dims = load_onnx(ctx, GUARD_FILE, "control_flow")["first_input_dims"]
    if dims and isinstance(dims[0], int):
        raise CheckFailed(f"guard.onnx's batch size is fixed at {dims[0]}: the model takes no other batch size.",
                          expected="a symbolic first dimension (dim_param, such as 'batch')", found=f"dim_value {dims[0]}",
                          hint="torch.onnx.export(..., dynamic_shapes={'x': {0: torch.export.Dim('batch')}})")
    X, _ = ctx.sample_digits()
    size = int(ctx.rng("control_flow:batch").integers(2, len(X)))
    found = run_session(onnx_session(ctx, GUARD_FILE, "control_flow"), X[:size], GUARD_FILE)
    if found.shape[0] != size:
        raise CheckFailed(f"guard.onnx answers a batch of {size} rows with {found.shape[0]}.",
                          expected=f"{size} rows", found=describe_array(found))
    return f"dynamic batch '{dims[0] if dims and dims[0] else '?'}': runs at batch {size}"
# </notebook>


# -- quantize ----------------------------------------------------------------------------------
# <notebook>
INTEGER_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul",
               "QLinearConv", "QGemm", "QAttention", "DynamicQuantizeLSTM", "DequantizeLinear"}
FLOAT_MATMULS = {"MatMul", "Gemm", "Conv"}
LATENCY_FACTOR = 2.0          # a reported latency ratio must be within this factor of the grader's
LATENCY_NOISE = 1.25          # ratios within this factor of 1 have no clear side on a shared machine
# </notebook>
ACCURACY_CHANGE_TOLERANCE = 0.03  # the notebook's X_val and the grader's held-out digits differ by a few rows


# <notebook>
def size_ratio(ctx: CheckContext) -> float:
    return load_onnx(ctx, INT8_FILE, "quantize")["bytes"] / load_onnx(ctx, FLOAT_FILE, "quantize")["bytes"]
# </notebook>


# <kernel>
def _number(value):
    """A report's figure as a float (Python, NumPy or a 0-d tensor), anything else as its text."""
    try:
        return float(value) if not isinstance(value, (str, bytes)) and np.ndim(value) == 0 else str(value)
    except (TypeError, ValueError):
        return str(value)


@probe(report=VALUE)
def quantize(ns, io):
    report = dict(need(ns, "report"))
    io.save(report={str(k): _number(v) for k, v in report.items()})
# </kernel>


# <notebook>
@registry.check("quantize", "smaller")
def quantize_smaller(ctx: CheckContext):
    ratio = size_ratio(ctx)
    if ratio >= SIZE_RATIO_BAR:
        raise CheckFailed(f"{INT8_FILE} is not smaller than the float model" + (" at all." if ratio >= 1 else " by much."),
                          expected=f"size ratio < {SIZE_RATIO_BAR}", found=f"size ratio {ratio:.2f}",
                          hint="quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8) stores the "
                               "weights as int8; check that the file you saved is its output.")
    return f"{INT8_FILE} is {ratio:.2f}x the float model's size"


def stored_weights(graph: dict) -> set[str]:
    """Tensors the nodes read that no node makes and no one feeds: the file's initializers."""
    made = {name for node in graph["nodes"] for name in node["outputs"]}
    fed = {i["name"] for i in graph["inputs"]}
    return {name for node in graph["nodes"] for name in node["inputs"] if name and name not in made | fed}


@registry.check("quantize", "int8_weights")
def quantize_int8_weights(ctx: CheckContext):
    graph = load_onnx(ctx, INT8_FILE, "quantize")
    integer = [node["op"] for node in graph["nodes"] if node["op"] in INTEGER_OPS]
    weights = stored_weights(graph)
    still_float = [node["op"] for node in graph["nodes"]
                   if node["op"] in FLOAT_MATMULS and len(node["inputs"]) > 1 and node["inputs"][1] in weights]
    if not integer:
        ops = sorted({node["op"] for node in graph["nodes"]})
        raise CheckFailed(f"{INT8_FILE} holds no integer operation: its matrix multiplications read float weights "
                          f"stored in the file ({len(still_float)} of them), so it is not an int8 model, whatever "
                          "its size (float16 weights, or fewer of them, make a file smaller too).",
                          expected="integer ops on int8 weights (MatMulInteger, DynamicQuantizeLinear, ...)",
                          found=f"op types {ops[:12]}",
                          hint="quantize_dynamic('digits.onnx', 'digits_int8.onnx', weight_type=QuantType.QInt8)")
    # The weights the integer ops read (MatMulInteger/ConvInteger's second input, DequantizeLinear's first) must be
    # stored as INT8: QUInt8 also quantizes, but it is not what the exercise asks.
    weight_inputs = {node["inputs"][1] for node in graph["nodes"]
                     if node["op"] in ("MatMulInteger", "ConvInteger") and len(node["inputs"]) > 1}
    weight_inputs |= {node["inputs"][0] for node in graph["nodes"] if node["op"] == "DequantizeLinear"}
    types = graph.get("initializer_types", {})
    not_int8 = sorted({types[name] for name in weight_inputs if name in types} - {"INT8"})
    if not_int8:
        raise CheckFailed(f"{INT8_FILE} stores its quantized weights as {', '.join(not_int8)}, not INT8 (QInt8).",
                          expected="weight_type=QuantType.QInt8: INT8 weights", found=", ".join(not_int8),
                          hint="quantize_dynamic(..., weight_type=QuantType.QInt8)")
    return (f"{INT8_FILE} multiplies by integer weights ({len(integer)} integer ops"
            + (f"; {len(still_float)} float matmuls kept)" if still_float else ")"))
# </notebook>


def holdout_accuracy(session, name: str) -> float:
    X, y = holdout_digits()
    return float((run_session(session, X, name).argmax(1) == y).mean())


def accuracies(ctx: CheckContext) -> tuple[float, float]:
    """Held-out accuracy of the float and the int8 model, measured by the grader."""
    return ctx.cached("accuracies", lambda: (
        holdout_accuracy(onnx_session(ctx, FLOAT_FILE, "quantize"), FLOAT_FILE),
        holdout_accuracy(onnx_session(ctx, INT8_FILE, "quantize"), INT8_FILE)))


@registry.check("quantize", "accuracy_kept")
def quantize_accuracy_kept(ctx: CheckContext):
    float_accuracy, int8_accuracy = accuracies(ctx)
    if int8_accuracy < float_accuracy - ACCURACY_DROP_BAR:
        raise CheckFailed(f"The quantized model's accuracy collapsed: {int8_accuracy:.3f} against the float model's "
                          f"{float_accuracy:.3f} on the grader's held-out digits.",
                          expected=f">= {float_accuracy - ACCURACY_DROP_BAR:.3f}", found=f"{int8_accuracy:.3f}",
                          hint="Quantize the weights only (quantize_dynamic, weight_type=QuantType.QInt8); "
                               "quantizing the standardisation (Sub/Div) or the logits loses the scale.")
    return f"held-out accuracy {int8_accuracy:.3f} (float {float_accuracy:.3f})"


# <notebook>
def measured_latency_ratio(ctx: CheckContext) -> float:
    """int8 / float median latency on the held-out digits, in the checker: three interleaved rounds, their median
    ratio, so that a burst of load on a shared machine skews one round, not the answer."""
    def measure():
        X = np.ascontiguousarray(ctx.sample_digits()[0], np.float32)
        int8, float_ = onnx_session(ctx, INT8_FILE, "quantize"), onnx_session(ctx, FLOAT_FILE, "quantize")
        return float(np.median([int8.latency(X, 20) / float_.latency(X, 20) for _ in range(3)]))
    return ctx.cached("latency_ratio", measure)


def reported(ctx: CheckContext, key: str) -> float:
    report = ctx.outputs(quantize)["report"]
    value = report.get(key)
    if not isinstance(value, float) or not np.isfinite(value):
        raise CheckFailed(f"report lacks a number for {key}.", expected=f"report['{key}'] a number",
                          found=str(report)[:300],
                          hint="report = {'size_ratio': ..., 'accuracy_change': ..., 'latency_ratio': ...}")
    return value


def near(a: float, b: float, rel: float = 0.02) -> bool:
    return abs(a - b) <= rel * abs(b)


@registry.check("quantize", "report_size")
def quantize_report_size(ctx: CheckContext):
    found, ratio = reported(ctx, "size_ratio"), size_ratio(ctx)
    if not near(found, ratio):
        files_only = (ctx.workdir / INT8_FILE).stat().st_size / (ctx.workdir / FLOAT_FILE).stat().st_size
        with_data = data_files(ctx, FLOAT_FILE, "quantize") + data_files(ctx, INT8_FILE, "quantize")
        cause = (" It is the float model over the int8 one: the ratio asked is int8 / float." if near(found, 1 / ratio)
                 else f" It is the ratio of the .onnx files only: count {with_data[0]} too, where the weights are."
                 if with_data and near(found, files_only) else "")
        raise CheckFailed("The reported size ratio is not the files'." + cause,
                          expected=f"{ratio:.3f} (int8 bytes / float bytes, within 2%)", found=f"{found:.3f}")
    return f"size ratio {found:.3f}, as the files say"
# </notebook>


@registry.check("quantize", "report_accuracy")
def quantize_report_accuracy(ctx: CheckContext):
    found = reported(ctx, "accuracy_change")
    float_accuracy, int8_accuracy = accuracies(ctx)
    change = int8_accuracy - float_accuracy
    if abs(found - change) > ACCURACY_CHANGE_TOLERANCE:
        cause = (" It looks like an accuracy, not the change between the two models." if found > 0.5
                 else " It looks like percentage points: the change asked is a fraction (int8 minus float)."
                 if abs(found / 100 - change) <= ACCURACY_CHANGE_TOLERANCE and abs(found) > 1
                 else " Its sign is the other way: the change asked is int8 minus float."
                 if abs(-found - change) <= ACCURACY_CHANGE_TOLERANCE else "")
        raise CheckFailed("The reported accuracy change is not what the grader measures for the two files." + cause,
                          expected=f"{change:+.3f} +- {ACCURACY_CHANGE_TOLERANCE} (int8 {int8_accuracy:.3f} minus "
                                   f"float {float_accuracy:.3f}, on the grader's held-out digits)",
                          found=f"{found:+.3f}",
                          hint="accuracy of digits_int8.onnx minus accuracy of digits.onnx, both on X_val")
    return f"accuracy change {found:+.3f} (the grader measures {change:+.3f})"


# <notebook>
@registry.check("quantize", "report_latency")
def quantize_report_latency(ctx: CheckContext):
    found = reported(ctx, "latency_ratio")
    measured = measured_latency_ratio(ctx)
    if found <= 0:
        raise CheckFailed("The reported latency ratio is not a ratio of two times.",
                          expected=f"int8 / float median latency, about {measured:.2f}", found=f"{found:.3g}")
    clear_side = max(measured, 1 / measured) > LATENCY_NOISE
    other_side = clear_side and (found > 1) != (measured > 1)
    far = max(found / measured, measured / found) > LATENCY_FACTOR
    if other_side or far:
        inverted = max(found * measured, 1 / (found * measured)) <= LATENCY_FACTOR and (found > 1) != (measured > 1)
        cause = (" It looks inverted (float / int8): the ratio asked is int8 latency over float latency." if inverted
                 else " It is on the other side of 1 from the grader's measurement." if other_side
                 else f" It is more than {LATENCY_FACTOR:g}x away from the grader's measurement.")
        raise CheckFailed("The reported latency ratio does not match the grader's own measurement." + cause,
                          expected=f"about {measured:.2f} (int8 / float, measured by the grader in this run: within "
                                   f"{LATENCY_FACTOR:g}x, and below 1 if it is below {1 / LATENCY_NOISE:.2f}, "
                                   f"above 1 if above {LATENCY_NOISE:.2f})",
                          found=f"{found:.2f}",
                          hint="median_latency(int8_session, X_val) / median_latency(float_session, X_val), after a "
                               "warm-up")
    return f"latency ratio {found:.2f} in the notebook, {measured:.2f} measured by the grader"
# </notebook>
