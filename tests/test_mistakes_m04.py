"""Module 04's typical mistakes, each caught with a message that names it. The right converter and codec
are the master's own cells; the wrong ones are those cells with one mistake edited in."""
import shutil

import nbformat
import pytest

from polyglot_lab.catalogue import REPO
from graders.checks import CheckContext, CheckSkipped
from graders.checks import m04_tensorflow_serving as m04
from mistakes import craft, fails_with

MASTER = REPO / "solutions" / "04_tensorflow_serving.ipynb"


def master_file(tag: str) -> str:
    """The file a %%writefile cell of the master writes."""
    cell = next(c for c in nbformat.read(MASTER, as_version=4).cells if f"solution:{tag}" in c.metadata.get("tags", []))
    return cell.source.split("\n", 1)[1]


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=3, device="cpu")


def write(ctx, name, text, *edits):
    for find, replace in edits:
        assert find in text, find
        text = text.replace(find, replace)
    (ctx.workdir / name).write_text(text)


@pytest.fixture(scope="module")
def digits_onnx(tmp_path_factory):
    """The notebook's digits_cnn.onnx: a trained convnet exported by the dynamo exporter."""
    import torch

    from polyglot_lab import models
    from polyglot_lab.data import digits
    X, y = digits()
    path = tmp_path_factory.mktemp("onnx") / m04.ONNX_FILE
    torch.onnx.export(models.train_convnet(X, y, epochs=3), (torch.from_numpy(X[:2]),), str(path), dynamo=True,
                      verbose=False, input_names=["pixels"], output_names=["logits"], external_data=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return path


# -- the converter -----------------------------------------------------------------------------
CONVERTER_CHECKS = ["gemm", "conv", "pool", "reshape", "model_parity", "dynamic_batch"]


def converter_check(name):
    return m04.registry.checks[("converter", name)]


def test_master_converter_passes_everything(ctx):
    write(ctx, m04.CONVERTER_FILE, master_file("converter"))
    for name in CONVERTER_CHECKS:
        assert converter_check(name)(ctx)


def test_nchw_into_nhwc_ignored_transb_and_a_fixed_batch_are_named(ctx):
    """Three mistakes in one converter (one run of the isolated process), each costing its own check."""
    write(ctx, m04.CONVERTER_FILE, master_file("converter"),
          ("nhwc = tf.transpose(x, [0, 2, 3, 1])                   # ONNX", "nhwc = x  # ONNX"),
          ("transpose_a=bool(transA), transpose_b=bool(transB))", "transpose_a=bool(transA))"),
          ("d.dim_value if d.HasField(\"dim_value\") else None", "d.dim_value if d.HasField(\"dim_value\") else 1"))
    fails_with(converter_check("conv"), ctx, "NCHW tensor", "NHWC op")
    failure = fails_with(converter_check("gemm"), ctx, "ignores transB")
    assert "gemm_transposeB" in failure.found
    assert converter_check("pool")(ctx) and converter_check("reshape")(ctx)  # the other handlers are fine
    fails_with(converter_check("model_parity"), ctx, "Converting a convnet the grader exported failed")
    fails_with(converter_check("dynamic_batch"), ctx, "fixes the batch size")


def test_converter_that_does_not_import(ctx):
    write(ctx, m04.CONVERTER_FILE, "raise RuntimeError('half-finished')\nimport tensorflow as tf\n")
    failure = fails_with(converter_check("gemm"), ctx, "importing onnx_to_tf.py failed", "half-finished")
    assert "on its own" in failure.hint


# -- SavedModel ----------------------------------------------------------------------------------
def save_model(ctx, digits_onnx, input_name="pixels", output_name="logits", batch=None):
    """The master's converter applied to digits_cnn.onnx, saved with a signature of the given names and batch."""
    import importlib.util

    import tensorflow as tf
    write(ctx, m04.CONVERTER_FILE, master_file("converter"))
    spec = importlib.util.spec_from_file_location("master_onnx_to_tf", ctx.workdir / m04.CONVERTER_FILE)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    shutil.copy(digits_onnx, ctx.workdir / m04.ONNX_FILE)
    module = converter.convert(str(digits_onnx))
    serve = tf.function(lambda x: {output_name: module.run(x)["logits"]},
                        input_signature=[tf.TensorSpec([batch, 64], tf.float32, name=input_name)])
    tf.saved_model.save(module, str(ctx.workdir / m04.SAVEDMODEL_DIR), signatures={"serving_default": serve})
    ctx.cache.clear()


def test_saved_model_right(ctx, digits_onnx):
    save_model(ctx, digits_onnx)
    for check in (m04.saved_model_names, m04.saved_model_dynamic_batch, m04.saved_model_parity):
        assert check(ctx)


def test_saved_model_signature_without_names_and_with_a_fixed_batch(ctx, digits_onnx):
    save_model(ctx, digits_onnx, input_name="x", output_name="output_0", batch=32)
    failure = fails_with(m04.saved_model_names, ctx, "not named as asked")
    assert "output_0" in failure.found
    fails_with(m04.saved_model_dynamic_batch, ctx, "fixes the batch size")


def test_gpu_parity_skips_without_a_gpu(ctx, digits_onnx):
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    if tf.config.list_physical_devices("GPU"):
        assert m04.saved_model_gpu_parity(ctx)
    else:
        with pytest.raises(CheckSkipped, match="no GPU"):
            m04.saved_model_gpu_parity(ctx)


# -- LiteRT ----------------------------------------------------------------------------------------
def test_quantized_litert_model_that_is_not_smaller(ctx, digits_onnx):
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.workdir / m04.SAVEDMODEL_DIR))
    (ctx.workdir / m04.TFLITE_FILE).write_bytes(converter.convert())
    assert m04.tflite_float_parity(ctx)
    shutil.copy(ctx.workdir / m04.TFLITE_FILE, ctx.workdir / m04.TFLITE_DYNAMIC_FILE)  # "quantized" without optimizations
    fails_with(m04.tflite_quantized_smaller, ctx, "not smaller than the float one at all")


