"""Module 03's typical mistakes, each a few-line learner function that violates one requirement, run as the
notebook runs it (its files written, then the exercise's real probe), and costing only that requirement's checks
with a message that names it. The model is a quickly trained DigitsNet."""
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from graders.checks import CheckContext
from graders.checks import m03_onnx_export as m03
from graders.data import holdout_digits
from mistakes import costs_only, craft, fails_with, run_probe
from polyglot_lab import models
from polyglot_lab.data import digits

PROBES = "polyglot_lab.probes.m03_onnx_export"
EXPORT_CHECKS = {"loads", "names", "dynamic_batch", "eval_mode", "parity", "external_data_choice"}
CPU = ["CPUExecutionProvider"]


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=5, device="cpu")


@pytest.fixture(scope="module")
def trained():
    X, y = digits()
    return models.train_digits_net(X, y, epochs=4)


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m03.registry, PROBES, exercise, **namespace)


# -- export: the learner's export_onnx, as the notebook calls it -----------------------------------
def export_onnx(model, path, external_data):  # the master's
    model.eval()
    torch.onnx.export(model, (torch.rand(2, 64) * 16,), path, dynamo=True, input_names=["pixels"],
                      output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                      external_data=external_data, verbose=False)


def notebook_export(ctx, model, export=export_onnx, external_data=False, declared=None, name=m03.FLOAT_FILE):
    """The notebook's export cells: the state dict saved, export_onnx called, then the probe (EXTERNAL_DATA)."""
    torch.save(model.state_dict(), ctx.workdir / m03.STATE_FILE)
    export(model, str(ctx.workdir / name), external_data)
    model.eval()
    probe_with(ctx, "export", EXTERNAL_DATA=external_data if declared is None else declared)


