"""Module 04's typical mistakes, each caught with a message that names it. The right converter and codec
are the master's own cells; the wrong ones are those cells with one mistake edited in."""
import importlib.util
import shutil

import nbformat
import numpy as np
import pytest

from polyglot_lab.catalogue import REPO
from graders.checks import CheckContext, CheckSkipped
from graders.checks import m04_tensorflow_serving as m04
from mistakes import costs_only, craft, fails_with, run_probe

PROBES = "polyglot_lab.probes.m04_tensorflow_serving"
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


def converter_mutant(ctx, *edits):
    write(ctx, m04.CONVERTER_FILE, master_file("converter"), *edits)
    ctx.cache.clear()
    return ctx


def test_ignored_transb_costs_gemm_and_names_it_in_model_parity(ctx):
    """The convnet's Linear layers are Gemm with transB=1: the model cannot run either (so no batch size is shown to
    work), and both say why."""
    converter_mutant(ctx, ("transpose_a=bool(transA), transpose_b=bool(transB))", "transpose_a=bool(transA))"))
    results = costs_only(ctx, m04.registry, "converter", ["gemm", "model_parity", "dynamic_batch"], "Gemm")
    assert "no other size is shown to work" in results["dynamic_batch"].message
    assert "ignores transB" in results["gemm"].message
    assert "gemm_transposeB" in results["gemm"].found


def test_ignored_alpha_and_beta_say_which_cases_fail(ctx):
    """The convnets use alpha = beta = 1: only Gemm's own cases catch it, and their names say which attribute."""
    converter_mutant(ctx, ("    y = alpha * tf.matmul(", "    y = tf.matmul("),
                     ("return y if c is None else y + beta * c", "return y if c is None else y + c"))
    results = costs_only(ctx, m04.registry, "converter", "gemm", "fails 3 of ONNX's own test cases", "gemm_alpha")
    assert "transB" not in results["gemm"].message


def test_nchw_into_nhwc_conv_is_named_from_tensorflows_depth_error(ctx):
    """The model cannot run either, so no batch size is shown to work: those two checks name Conv as the cause."""
    converter_mutant(ctx, ("nhwc = tf.transpose(x, [0, 2, 3, 1])                   # ONNX", "nhwc = x  # ONNX"))
    results = costs_only(ctx, m04.registry, "converter", ["conv", "model_parity", "dynamic_batch"], "Conv")
    assert "channels do not line up" in results["conv"].message and "NCHW" in results["conv"].message


def test_ignored_conv_pads_are_not_called_a_layout_mistake(ctx):
    """Output shapes differ here too, but the channels are right: the message says which cases fail, not NCHW."""
    converter_mutant(ctx, ("    nhwc = tf.pad(nhwc, _spatial_pads(pads, 2))\n", ""))
    results = costs_only(ctx, m04.registry, "converter", ["conv", "model_parity", "dynamic_batch"], "Conv")
    assert "basic_conv_with_padding" in results["conv"].message and "NCHW" not in results["conv"].message
    assert "pads" in results["conv"].hint


def test_pool_output_left_in_nhwc_is_named(ctx):
    converter_mutant(ctx, ("    y = tf.nn.max_pool2d(nhwc, ksize=kernel_shape, strides=strides, padding=\"VALID\")\n"
                           "    return tf.transpose(y, [0, 3, 1, 2])",
                           "    return tf.nn.max_pool2d(nhwc, ksize=kernel_shape, strides=strides, padding=\"VALID\")"))
    results = costs_only(ctx, m04.registry, "converter", ["pool", "model_parity"], "MaxPool")
    assert "NHWC order" in results["pool"].message


def test_pool_strides_ignored_are_not_called_a_layout_mistake(ctx):
    """The convnet pools with stride 2 = kernel 2, so a stride of 1 breaks the model too, whose message names MaxPool."""
    converter_mutant(ctx, ("strides=strides, padding=\"VALID\")\n    return", "strides=1, padding=\"VALID\")\n    return"))
    results = costs_only(ctx, m04.registry, "converter", ["pool", "model_parity", "dynamic_batch"], "MaxPool")
    assert "maxpool_2d_strides" in results["pool"].message and "NCHW" not in results["pool"].message


