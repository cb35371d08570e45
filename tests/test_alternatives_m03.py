"""Module 03: valid answers written otherwise than the master's score full marks, run as the notebook runs them
(files written, then the exercise's real probe)."""
import os
from collections import Counter
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
from mistakes import full_marks, run_probe
from polyglot_lab import models
from polyglot_lab.data import digits

PROBES = "polyglot_lab.probes.m03_onnx_export"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=11, device="cpu")


@pytest.fixture(scope="module")
def trained():
    X, y = digits()
    return models.train_digits_net(X, y, epochs=3)


def probe_with(ctx, exercise, **namespace):
    return run_probe(ctx, m03.registry, PROBES, exercise, **namespace)


def export_with_external_data(model, path, external_data):
    """train(False) for eval(), dynamic shapes as a tuple with a bounded Dim, another example batch, weights beside."""
    model.train(False)
    batch = torch.export.Dim("rows", min=1, max=4096)
    example = torch.from_numpy(digits()[0][:5])
    torch.onnx.export(model, (example,), path, input_names=["pixels"], output_names=["logits"],
                      dynamic_shapes=({0: batch},), external_data=external_data, optimize=True)


def test_export_with_external_data_and_tuple_dynamic_shapes(ctx, trained):
    torch.save(trained.state_dict(), ctx.workdir / m03.STATE_FILE)
    export_with_external_data(trained, str(ctx.workdir / m03.FLOAT_FILE), True)
    probe_with(ctx, "export", EXTERNAL_DATA=True)
    assert (ctx.workdir / "digits.onnx.data").exists()
    full_marks(ctx, m03.registry, "export")


def test_validate_on_a_loaded_model_with_type_checks(ctx):
    def validate_onnx(path):
        model = onnx.load(path)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(inferred, full_check=True)
        return inferred

    probe_with(ctx, "validate", validate_onnx=validate_onnx)
    full_marks(ctx, m03.registry, "validate")


def test_inspect_written_with_loops_and_tuples(ctx):
    def inspect_onnx(path):
        model = onnx.load(path, load_external_data=False)
        (opset,) = [entry.version for entry in model.opset_import if entry.domain == ""]

        def dims(value):
            return tuple(d.dim_param if d.HasField("dim_param") else d.dim_value
                         for d in value.type.tensor_type.shape.dim)
        report = {"opset": np.int64(opset), "inputs": {}, "outputs": {}, "ops": Counter()}
        for value in model.graph.input:
            report["inputs"][value.name] = dims(value)
        for value in model.graph.output:
            report["outputs"][value.name] = dims(value)
        for node in model.graph.node:
            report["ops"][node.op_type] += 1
        return report

    probe_with(ctx, "inspect", inspect_onnx=inspect_onnx)
    full_marks(ctx, m03.registry, "inspect")


def test_runtime_with_positional_providers_and_a_loaded_model(ctx):
    def make_session(path, threads):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        available = set(ort.get_available_providers())
        providers = ["CUDAExecutionProvider"] * ("CUDAExecutionProvider" in available) + ["CPUExecutionProvider"]
        return ort.InferenceSession(path, options, providers)

    def reference_predict(path, X):
        from onnx.reference import ReferenceEvaluator
        model = onnx.load(path)
        (output,) = ReferenceEvaluator(model).run([model.graph.output[0].name],
                                                  {model.graph.input[0].name: X.astype(np.float32)})
        return output

    probe_with(ctx, "runtime", make_session=make_session, reference_predict=reference_predict)
    full_marks(ctx, m03.registry, "runtime")


class ScaleWithWhere(nn.Module):
    """No branch at all: both answers computed, one chosen by torch.where (a rewrite without a Python branch)."""

    def forward(self, pixels):
        return torch.where(pixels.max() > 1.0, pixels / 16.0, pixels)


def test_control_flow_with_torch_where(ctx):
    torch.onnx.export(ScaleWithWhere(), (torch.rand(3, 64),), str(ctx.workdir / m03.GUARD_FILE),
                      input_names=["raw_or_scaled"], dynamic_shapes={"pixels": {0: torch.export.Dim("n")}})
    full_marks(ctx, m03.registry, "control_flow")


def test_quantize_per_channel_with_numpy_and_tensor_figures(ctx, trained, monkeypatch):
    """Per-channel int8 weights from an external-data float model; figures as a NumPy float32, a 0-d tensor and a
    0-d array; latency timed here with the grader's measurement pinned to the same numbers (timing is not
    reproducible on a shared machine)."""
    timings = {m03.INT8_FILE: 0.8e-3, m03.FLOAT_FILE: 1.0e-3}
    monkeypatch.setattr(m03, "onnxruntime_latency", lambda ctx, path, *args, **kwargs: timings[Path(path).name])
    torch.save(trained.state_dict(), ctx.workdir / m03.STATE_FILE)
    float_path, int8_path = str(ctx.workdir / m03.FLOAT_FILE), str(ctx.workdir / m03.INT8_FILE)
    export_with_external_data(trained, float_path, True)
    probe_with(ctx, "export", EXTERNAL_DATA=True)
    quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8, per_channel=True)

    def on_disk(path):
        return sum(os.path.getsize(p) for p in (path, path + ".data") if os.path.exists(p))
    X, y = holdout_digits()
    predictions = {path: ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"pixels": X})[0]
                   for path in (float_path, int8_path)}
    correct = {path: torch.from_numpy(p.argmax(1) == y).float().mean() for path, p in predictions.items()}
    report = {"size_ratio": np.float32(on_disk(int8_path) / on_disk(float_path)),
              "accuracy_change": correct[int8_path] - correct[float_path],
              "latency_ratio": np.array(timings[m03.INT8_FILE] / timings[m03.FLOAT_FILE])}
    probe_with(ctx, "quantize", report=report)
    full_marks(ctx, m03.registry, "quantize")