def export_in_train_mode(model, path, external_data):
    model.train()  # forgot model.eval(): the exporter records the mode it sees
    torch.onnx.export(model, (torch.rand(2, 64) * 16,), path, dynamo=True, input_names=["pixels"],
                      output_names=["logits"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                      external_data=external_data, verbose=False)


def export_fixed_batch(model, path, external_data):
    model.eval()
    torch.onnx.export(model, (torch.rand(2, 64) * 16,), path, dynamo=True, input_names=["pixels"],
                      output_names=["logits"], external_data=external_data, verbose=False)


def exporter_named(input_name="pixels", output_name="logits"):
    def export(model, path, external_data):
        model.eval()
        torch.onnx.export(model, (torch.rand(2, 64) * 16,), path, dynamo=True, input_names=[input_name],
                          output_names=[output_name], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
                          external_data=external_data, verbose=False)
    return export


class Softmaxed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


def export_probabilities(model, path, external_data):
    export_onnx(Softmaxed(model), path, external_data)


def export_ignoring_the_flag(model, path, external_data):
    export_onnx(model, path, False)  # EXTERNAL_DATA never reaches the exporter


def export_a_fresh_model(model, path, external_data):
    export_onnx(models.digits_net(model.mean, model.std), path, external_data)  # not the trained one


@pytest.mark.parametrize("external", [False, True])
def test_right_export_passes(ctx, trained, external):
    notebook_export(ctx, trained, external_data=external)
    costs_only(ctx, m03.registry, "export", set())
    assert (ctx.workdir / "digits.onnx.data").exists() == external


def test_external_data_missing_beside_the_model(ctx, trained):
    notebook_export(ctx, trained, external_data=True)
    (ctx.workdir / "digits.onnx.data").unlink()  # the .onnx file shipped alone
    costs_only(ctx, m03.registry, "export", EXPORT_CHECKS, "digits.onnx.data", "missing beside it")
    failure = fails_with(m03.export_loads, ctx, "missing beside it")
    assert ".onnx.data" in failure.hint


def test_not_an_onnx_file(ctx, trained):
    def export_garbage(model, path, external_data):
        Path(path).write_bytes(b"\x00\x01 not a model")
    notebook_export(ctx, trained, export=export_garbage)
    costs_only(ctx, m03.registry, "export", EXPORT_CHECKS, "digits.onnx is not an ONNX model")


def test_exported_in_train_mode(ctx, trained):
    notebook_export(ctx, trained, export=export_in_train_mode)
    costs_only(ctx, m03.registry, "export", "eval_mode", "exported in train mode", "Dropout")


def test_fixed_batch_costs_only_the_batch_check(ctx, trained):
    notebook_export(ctx, trained, export=export_fixed_batch)
    costs_only(ctx, m03.registry, "export", "dynamic_batch", "fixed at 2")  # parity runs in chunks of 2


@pytest.mark.parametrize("names, wrong", [(("input", "logits"), "input"), (("pixels", "output"), "output")])
def test_wrong_tensor_names(ctx, trained, names, wrong):
    notebook_export(ctx, trained, export=exporter_named(*names))
    costs_only(ctx, m03.registry, "export", "names", f"{wrong} name")
    failure = fails_with(m03.export_names, ctx, f"{wrong} name")
    assert repr([names[0]] if wrong == "input" else [names[1]])[1:-1] in failure.found


def test_probabilities_where_logits_were_asked(ctx, trained):
    notebook_export(ctx, trained, export=export_probabilities)
    costs_only(ctx, m03.registry, "export", "parity", "probabilities where logits were asked")


def test_weights_not_the_saved_ones(ctx, trained):
    notebook_export(ctx, trained, export=export_a_fresh_model)
    costs_only(ctx, m03.registry, "export", "parity", "differ from PyTorch's")


def test_external_data_not_as_declared(ctx, trained):
    notebook_export(ctx, trained, export=export_ignoring_the_flag, external_data=True)
    costs_only(ctx, m03.registry, "export", "external_data_choice", "EXTERNAL_DATA is True")
    notebook_export(ctx, trained, external_data=True, declared=False)
    costs_only(ctx, m03.registry, "export", "external_data_choice", "EXTERNAL_DATA is False")


def test_training_nodes_reads_the_mode_from_the_graph(tmp_path):
    """From the graph as the checker reads it: the Dropout's training_mode input is a constant it hands back."""
    from onnx import TensorProto, helper

    def mode(training: bool) -> list[str]:
        graph = helper.make_graph(
            [helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop")], "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
            [helper.make_tensor("ratio", TensorProto.FLOAT, [], [0.1]),
             helper.make_tensor("training", TensorProto.BOOL, [], [training])])
        folder = tmp_path / str(training)
        folder.mkdir()
        onnx.save(helper.make_model(graph), folder / m03.FLOAT_FILE)
        return m03.training_nodes(m03.load_onnx(CheckContext(folder, seed=1, device="cpu"), m03.FLOAT_FILE, "export"))

    assert mode(False) == []
    assert mode(True) == ["Dropout 'drop'"]


# -- validate ----------------------------------------------------------------------------------
def validate_full(path):
    onnx.checker.check_model(path, full_check=True)
    return onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)


def validate_plain(path):  # the structural checker only, and lenient inference
    onnx.checker.check_model(path)
    return onnx.shape_inference.infer_shapes(onnx.load(path))


def validate_swallowing(path):  # the full checker, but its error only printed
    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as error:  # noqa: BLE001 - the mistake: the error is only printed
        print("invalid:", error)
    return onnx.shape_inference.infer_shapes(onnx.load(path))


def validate_no_inference(path):
    onnx.checker.check_model(path, full_check=True)
    return onnx.load(path)


def test_validate(ctx):
    probe_with(ctx, "validate", validate_onnx=validate_full)
    costs_only(ctx, m03.registry, "validate", set())


@pytest.mark.parametrize("validate_onnx", [validate_plain, validate_swallowing])
def test_validator_that_lets_a_type_error_through(ctx, validate_onnx):
    probe_with(ctx, "validate", validate_onnx=validate_onnx)
    costs_only(ctx, m03.registry, "validate", "catches_invalid", "returned normally on a model with a type error")
    assert m03.validate_catches_invalid  # named for the lint: the check this mutant costs


def test_validator_that_returns_the_model_as_loaded(ctx):
    probe_with(ctx, "validate", validate_onnx=validate_no_inference)
    costs_only(ctx, m03.registry, "validate", "shapes_inferred", "intermediate shapes inferred")
    fails_with(m03.validate_shapes_inferred, ctx, "intermediate shapes")


# -- inspect -----------------------------------------------------------------------------------
def inspector(symbolic=True, opset=None, counts=True, outputs_from="output"):
    def inspect_onnx(path):
        model = onnx.load(path)

        def shape(value):
            return [(d.dim_param or d.dim_value) if symbolic else d.dim_value for d in value.type.tensor_type.shape.dim]
        ops = {}
        for node in model.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1 if counts else 1
        return {"opset": opset or model.opset_import[0].version, "inputs": {v.name: shape(v) for v in model.graph.input},
                "outputs": {v.name: shape(v) for v in getattr(model.graph, outputs_from)}, "ops": ops}
    return inspect_onnx


def test_inspect_right(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector())
    costs_only(ctx, m03.registry, "inspect", set())


def test_inspect_symbolic_dimensions_as_zero(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector(symbolic=False))
    costs_only(ctx, m03.registry, "inspect", "shapes", "'inputs' is wrong")
    failure = fails_with(m03.inspect_shapes, ctx, "'inputs' is wrong")
    assert ", 0," in failure.found or "[0," in failure.found  # the symbolic batch read as 0


def test_inspect_outputs_read_from_the_inputs(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector(outputs_from="input"))
    costs_only(ctx, m03.registry, "inspect", "shapes", "'outputs' is wrong")


def test_inspect_opset_typed_in(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector(opset=17))
    costs_only(ctx, m03.registry, "inspect", "opset", "'opset' is wrong", "the same answer for two different models")
    fails_with(m03.inspect_opset, ctx, "read it from the file")


def test_inspect_op_types_without_counts(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector(counts=False))
    costs_only(ctx, m03.registry, "inspect", "ops", "'ops' is wrong")
    fails_with(m03.inspect_ops, ctx, "'ops' is wrong")


def test_inspect_models_differ_in_every_field(ctx):
    """A typed-in answer can match one of the two models, never both."""
    first, second = (m03.inspect_reference(m03.grader_model(ctx, variant=i)) for i in (0, 1))
    assert all(first[key] != second[key] for key in ("opset", "inputs", "outputs", "ops"))


# -- runtime -----------------------------------------------------------------------------------
def session_maker(providers=True, threads=True, fixed_threads=None):
    def make_session(path, n_threads):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = fixed_threads or n_threads
        return ort.InferenceSession(path, options, **({"providers": CPU} if providers else {}))
    return make_session


def predict_with_reference(path, X):
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(path)
    return evaluator.run(None, {evaluator.input_names[0]: X})[0]


def predict_with_runtime(path, X):
    session = ort.InferenceSession(path, providers=CPU)
    return session.run(None, {session.get_inputs()[0].name: X})[0]


def predict_with_a_guessed_name(path, X):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(path).run(None, {"input_0": X})[0]


def predict_every_output(path, X):
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(path)
    return evaluator.run(None, {evaluator.input_names[0]: X})  # the list of outputs, not the first


def test_runtime_right(ctx):
    probe_with(ctx, "runtime", make_session=session_maker(), reference_predict=predict_with_reference)
    costs_only(ctx, m03.registry, "runtime", set())


def test_runtime_providers_left_to_onnx_runtime(ctx):
    probe_with(ctx, "runtime", make_session=session_maker(providers=False), reference_predict=predict_with_reference)
    costs_only(ctx, m03.registry, "runtime", "explicit_providers", "leaves the choice of execution providers")
    fails_with(m03.runtime_explicit_providers, ctx, "leaves the choice")


@pytest.mark.parametrize("maker, words", [(session_maker(threads=False), "0: ONNX Runtime's default"),
                                          (session_maker(fixed_threads=2), "both sessions got 2")])
def test_runtime_threads_not_the_argument(ctx, maker, words):
    probe_with(ctx, "runtime", make_session=maker, reference_predict=predict_with_reference)
    costs_only(ctx, m03.registry, "runtime", "threads", "number of threads")
    failure = fails_with(m03.runtime_threads, ctx, "number of threads")
    assert words in failure.message + failure.found


def test_runtime_threads_drawn_so_no_count_fits_twice(ctx):
    wanted = m03.runtime_inputs(ctx)["threads"]
    assert len(set(wanted)) == 2 and all(1 <= t <= 8 for t in wanted)


@pytest.mark.parametrize("predict, words", [
    (predict_with_runtime, "does not use onnx.reference.ReferenceEvaluator"),
    (predict_with_a_guessed_name, "reference_predict raised"),
    (predict_every_output, "wrong shape"),
])
def test_runtime_reference_mistakes(ctx, predict, words):
    probe_with(ctx, "runtime", make_session=session_maker(), reference_predict=predict)
    costs_only(ctx, m03.registry, "runtime", "reference_evaluator", words)
    fails_with(m03.runtime_reference_evaluator, ctx, words)


def test_cuda_provider_skips_without_it(ctx, trained):
    from graders.checks import CheckSkipped
    notebook_export(ctx, trained)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert m03.runtime_cuda_provider(ctx)
    else:
        with pytest.raises(CheckSkipped, match="no CUDAExecutionProvider"):
            m03.runtime_cuda_provider(ctx)


# -- control flow ------------------------------------------------------------------------------
class Guard(nn.Module):
    def forward(self, x):
        return torch.cond(x.max() > 1.0, lambda x: x / 16.0, lambda x: x.clone(), (x,))


class AlwaysDivide(nn.Module):  # the branch the raw example took, baked in
    def forward(self, x):
        return x / 16.0


class WrongScale(nn.Module):
    def forward(self, x):
        return torch.cond(x.max() > 1.0, lambda x: x / 255.0, lambda x: x.clone(), (x,))


def export_guard(ctx, module, dynamic=True):
    torch.onnx.export(module, (torch.rand(2, 64) * 16,), str(ctx.workdir / m03.GUARD_FILE), dynamo=True,
                      verbose=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}} if dynamic else None,
                      external_data=False)
    ctx.cache.clear()