def test_reshape_zero_not_copied_costs_reshape_only(ctx):
    converter_mutant(ctx, ("    if not allowzero:  # 0 copies", "    if False:  # 0 copies"))
    costs_only(ctx, m04.registry, "converter", "reshape", "Reshape, Flatten handler fails", "reshape_zero")


def test_serve_that_rescales_the_pixels_costs_model_parity_only(ctx):
    """Every handler passes its cases, but serve divides the pixels by 16 (the model standardises them already)."""
    converter_mutant(ctx, ("self.serve = tf.function(self.run, input_signature=signature)",
                           "self.serve = tf.function(lambda *a: self.run(*[t / 16 for t in a]), input_signature=signature)"))
    costs_only(ctx, m04.registry, "converter", "model_parity", "differs from ONNX Runtime on a convnet")


def test_fixed_batch_costs_dynamic_batch_and_says_so_in_model_parity(ctx):
    """A batch fixed at 1 cannot serve the grader's larger batch: model_parity says the signature is the cause."""
    converter_mutant(ctx, ("d.dim_value if d.HasField(\"dim_value\") else None", "d.dim_value if d.HasField(\"dim_value\") else 1"))
    results = costs_only(ctx, m04.registry, "converter", ["dynamic_batch", "model_parity"], "fixes")
    assert "[1, 64]" in results["dynamic_batch"].found


def test_converter_that_does_not_import(ctx):
    write(ctx, m04.CONVERTER_FILE, "raise RuntimeError('half-finished')\nimport tensorflow as tf\n")
    failure = fails_with(converter_check("gemm"), ctx, "importing onnx_to_tf.py failed", "half-finished")
    assert "on its own" in failure.hint


def master_converter(ctx):
    """The master's onnx_to_tf.py, written into ctx's folder and imported (the tests trust it)."""
    write(ctx, m04.CONVERTER_FILE, master_file("converter"))
    spec = importlib.util.spec_from_file_location("master_onnx_to_tf", ctx.workdir / m04.CONVERTER_FILE)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    return converter


# -- SavedModel ----------------------------------------------------------------------------------
def save_model(ctx, digits_onnx, input_name="pixels", output_name="logits", batch=None):
    """The master's converter applied to digits_cnn.onnx, saved with a signature of the given names and batch."""
    import tensorflow as tf
    converter = master_converter(ctx)
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


def test_saved_model_signature_without_names_costs_names_only(ctx, digits_onnx):
    save_model(ctx, digits_onnx, input_name="x", output_name="output_0")
    results = costs_only(ctx, m04.registry, "saved_model", "names", "not named as asked")
    assert "output_0" in results["names"].found


def test_saved_model_with_a_fixed_batch_costs_dynamic_batch_only(ctx, digits_onnx):
    """Its outputs are still judged, in batches of the size it fixes."""
    save_model(ctx, digits_onnx, batch=32)
    costs_only(ctx, m04.registry, "saved_model", "dynamic_batch", "fixes the batch size")


def untrained_onnx(ctx):
    """An untrained convnet of the notebook's architecture, exported as the notebook exports its own."""
    import torch

    from polyglot_lab import models
    from polyglot_lab.data import digits
    X, _ = digits()
    path = ctx.workdir / "untrained.onnx"
    torch.manual_seed(1)
    torch.onnx.export(models.convnet(*models.pixel_statistics(X)).eval(), (torch.from_numpy(X[:2]),), str(path),
                      dynamo=True, verbose=False, input_names=["pixels"], output_names=["logits"], external_data=False,
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return path


def test_saved_model_of_another_model_costs_parity_only(ctx, digits_onnx):
    """The right signature around the wrong weights: an untrained convnet saved instead of the notebook's."""
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    module = master_converter(ctx).convert(str(untrained_onnx(ctx)))
    tf.saved_model.save(module, str(ctx.workdir / m04.SAVEDMODEL_DIR), signatures={"serving_default": module.serve})
    ctx.cache.clear()
    costs_only(ctx, m04.registry, "saved_model", "parity", "differ from ONNX Runtime's")


def test_gpu_parity_skips_without_a_gpu(ctx, digits_onnx):
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    if tf.config.list_physical_devices("GPU"):
        assert m04.saved_model_gpu_parity(ctx)
    else:
        with pytest.raises(CheckSkipped, match="no GPU"):
            m04.saved_model_gpu_parity(ctx)


# -- LiteRT ----------------------------------------------------------------------------------------
def write_tflite(ctx, name, optimizations=(), representative=None):
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.workdir / m04.SAVEDMODEL_DIR))
    converter.optimizations = list(optimizations)
    if representative is not None:
        converter.representative_dataset = representative
    (ctx.workdir / name).write_bytes(converter.convert())