# -- serving -------------------------------------------------------------------------------------
def test_master_codec_serves_the_graders_model(ctx):
    write(ctx, m04.CODEC_FILE, master_file("serve"))
    for check in (m04.serve_predictions, m04.serve_bad_requests, m04.serve_burst):
        assert check(ctx)


def test_codec_mistakes_are_named(ctx):
    """Bad JSON answered 500, and 64 features hard-coded: the grader's model has 5."""
    write(ctx, m04.CODEC_FILE, master_file("serve"),
          ("    try:\n        request = json.loads(body)\n    except (json.JSONDecodeError, UnicodeDecodeError) as exc:\n"
           "        raise BadRequest(f\"the body is not valid JSON: {exc}\") from None\n",
           "    request = json.loads(body)\n"),
          ("    shape = spec[\"shape\"]\n", "    shape = [None, 64]\n"))
    failure = fails_with(m04.serve_bad_requests, ctx, "bad JSON answered 500")
    assert "JSONDecodeError" in failure.hint
    fails_with(m04.serve_predictions, ctx, "did not get the model's answer")


def test_codec_that_breaks_the_server_start(ctx):
    write(ctx, m04.CODEC_FILE, "def request_to_tensors(body, inputs):\n    pass\n")
    fails_with(m04.serve_predictions, ctx, "did not start with serving_codec.py", "must define response_from_tensors")


# -- compare and xla -------------------------------------------------------------------------------
def test_latency_table(ctx):
    good = {r: {"1": 1.0 if r == "onnxruntime" else 2.0, "256": 1.0 if r == "onnxruntime" else 0.5} for r in m04.RUNTIMES}
    craft(ctx, m04.compare, latency=good)
    assert m04.compare_latency_table(ctx)
    craft(ctx, m04.compare, latency={k: v for k, v in good.items() if k != "litert"})
    fails_with(m04.compare_latency_table, ctx, "litert")
    craft(ctx, m04.compare, latency={**good, "onnxruntime": {"1": 0.002, "256": 0.01}})  # seconds, not ratios
    fails_with(m04.compare_latency_table, ctx, "against ONNX Runtime")


def test_xla_not_compiled(ctx, digits_onnx):
    shutil.copy(digits_onnx, ctx.workdir / m04.ONNX_FILE)
    X = m04.xla_inputs(ctx)["X"]
    craft(ctx, m04.xla, jit_compile=False, logits=m04.ort_predict(digits_onnx, X), report={"max_abs_diff": 0.0, "speed_ratio": 1.0})
    fails_with(m04.xla_jit_compiled, ctx, "not compiled with XLA")
    assert m04.xla_parity(ctx) and m04.xla_report(ctx)
    craft(ctx, m04.xla, jit_compile=True, logits=m04.ort_predict(digits_onnx, X) + 0.1, report={"speed_ratio": 1.0})
    fails_with(m04.xla_parity, ctx, "differs from ONNX Runtime")
    fails_with(m04.xla_report, ctx, "missing a number")