def test_control_flow_right(ctx):
    export_guard(ctx, Guard())
    costs_only(ctx, m03.registry, "control_flow", set())


@pytest.mark.parametrize("module, words", [(AlwaysDivide(), ["already scaled pixels", "other branch's answer"]),
                                           (WrongScale(), ["raw pixels", "neither branch's answer"])])
def test_control_flow_wrong_answers(ctx, module, words):
    export_guard(ctx, module)
    costs_only(ctx, m03.registry, "control_flow", "both_branches", *words)
    fails_with(m03.control_flow_both_branches, ctx, *words)


def test_control_flow_fixed_batch(ctx):
    export_guard(ctx, Guard(), dynamic=False)
    costs_only(ctx, m03.registry, "control_flow", "dynamic_batch", "fixed at 2")
    fails_with(m03.control_flow_dynamic_batch, ctx, "fixed at 2")


def test_control_flow_never_exported(ctx):
    costs_only(ctx, m03.registry, "control_flow", {"both_branches", "dynamic_batch"}, "guard.onnx was not found")
    failure = fails_with(m03.control_flow_both_branches, ctx, "guard.onnx was not found")
    assert "torch.onnx.export" in failure.hint


# -- quantize: the learner's files and report, with the grader's latency measurement pinned -----------
TIMINGS = {m03.INT8_FILE: 0.6e-3, m03.FLOAT_FILE: 1.0e-3}  # seconds: timing is not reproducible on a shared machine