def test_quantized_litert_model_that_is_not_smaller(ctx, digits_onnx):
    """The float file copied as the "quantized" one: not smaller at all (its accuracy is the float one's)."""
    save_model(ctx, digits_onnx)
    write_tflite(ctx, m04.TFLITE_FILE)
    shutil.copy(ctx.workdir / m04.TFLITE_FILE, ctx.workdir / m04.TFLITE_DYNAMIC_FILE)
    costs_only(ctx, m04.registry, "tflite", {"quantized_smaller", "int8_weights"})
    fails_with(m04.tflite_quantized_smaller, ctx, "not smaller than the float one at all")
    fails_with(m04.tflite_int8_weights, ctx, "holds no int8 tensor: its weights were not quantized")


def test_float16_weights_are_not_the_int8_quantization_asked(ctx, digits_onnx):
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    write_tflite(ctx, m04.TFLITE_FILE)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.workdir / m04.SAVEDMODEL_DIR))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    (ctx.workdir / m04.TFLITE_DYNAMIC_FILE).write_bytes(converter.convert())
    costs_only(ctx, m04.registry, "tflite", {"quantized_smaller", "int8_weights"})
    fails_with(m04.tflite_quantized_smaller, ctx, "as int8 weights make it")
    fails_with(m04.tflite_int8_weights, ctx, "holds no int8 tensor", "float16")


def test_full_integer_quantization_is_not_dynamic_range(ctx, digits_onnx):
    """int8 input and output (full-integer quantization, calibrated on digits): int8 weights, but int8 activations."""
    import tensorflow as tf

    from polyglot_lab.data import digits
    X, _ = digits()
    save_model(ctx, digits_onnx)
    write_tflite(ctx, m04.TFLITE_FILE)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.workdir / m04.SAVEDMODEL_DIR))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([X[i:i + 1].astype(np.float32)] for i in range(32))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    (ctx.workdir / m04.TFLITE_DYNAMIC_FILE).write_bytes(converter.convert())
    fails_with(m04.tflite_int8_weights, ctx, "full-integer quantization, not dynamic-range")


def test_quantized_file_calibrated_on_blank_images_loses_its_accuracy(ctx, digits_onnx):
    """Full-integer quantization calibrated on blank images instead of digits: smaller, but the accuracy collapses."""
    save_model(ctx, digits_onnx)
    write_tflite(ctx, m04.TFLITE_FILE)
    write_tflite(ctx, m04.TFLITE_DYNAMIC_FILE, [__import__("tensorflow").lite.Optimize.DEFAULT],
                 lambda: ([np.zeros((1, 64), np.float32)] for _ in range(8)))
    costs_only(ctx, m04.registry, "tflite", "quantized_accuracy", "accuracy collapsed")


def test_float_file_of_another_model_costs_float_parity_only(ctx, digits_onnx):
    """digits.tflite converted from an untrained convnet's SavedModel (a stale folder): its outputs are not the
    notebook's model's."""
    import tensorflow as tf
    save_model(ctx, digits_onnx)
    write_tflite(ctx, m04.TFLITE_DYNAMIC_FILE, [tf.lite.Optimize.DEFAULT])
    other = ctx.workdir / "stale_savedmodel"
    module = master_converter(ctx).convert(str(untrained_onnx(ctx)))
    tf.saved_model.save(module, str(other), signatures={"serving_default": module.serve})
    (ctx.workdir / m04.TFLITE_FILE).write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(other)).convert())
    costs_only(ctx, m04.registry, "tflite", "float_parity", "differs from ONNX Runtime")


# -- serving -------------------------------------------------------------------------------------
def test_master_codec_serves_the_graders_model(ctx):
    write(ctx, m04.CODEC_FILE, master_file("serve"))
    for check in (m04.serve_predictions, m04.serve_bad_requests, m04.serve_burst):
        assert check(ctx)


