"""Module 04's valid alternatives: answers written in another style than the master's, each scoring full marks
through the real probe (or, for files, the real checks on the files it writes)."""
import time
from pathlib import Path

import numpy as np
import pytest

from graders.checks import CheckContext
from graders.checks import m04_tensorflow_serving as m04
from mistakes import full_marks, run_probe
import test_mistakes_m04 as mutants

PROBES = "polyglot_lab.probes.m04_tensorflow_serving"
master_file = mutants.master_file
digits_onnx, tf_model = mutants.digits_onnx, mutants.tf_model  # the notebook's files, shared with the mutants


def edited(text: str, *edits) -> str:
    for find, replace in edits:
        assert find in text, find
        text = text.replace(find, replace)
    return text


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=5, device="cpu")


def copy_onnx(ctx, digits_onnx):
    (ctx.workdir / m04.ONNX_FILE).write_bytes(Path(digits_onnx).read_bytes())


def test_converter_with_einsum_gemm_and_reshape_based_flatten(ctx):
    """Gemm as an einsum over explicitly transposed operands, Flatten through a static reshape where it can."""
    text = edited(master_file("converter"),
                  ("    y = alpha * tf.matmul(a, b, transpose_a=bool(transA), transpose_b=bool(transB))\n",
                   "    a = tf.transpose(a) if transA else a\n    b = tf.transpose(b) if transB else b\n"
                   "    y = tf.einsum('ik,kj->ij', a, b) * alpha\n"),
                  ("    shape = tf.shape(x, out_type=tf.int64)\n    axis = axis % len(x.shape) if len(x.shape) else 0\n"
                   "    outer = tf.reduce_prod(shape[:axis])\n    return tf.reshape(x, tf.stack([outer, -1]))\n",
                   "    axis = axis % len(x.shape) if len(x.shape) else 0\n"
                   "    inner = int(np.prod(x.shape[axis:])) if None not in x.shape[axis:] else -1\n"
                   "    outer = tf.reduce_prod(tf.shape(x)[:axis])\n"
                   "    return tf.reshape(x, [outer, inner]) if inner != -1 else tf.reshape(x, tf.stack([outer, -1]))\n"))
    (ctx.workdir / m04.CONVERTER_FILE).write_text(text)
    full_marks(ctx, m04.registry, "converter")


def test_xla_as_a_decorated_function_returning_a_tensor(ctx, digits_onnx, tf_model):
    """@tf.function(jit_compile=True) around a closure that returns the logits tensor, not a dict; the report's
    numbers as NumPy floats, timed with timeit."""
    import timeit

    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32)], jit_compile=True)
    def compiled(pixels):
        return tf_model.run(pixels)["logits"]

    from polyglot_lab.data import digits
    X, _ = digits()
    batch = tf.constant(X[:m04.XLA_TIMING_ROWS])
    reference = m04.ort_predict(digits_onnx, X[:m04.XLA_TIMING_ROWS])
    compiled(batch), tf_model.serve(batch)  # warm-up
    pairs = [(timeit.timeit(lambda: tf_model.serve(batch), number=1), timeit.timeit(lambda: compiled(batch), number=1))
             for _ in range(25)]  # interleaved, so that a load on the machine slows both alike
    plain, xla = np.median(pairs, axis=0)
    report = {"max_abs_diff": np.float32(np.abs(compiled(batch).numpy() - reference).max()),
              "speed_ratio": np.float64(plain / xla)}
    copy_onnx(ctx, digits_onnx)
    tf.saved_model.save(tf_model, str(ctx.workdir / m04.SAVEDMODEL_DIR), signatures={"serving_default": tf_model.serve})
    run_probe(ctx, m04.registry, PROBES, "xla", xla_serve=compiled, xla_report=report)
    full_marks(ctx, m04.registry, "xla")