@pytest.fixture
def pinned_latency(monkeypatch):
    """The grader's latency measurement (in the checker) and the learner's both read these timings."""
    monkeypatch.setattr(m03, "onnxruntime_latency", lambda ctx, path, *args, **kwargs: TIMINGS[Path(path).name])
    return lambda path: TIMINGS[Path(path).name]


def model_bytes(path):
    data = str(path) + ".data"
    return os.path.getsize(path) + (os.path.getsize(data) if os.path.exists(data) else 0)


def accuracy(path, X, y):
    session = ort.InferenceSession(str(path), providers=CPU)
    return float((session.run(None, {session.get_inputs()[0].name: X})[0].argmax(1) == y).mean())


def report_right(folder, latency, X, y):  # the master's report
    float_path, int8_path = folder / m03.FLOAT_FILE, folder / m03.INT8_FILE
    return {"size_ratio": model_bytes(int8_path) / model_bytes(float_path),
            "accuracy_change": accuracy(int8_path, X, y) - accuracy(float_path, X, y),
            "latency_ratio": latency(int8_path) / latency(float_path)}


def report_latency_inverted(folder, latency, X, y):
    return {**report_right(folder, latency, X, y),
            "latency_ratio": latency(folder / m03.FLOAT_FILE) / latency(folder / m03.INT8_FILE)}


def report_size_inverted(folder, latency, X, y):
    return {**report_right(folder, latency, X, y),
            "size_ratio": model_bytes(folder / m03.FLOAT_FILE) / model_bytes(folder / m03.INT8_FILE)}


def report_size_without_data(folder, latency, X, y):  # os.path.getsize of the .onnx files only
    return {**report_right(folder, latency, X, y),
            "size_ratio": os.path.getsize(folder / m03.INT8_FILE) / os.path.getsize(folder / m03.FLOAT_FILE)}


def report_int8_accuracy(folder, latency, X, y):
    return {**report_right(folder, latency, X, y), "accuracy_change": accuracy(folder / m03.INT8_FILE, X, y)}


def report_without_latency(folder, latency, X, y):
    report = report_right(folder, latency, X, y)
    del report["latency_ratio"]
    return report


def quantize_right(src, dst):
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)