def test_bad_json_answered_500_costs_bad_requests_only(ctx):
    write(ctx, m04.CODEC_FILE, master_file("serve"),
          ("    try:\n        request = json.loads(body)\n    except (json.JSONDecodeError, UnicodeDecodeError) as exc:\n"
           "        raise BadRequest(f\"the body is not valid JSON: {exc}\") from None\n",
           "    request = json.loads(body)\n"))
    results = costs_only(ctx, m04.registry, "serve", "bad_requests", "bad JSON answered 500")
    assert "JSONDecodeError" in results["bad_requests"].hint


def test_columnar_answer_under_predictions_costs_predictions_only(ctx):
    write(ctx, m04.CODEC_FILE, master_file("serve"),
          ("        return {\"outputs\": next(iter(lists.values())) if len(lists) == 1 else lists}",
           "        return {\"predictions\": next(iter(lists.values())) if len(lists) == 1 else lists}"))
    costs_only(ctx, m04.registry, "serve", "predictions", "columnar request did not get the model's answer under 'outputs'")


def test_a_batch_limit_below_the_bursts_costs_burst_only(ctx):
    """MAX_BATCH = 16: the grader's single requests fit, some of its burst's do not; the message shows one."""
    write(ctx, m04.CODEC_FILE, master_file("serve"), ("MAX_BATCH = 1024", "MAX_BATCH = 16"))
    results = costs_only(ctx, m04.registry, "serve", "burst", "not answered correctly")
    assert "answered 400" in results["burst"].found and "over the limit" in results["burst"].found


def test_hard_coded_64_features_cost_predictions_and_burst(ctx):
    """The grader's model has 5 features: every valid request is refused (the bad ones still get 400)."""
    write(ctx, m04.CODEC_FILE, master_file("serve"), ("    shape = spec[\"shape\"]\n", "    shape = [None, 64]\n"))
    results = costs_only(ctx, m04.registry, "serve", ["predictions", "burst"], "")
    assert "5 features, not 64" in results["predictions"].hint and "answered 400" in results["burst"].found


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


def test_latency_of_a_runtime_divided_by_itself(ctx):
    good = {r: {"1": 1.0 if r == "onnxruntime" else 2.0, "256": 1.0 if r == "onnxruntime" else 0.5} for r in m04.RUNTIMES}
    craft(ctx, m04.compare, latency={**good, "tf_xla": {"1": 1.0, "256": 1.0}})
    costs_only(ctx, m04.registry, "compare", "latency_table", "tf_xla", "divided by itself")


@pytest.fixture(scope="module")
def tf_model(digits_onnx, tmp_path_factory):
    """The master's converter applied to the notebook's digits_cnn.onnx (what the XLA exercise compiles)."""
    folder = tmp_path_factory.mktemp("tf_model")
    (folder / m04.CONVERTER_FILE).write_text(master_file("converter"))
    spec = importlib.util.spec_from_file_location("master_onnx_to_tf_xla", folder / m04.CONVERTER_FILE)
    converter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(converter)
    return converter.convert(str(digits_onnx))


def measured_report(xla_serve, tf_model, digits_onnx):
    """xla_report as the notebook measures it, on rows of the size of X_val."""
    import time

    import tensorflow as tf

    from polyglot_lab.data import digits
    X, _ = digits()
    batch = tf.constant(X[:m04.XLA_TIMING_ROWS])

    for _ in range(3):
        tf_model.serve(batch), xla_serve(batch)
    times = []
    for _ in range(25):  # interleaved, so that a load on the machine slows both alike
        started = time.perf_counter()
        tf_model.serve(batch)
        middle = time.perf_counter()
        xla_serve(batch)
        times.append((middle - started, time.perf_counter() - middle))
    plain_s, xla_s = np.median(times, axis=0)
    out = xla_serve(batch)
    logits = (out["logits"] if isinstance(out, dict) else out).numpy()
    return {"max_abs_diff": float(np.abs(logits - m04.ort_predict(digits_onnx, X[:m04.XLA_TIMING_ROWS])).max()),
            "speed_ratio": float(plain_s / xla_s)}


def run_xla(ctx, digits_onnx, **namespace):
    """The xla probe on the notebook's namespace, beside the notebook's SavedModel (which the grader times with and
    without XLA for its own speed ratio)."""
    save_model(ctx, digits_onnx)
    return run_probe(ctx, m04.registry, PROBES, "xla", **namespace)


def xla_function(tf_model, jit_compile=True):
    import tensorflow as tf
    return tf.function(tf_model.run, input_signature=tf_model.serve.input_signature, jit_compile=jit_compile)


