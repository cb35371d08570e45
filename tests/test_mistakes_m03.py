"""Module 03's typical mistakes, each caught with a message that names it: small ONNX files exported
from a quickly trained DigitsNet (right and wrong), and few-line learner functions run through the probes."""
import shutil

import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from graders.checks import CheckContext
from graders.checks import m03_onnx_export as m03
from mistakes import craft, fails_with, run_probe
from polyglot_lab import models
from polyglot_lab.data import digits

PROBES = "polyglot_lab.probes.m03_onnx_export"
EXPORT_CHECKS = [m03.export_loads, m03.export_names, m03.export_dynamic_batch, m03.export_eval_mode,
                 m03.export_parity, m03.export_external_data_choice]


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=5, device="cpu")


@pytest.fixture(scope="module")
def trained():
    X, y = digits()
    return models.train_digits_net(X, y, epochs=4)


class Softmaxed(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x).softmax(1)


def export(ctx, model, name=m03.FLOAT_FILE, *, external=False, dynamic=True, input_name="pixels", train=False,
           softmax=False, declared=None):
    """What the notebook's export cell writes: the state dict, the ONNX file, and EXTERNAL_DATA."""
    torch.save(model.state_dict(), ctx.workdir / m03.STATE_FILE)
    module = Softmaxed(model) if softmax else model
    module.train(train)
    example = (torch.rand(2, 64) * 16,)
    torch.onnx.export(module, example, str(ctx.workdir / name), dynamo=True, input_names=[input_name],
                      output_names=["logits"], external_data=external, verbose=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}} if dynamic else None)
    model.eval()
    craft(ctx, m03.export, external_data=external if declared is None else declared)
    ctx.cache.clear()


# -- export ------------------------------------------------------------------------------------
@pytest.mark.parametrize("external", [False, True])
def test_right_export_passes(ctx, trained, external):
    export(ctx, trained, external=external)
    for check in EXPORT_CHECKS:
        assert check(ctx)
    assert (ctx.workdir / "digits.onnx.data").exists() == external


def test_external_data_missing_beside_the_model(ctx, trained):
    export(ctx, trained, external=True)
    (ctx.workdir / "digits.onnx.data").unlink()
    for check in (m03.export_loads, m03.export_parity):
        failure = fails_with(check, ctx, "digits.onnx.data", "missing beside it")
        assert ".onnx.data" in failure.hint


def test_exported_in_train_mode(ctx, trained):
    export(ctx, trained, train=True)
    fails_with(m03.export_eval_mode, ctx, "exported in train mode", "Dropout")


def test_fixed_batch_costs_only_the_batch_check(ctx, trained):
    export(ctx, trained, dynamic=False)
    fails_with(m03.export_dynamic_batch, ctx, "fixed at 2")
    assert m03.export_parity(ctx)  # run in chunks of 2: the numbers themselves are right


def test_wrong_input_name(ctx, trained):
    export(ctx, trained, input_name="input")
    failure = fails_with(m03.export_names, ctx, "input name")
    assert "['input']" in failure.found


def test_probabilities_where_logits_were_asked(ctx, trained):
    export(ctx, trained, softmax=True)
    fails_with(m03.export_parity, ctx, "probabilities where logits were asked")


def test_external_data_not_as_declared(ctx, trained):
    export(ctx, trained, external=False, declared=True)
    fails_with(m03.export_external_data_choice, ctx, "EXTERNAL_DATA is True")
    export(ctx, trained, external=True, declared=False)
    fails_with(m03.export_external_data_choice, ctx, "EXTERNAL_DATA is False")


def test_weights_changed_after_saving_the_state(ctx, trained):
    export(ctx, trained)
    torch.save(models.digits_net(trained.mean, trained.std).state_dict(), ctx.workdir / m03.STATE_FILE)
    fails_with(m03.export_parity, ctx, "differ from PyTorch's")


def test_not_an_onnx_file(ctx):
    (ctx.workdir / m03.FLOAT_FILE).write_bytes(b"\x00\x01 not a model")
    fails_with(m03.export_loads, ctx, "digits.onnx")


# -- quantize ----------------------------------------------------------------------------------
def quantize(ctx, source=m03.FLOAT_FILE):
    quantize_dynamic(str(ctx.workdir / source), str(ctx.workdir / m03.INT8_FILE), weight_type=QuantType.QInt8)
    ctx.cache.clear()


def test_right_quantization(ctx, trained):
    export(ctx, trained)
    quantize(ctx)
    assert m03.quantize_smaller(ctx) and m03.quantize_accuracy_kept(ctx)
    craft(ctx, m03.quantize, report={"size_ratio": m03.size_ratio(ctx), "accuracy_change": 0.0, "latency_ratio": 0.9})
    assert "measured by the grader" in m03.quantize_report(ctx)


def test_quantized_copy_is_not_smaller(ctx, trained):
    export(ctx, trained)
    shutil.copy(ctx.workdir / m03.FLOAT_FILE, ctx.workdir / m03.INT8_FILE)
    fails_with(m03.quantize_smaller, ctx, "not smaller than the float model at all")


def test_quantized_model_whose_accuracy_collapsed(ctx, trained):
    untrained = models.digits_net(trained.mean, trained.std)
    export(ctx, untrained, name="untrained.onnx")
    quantize(ctx, source="untrained.onnx")
    export(ctx, trained)
    fails_with(m03.quantize_accuracy_kept, ctx, "accuracy collapsed")