def convert_to_float16(src, dst):
    """Half the bytes, but no int8: float16 weights cast back to float32 where they are used."""
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(src)
    for weight in [w for w in model.graph.initializer if np.prod(w.dims) > 16]:
        half = numpy_helper.from_array(numpy_helper.to_array(weight).astype(np.float16), weight.name + "_fp16")
        model.graph.initializer.remove(weight)
        model.graph.initializer.append(half)
        model.graph.node.insert(0, helper.make_node("Cast", [half.name], [weight.name], to=TensorProto.FLOAT))
    onnx.save(model, dst)


def notebook_quantize(ctx, trained, quantize=quantize_right, report=report_right, latency=None, external_data=False,
                      source=None):
    """The notebook's cells: digits.onnx exported, digits_int8.onnx written, the report measured (on the grader's
    held-out digits here, so that the test's numbers are exact), then the quantize probe."""
    notebook_export(ctx, trained, external_data=external_data)
    source = source or str(ctx.workdir / m03.FLOAT_FILE)
    quantize(source, str(ctx.workdir / m03.INT8_FILE))
    X, y = holdout_digits()
    probe_with(ctx, "quantize", report=report(ctx.workdir, latency, X, y))


def test_right_quantization(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, latency=pinned_latency)
    results = costs_only(ctx, m03.registry, "quantize", set())
    assert "measured by the grader" in results["report_latency"].message


def test_quantized_copy_is_neither_smaller_nor_int8(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, quantize=shutil.copy, latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", {"smaller", "int8_weights"}, m03.INT8_FILE)
    fails_with(m03.quantize_smaller, ctx, "not smaller than the float model at all")
    fails_with(m03.quantize_int8_weights, ctx, "holds no integer operation")


def test_float16_is_smaller_but_not_int8(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, quantize=convert_to_float16, latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", "int8_weights", "holds no integer operation", "not an int8 model")


def test_uint8_weights_are_quantized_but_not_as_asked(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, quantize=lambda src, dst: quantize_dynamic(src, dst, weight_type=QuantType.QUInt8),
                      latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", "int8_weights", "UINT8, not INT8 (QInt8)")


def test_quantized_model_whose_accuracy_collapsed(ctx, trained, pinned_latency):
    untrained = models.digits_net(trained.mean, trained.std).eval()
    export_onnx(untrained, str(ctx.workdir / "untrained.onnx"), False)
    notebook_quantize(ctx, trained, latency=pinned_latency, source=str(ctx.workdir / "untrained.onnx"))
    costs_only(ctx, m03.registry, "quantize", "accuracy_kept", "accuracy collapsed")
    fails_with(m03.quantize_accuracy_kept, ctx, "accuracy collapsed")


def test_latency_ratio_inverted(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, report=report_latency_inverted, latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", "report_latency", "does not match the grader's own measurement",
               "looks inverted")
    fails_with(m03.quantize_report_latency, ctx, "looks inverted")


def test_latency_ratio_missing(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, report=report_without_latency, latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", "report_latency", "lacks a number for latency_ratio")


@pytest.mark.parametrize("report, external, words", [
    (report_size_inverted, False, "float model over the int8 one"),
    (report_size_without_data, True, "the .onnx files only"),
])
def test_size_ratio_not_the_files(ctx, trained, pinned_latency, report, external, words):
    notebook_quantize(ctx, trained, report=report, latency=pinned_latency, external_data=external)
    costs_only(ctx, m03.registry, "quantize", "report_size", "size ratio is not the files'", words)
    fails_with(m03.quantize_report_size, ctx, words)


def test_accuracy_reported_instead_of_its_change(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, report=report_int8_accuracy, latency=pinned_latency)
    costs_only(ctx, m03.registry, "quantize", "report_accuracy", "accuracy change is not what the grader measures",
               "looks like an accuracy")
    fails_with(m03.quantize_report_accuracy, ctx, "looks like an accuracy")


def test_a_typed_in_size_ratio(ctx, trained, pinned_latency):
    notebook_quantize(ctx, trained, latency=pinned_latency)
    craft(ctx, m03.quantize, report={**ctx.outputs(m03.quantize)["report"], "size_ratio": 0.25})
    fails_with(m03.quantize_report_size, ctx, "size ratio is not the files'")


def test_grader_measures_the_latency_ratio_itself(ctx, trained):
    """Unpinned: the grader's own int8 / float timing, in the checker, is a positive ratio."""
    notebook_export(ctx, trained)
    quantize_right(str(ctx.workdir / m03.FLOAT_FILE), str(ctx.workdir / m03.INT8_FILE))
    assert 0.05 < m03.measured_latency_ratio(ctx) < 20