def test_xla_not_compiled_costs_jit_compiled_only(ctx, digits_onnx, tf_model):
    serve = xla_function(tf_model, jit_compile=False)
    run_xla(ctx, digits_onnx, xla_serve=serve, xla_report=measured_report(serve, tf_model, digits_onnx))
    costs_only(ctx, m04.registry, "xla", "jit_compiled", "not compiled with XLA")


def test_xla_serve_returning_probabilities_costs_parity_only(ctx, digits_onnx, tf_model):
    import tensorflow as tf
    serve = tf.function(lambda x: {"logits": tf.nn.softmax(tf_model.run(x)["logits"])},
                        input_signature=tf_model.serve.input_signature, jit_compile=True)
    run_xla(ctx, digits_onnx, xla_serve=serve, xla_report=measured_report(serve, tf_model, digits_onnx))
    costs_only(ctx, m04.registry, "xla", "parity", "differs from ONNX Runtime")


def test_xla_report_with_a_typed_diff_costs_report_only(ctx, digits_onnx, tf_model):
    serve = xla_function(tf_model)
    report = {**measured_report(serve, tf_model, digits_onnx), "max_abs_diff": 0.0}
    run_xla(ctx, digits_onnx, xla_serve=serve, xla_report=report)
    costs_only(ctx, m04.registry, "xla", "report", "max_abs_diff is not what xla_serve gives")


def test_xla_report_with_an_assumed_speedup_costs_report_only(ctx, digits_onnx, tf_model):
    """A tiny convnet on a CPU: XLA is about as fast as the plain function, nowhere near 50x."""
    serve = xla_function(tf_model)
    report = {**measured_report(serve, tf_model, digits_onnx), "speed_ratio": 50.0}
    run_xla(ctx, digits_onnx, xla_serve=serve, xla_report=report)
    costs_only(ctx, m04.registry, "xla", "report", "speed_ratio is more than 3x away")


def test_xla_report_missing_costs_report_only(ctx, digits_onnx, tf_model):
    run_xla(ctx, digits_onnx, xla_serve=xla_function(tf_model))
    costs_only(ctx, m04.registry, "xla", "report", "xla_report is not defined")


def test_inverted_speed_ratio_is_named(ctx, digits_onnx, monkeypatch):
    """XLA's time over the plain one's where the grader measures XLA 4x faster (as on a GPU): the grader's timing is
    set, since a CPU gives ratios near 1, where no side can be told."""
    shutil.copy(digits_onnx, ctx.workdir / m04.ONNX_FILE)
    monkeypatch.setattr(m04, "xla_timing", lambda ctx: (4e-3, 1e-3))
    X = m04.xla_inputs(ctx)["X"]
    craft(ctx, m04.xla, jit_compile=True, logits=m04.ort_predict(digits_onnx, X),
          report={"max_abs_diff": 1e-6, "speed_ratio": 0.25})
    # ONNX Runtime against itself: the grader's diff is 0, where any small reported diff is accepted
    costs_only(ctx, m04.registry, "xla", "report", "wrong side of 1", "inverted")
    craft(ctx, m04.xla, jit_compile=True, logits=m04.ort_predict(digits_onnx, X),
          report={"max_abs_diff": 1e-6, "speed_ratio": 3.5})
    assert m04.xla_report(ctx)
    craft(ctx, m04.xla, jit_compile=True, logits=m04.ort_predict(digits_onnx, X) + 0.1, report={"speed_ratio": 1.0})
    fails_with(m04.xla_parity, ctx, "differs from ONNX Runtime")
    fails_with(m04.xla_report, ctx, "missing a number")


def test_the_graders_speed_ratio_is_timed_on_the_savedmodel_in_the_checker(ctx, digits_onnx):
    """Without the notebook's SavedModel the grader cannot time XLA: the report's message says so and why."""
    shutil.copy(digits_onnx, ctx.workdir / m04.ONNX_FILE)
    X = m04.xla_inputs(ctx)["X"]
    craft(ctx, m04.xla, jit_compile=True, logits=m04.ort_predict(digits_onnx, X),
          report={"max_abs_diff": 1e-6, "speed_ratio": 1.0})
    fails_with(m04.xla_report, ctx, "digits_savedmodel")
    save_model(ctx, digits_onnx)
    plain_s, xla_s = m04.xla_timing(ctx)
    assert plain_s > 0 and xla_s > 0