def test_saved_model_from_a_wrapper_module_and_a_concrete_function(ctx, digits_onnx, tf_model):
    """A new tf.Module that keeps the converted one as an attribute, saved with a concrete function's signature."""
    import tensorflow as tf

    class Digits(tf.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        @tf.function(input_signature=[tf.TensorSpec(shape=(None, 64), dtype=tf.float32, name="pixels")])
        def predict(self, pixels):
            return {"logits": self.inner.run(pixels)["logits"]}

    wrapper = Digits(tf_model)
    tf.saved_model.save(wrapper, str(ctx.workdir / m04.SAVEDMODEL_DIR),
                        signatures=wrapper.predict.get_concrete_function())
    copy_onnx(ctx, digits_onnx)
    full_marks(ctx, m04.registry, "saved_model")


def test_tflite_from_a_concrete_function_written_with_pathlib(ctx, digits_onnx, tf_model):
    """The converter fed the serving function directly (from_concrete_functions), files written with pathlib."""
    import tensorflow as tf
    tf.saved_model.save(tf_model, str(ctx.workdir / m04.SAVEDMODEL_DIR), signatures={"serving_default": tf_model.serve})
    function = tf_model.serve.get_concrete_function()
    for name, quantize in ((m04.TFLITE_FILE, False), (m04.TFLITE_DYNAMIC_FILE, True)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], tf_model)
        if quantize:
            converter.optimizations = {tf.lite.Optimize.DEFAULT}
        Path(ctx.workdir / name).write_bytes(converter.convert())
    copy_onnx(ctx, digits_onnx)
    full_marks(ctx, m04.registry, "tflite")


COMPACT_CODEC = '''
import json

import numpy as np

from polyglot_lab.serving import BadRequest

LIMIT = 4096


def _fail(why):
    raise BadRequest(why)


def request_to_tensors(body, inputs):
    try:
        request = json.loads(body.decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        _fail(f"invalid JSON ({exc})")
    if not isinstance(request, dict) or len({"instances", "inputs"} & set(request)) != 1:
        _fail("send an object with exactly one of 'instances' or 'inputs'")
    (name, spec), = inputs.items()
    layout = "row" if "instances" in request else "columnar"
    value = request["instances"] if layout == "row" else request["inputs"]
    if isinstance(value, dict):
        value = value.get(name)
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        _fail(f"{name} must be a rectangular list of numbers")
    want = spec["shape"]
    if array.ndim != len(want) or any(w not in (None, n) for w, n in zip(want, array.shape)):
        _fail(f"{name}: shape {array.shape} does not match {want}")
    if len(array) > LIMIT:
        _fail(f"at most {LIMIT} rows per request")
    return {name: array.astype(spec["dtype"])}, layout


def response_from_tensors(outputs, layout):
    (values,) = [np.asarray(v).tolist() for v in outputs.values()]
    return {"predictions": values} if layout == "row" else {"outputs": values}
'''


def test_compact_single_input_codec(ctx):
    """A codec for single-input signatures only, written in another style: one converting np.array call, ValueError
    for both decoding errors, another batch limit."""
    (ctx.workdir / m04.CODEC_FILE).write_text(COMPACT_CODEC)
    full_marks(ctx, m04.registry, "serve")


def test_latency_with_integer_batch_keys_and_numpy_ratios(ctx):
    """Batch sizes as ints and ratios as NumPy floats, measured with time.perf_counter_ns."""
    def median_ns(fn, repeats=15):
        times = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - started)
        return np.median(times)

    work = {name: (lambda n=n: sum(range(n))) for name, n in
            zip(m04.RUNTIMES, (3000, 2000, 6000, 2500, 1500))}
    latency = {}
    for name in m04.RUNTIMES:
        latency[name] = {batch: np.float64(median_ns(work[name]) / median_ns(work["onnxruntime"])) if name != "onnxruntime"
                         else np.float64(1.0) for batch in (1, 256)}
    run_probe(ctx, m04.registry, PROBES, "compare", latency=latency)
    full_marks(ctx, m04.registry, "compare")