def test_report_that_is_not_the_files(ctx, trained):
    export(ctx, trained)
    quantize(ctx)
    craft(ctx, m03.quantize, report={"size_ratio": 0.25, "accuracy_change": 0.0, "latency_ratio": 0.9})
    fails_with(m03.quantize_report, ctx, "size ratio is not the files'")
    craft(ctx, m03.quantize, report={"size_ratio": m03.size_ratio(ctx), "accuracy_change": 0.0})
    fails_with(m03.quantize_report, ctx, "lacks a number for latency_ratio")


# -- control flow ------------------------------------------------------------------------------
class Guard(nn.Module):
    def forward(self, x):
        return torch.cond(x.max() > 1.0, lambda x: x / 16.0, lambda x: x.clone(), (x,))


class AlwaysDivide(nn.Module):
    def forward(self, x):
        return x / 16.0


@pytest.mark.parametrize("module, ok", [(Guard(), True), (AlwaysDivide(), False)])
def test_control_flow(ctx, module, ok):
    torch.onnx.export(module, (torch.rand(2, 64) * 16,), str(ctx.workdir / m03.GUARD_FILE), dynamo=True,
                      verbose=False, dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, external_data=False)
    if ok:
        assert m03.control_flow_both_branches(ctx)
    else:
        fails_with(m03.control_flow_both_branches, ctx, "already scaled pixels", "other branch")


def test_control_flow_never_exported(ctx):
    failure = fails_with(m03.control_flow_both_branches, ctx, "guard.onnx was not found")
    assert "torch.onnx.export" in failure.hint


# -- validate, inspect, runtime: learner functions through the probes ---------------------------------
def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m03.registry, PROBES, exercise, **namespace)


def validate_full(path):
    onnx.checker.check_model(path, full_check=True)
    return onnx.shape_inference.infer_shapes(onnx.load(path), strict_mode=True)


def validate_plain(path):  # the structural checker only, and lenient inference
    onnx.checker.check_model(path)
    return onnx.shape_inference.infer_shapes(onnx.load(path))


def validate_no_inference(path):
    onnx.checker.check_model(path, full_check=True)
    return onnx.load(path)


def test_validate(ctx):
    probe_with(ctx, "validate", validate_onnx=validate_full)
    assert m03.validate_catches_invalid(ctx) and m03.validate_shapes_inferred(ctx)
    probe_with(ctx, "validate", validate_onnx=validate_plain)
    fails_with(m03.validate_catches_invalid, ctx, "accepted a model with a type error")
    probe_with(ctx, "validate", validate_onnx=validate_no_inference)
    fails_with(m03.validate_shapes_inferred, ctx, "intermediate shapes")


def inspector(symbolic=True):
    def inspect_onnx(path):
        model = onnx.load(path)

        def shape(value):
            return [(d.dim_param or d.dim_value) if symbolic else d.dim_value for d in value.type.tensor_type.shape.dim]
        ops = {}
        for node in model.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        return {"opset": model.opset_import[0].version, "inputs": {v.name: shape(v) for v in model.graph.input},
                "outputs": {v.name: shape(v) for v in model.graph.output}, "ops": ops}
    return inspect_onnx


def test_inspect(ctx):
    probe_with(ctx, "inspect", inspect_onnx=inspector())
    assert m03.inspect_matches(ctx)
    probe_with(ctx, "inspect", inspect_onnx=inspector(symbolic=False))
    failure = fails_with(m03.inspect_matches, ctx, "'inputs' is wrong")
    assert "'n'" in failure.expected


def session_maker(providers=True, threads=True):
    def make_session(path, n_threads):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = n_threads
        return ort.InferenceSession(path, options, **({"providers": ["CPUExecutionProvider"]} if providers else {}))
    return make_session


def predict_with_reference(path, X):
    from onnx.reference import ReferenceEvaluator
    evaluator = ReferenceEvaluator(path)
    return evaluator.run(None, {evaluator.input_names[0]: X})[0]


def predict_with_runtime(path, X):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})[0]


def test_runtime_right(ctx):
    probe_with(ctx, "runtime", make_session=session_maker(), reference_predict=predict_with_reference)
    for check in (m03.runtime_explicit_providers, m03.runtime_threads, m03.runtime_reference_evaluator):
        assert check(ctx)


def test_runtime_mistakes(ctx):
    probe_with(ctx, "runtime", make_session=session_maker(providers=False, threads=False),
               reference_predict=predict_with_runtime)
    fails_with(m03.runtime_explicit_providers, ctx, "leaves the choice of execution providers")
    fails_with(m03.runtime_threads, ctx, "number of threads")
    fails_with(m03.runtime_reference_evaluator, ctx, "does not use onnx.reference.ReferenceEvaluator")


def test_cuda_provider_skips_without_it(ctx, trained):
    from graders.checks import CheckSkipped
    export(ctx, trained)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert m03.runtime_cuda_provider(ctx)
    else:
        with pytest.raises(CheckSkipped, match="no CUDAExecutionProvider"):
            m03.runtime_cuda_provider(ctx)


def test_training_nodes_reads_the_mode_from_the_graph(tmp_path):
    """From the graph as the checker reads it: the Dropout's training_mode input is a constant it hands back."""
    import onnx
    from onnx import TensorProto, helper

    from graders.checks import CheckContext

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
