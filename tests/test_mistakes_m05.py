"""Module 05's typical mistakes, each caught with a message that names it, on small crafted artifacts: the grader's
own reference transformer (random weights) stands in for the learner's, with one mistake put in."""
import math

import nbformat
import numpy as np
import pytest
import torch
from mistakes import craft, fails_with, run_probe

from polyglot_lab.catalogue import REPO
from graders.checks import CheckContext
from graders.checks import m05_capstone as m05
from graders.reference_transformer import (
    DIMS,
    build_keras,
    dims_of,
    ported_state,
    randomize,
    torch_model,
)

MASTER = REPO / "solutions" / "05_capstone.ipynb"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=5, device="cpu")


def check(exercise, name):
    return m05.registry.checks[(exercise, name)]


# -- attention -------------------------------------------------------------------------------------
def attention_with(mask=True, dim=-1, scale=True, fused=False):
    def attention(q, k, v, m):
        if fused:
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m)
        scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
        if mask:
            scores = scores.masked_fill(~m, float("-inf"))
        return torch.softmax(scores, dim=dim) @ v
    return attention


def attention_run(ctx, **kwargs):
    return run_probe(ctx, m05.registry, "polyglot_lab.probes.m05_capstone", "attention",
                     attention=attention_with(**kwargs))


def test_right_attention_passes(ctx):
    attention_run(ctx)
    assert check("attention", "matches_sdpa")(ctx) and check("attention", "from_tensors")(ctx)


@pytest.mark.parametrize("mistake, words", [
    ({"mask": False}, "mask ignored"),
    ({"dim": -2}, "softmax over the queries"),
    ({"scale": False}, "no scaling by sqrt(head_dim)"),
])
def test_attention_mistakes_are_named(ctx, mistake, words):
    attention_run(ctx, **mistake)
    fails_with(check("attention", "matches_sdpa"), ctx, words)
    assert check("attention", "from_tensors")(ctx)  # written from tensors, all the same


def test_torch_attention_is_not_written_from_tensors(ctx):
    attention_run(ctx, fused=True)
    assert check("attention", "matches_sdpa")(ctx)
    fails_with(check("attention", "from_tensors"), ctx, "scaled_dot_product_attention")


# -- port ------------------------------------------------------------------------------------------
def port_with(transform=lambda state, model: state, eps=None):
    """A port_keras_weights built on the grader's reference, with `transform` applied to the state dict."""
    def port_keras_weights(keras_model):
        net = torch_model(**dims_of(keras_model))
        state = transform(ported_state(keras_model), keras_model)
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()})
        if eps is not None:
            net.norm1.eps = net.norm2.eps = eps
        return net.eval()
    return port_keras_weights


def port_run(ctx, fn):
    return run_probe(ctx, m05.registry, "polyglot_lab.probes.m05_capstone", "port", port_keras_weights=fn)


def test_right_port_passes_on_both_sizes(ctx):
    port_run(ctx, port_with())
    assert check("port", "parity")(ctx) and check("port", "other_sizes")(ctx)


def test_heads_in_the_wrong_order_are_named(ctx):
    port_run(ctx, port_with(lambda state, model: ported_state(model, heads_swapped=True)))
    fails_with(check("port", "parity"), ctx, "heads in the wrong order")
    fails_with(check("port", "other_sizes"), ctx, "heads in the wrong order", "other sizes")


def test_untransposed_kernels_and_a_wrong_epsilon_are_named(ctx):
    def untransposed(state, model):
        return {**state, "ff1.weight": state["ff1.weight"].T.reshape(state["ff1.weight"].shape)} | {
            "query.weight": state["query.weight"].T}
    port_run(ctx, port_with(untransposed))
    failure = fails_with(check("port", "parity"), ctx, "differ from Keras's")
    assert "query.weight" in failure.message and "ff1.weight" in failure.message
    port_run(ctx, port_with(eps=1e-3))
    fails_with(check("port", "parity"), ctx, "weights are all in place", "epsilon")


# -- Keras and the export --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_pair(tmp_path_factory):
    """A Keras transformer of the grader's with random weights, and the same weights in the reference torch model."""
    keras_model = build_keras(**DIMS)
    randomize(keras_model, np.random.default_rng(0))
    net = torch_model(**DIMS).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in ported_state(keras_model).items()})
    return keras_model, net


def test_keras_without_the_mask_changes_its_answer_with_padding(ctx):
    import keras
    from keras import layers, ops

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = layers.Embedding(12, 16, name="token_embedding")(tokens)
    x = layers.MultiHeadAttention(2, 8, name="attention")(x, x)          # no attention_mask
    model = keras.Model(tokens, layers.Dense(2, name="classifier")(ops.mean(x, axis=1)))  # PAD averaged in
    randomize(model, np.random.default_rng(1))
    model.save(ctx.workdir / m05.KERAS_FILE)
    fails_with(check("keras", "padding"), ctx, "mask is ignored")
    fails_with(check("keras", "saved"), ctx, "missing or named otherwise", "position_embedding")


def test_keras_right_padding_and_fixed_length(ctx, keras_pair):
    import keras

    keras_pair[0].save(ctx.workdir / m05.KERAS_FILE)
    assert check("keras", "saved")(ctx) and check("keras", "padding")(ctx)
    tokens = keras.Input((16,), dtype="int32")
    fixed = keras.Model(tokens, keras_pair[0](tokens))
    fixed.save(ctx.workdir / m05.KERAS_FILE)
    ctx.cache.clear()
    fails_with(check("keras", "saved"), ctx, "any batch size and length")


def export_onnx(net, path, length_dynamic=True):
    dims = {0: torch.export.Dim("batch")}
    if length_dynamic:
        dims[1] = torch.export.Dim("length", max=32)
    torch.onnx.export(net, (torch.ones((2, 16), dtype=torch.int64),), str(path), dynamo=True, verbose=False,
                      input_names=["tokens"], output_names=["logits"], external_data=False,
                      dynamic_shapes={"tokens": dims})


def test_a_fixed_sequence_length_costs_only_its_own_check(ctx, keras_pair):
    keras_model, net = keras_pair
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    export_onnx(net, ctx.workdir / m05.ONNX_FILE, length_dynamic=False)
    fails_with(check("export", "dynamic_axes"), ctx, "fixed sequence length")
    assert check("export", "onnx_parity")(ctx)  # the grader trims its padding to the fixed length


def test_onnx_of_other_weights_is_caught(ctx, keras_pair):
    keras_model, _ = keras_pair
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    export_onnx(torch_model(**DIMS).eval(), ctx.workdir / m05.ONNX_FILE)  # fresh weights: not the ported ones
    assert check("export", "dynamic_axes")(ctx)
    fails_with(check("export", "onnx_parity"), ctx, "the outputs differ")


# -- the converter ---------------------------------------------------------------------------------
def master_converter() -> str:
    cell = next(c for c in nbformat.read(MASTER, as_version=4).cells
                if "solution:converter" in c.metadata.get("tags", []))
    return cell.source.split("\n", 1)[1]


def test_softmax_on_a_fixed_axis_and_a_last_axis_layer_norm_cost_their_own_checks(ctx):
    """Two mistakes a transformer never exercises (its softmax and norms are on the last axis): ONNX's own cases
    catch them, and the converted transformers still match."""
    source = master_converter()
    for find, replace in (("return tf.nn.softmax(x, axis=axis)", "return tf.nn.softmax(x, axis=-1)"),
                          ("axes = list(range(axis % len(x.shape), len(x.shape)))", "axes = [-1]")):
        assert find in source
        source = source.replace(find, replace)
    (ctx.workdir / m05.CONVERTER_FILE).write_text(source)
    fails_with(check("converter", "softmax"), ctx, "wrong axis")
    fails_with(check("converter", "layer_norm"), ctx, "LayerNormalization handler fails")
    for name in ("matmul", "transpose", "gather", "gelu", "model_parity", "dynamic_shapes"):
        assert check("converter", name)(ctx), name


# -- the parity matrix and the report --------------------------------------------------------------
def grader_matrix(ctx, litert=3e-6):
    """Stand in for the grader's measurement (which runs every artifact): fp32 noise, LiteRT a little more."""
    n = len(m05.RUNTIMES)
    matrix = np.full((n, n), 2e-6) - np.diag(np.full(n, 2e-6))
    i = m05.RUNTIMES.index("litert")
    matrix[i, :] = matrix[:, i] = litert
    matrix[i, i] = 0
    ctx.cache["grader_matrix"] = {"runtimes": list(m05.RUNTIMES), "max_abs": matrix.tolist(), "scale": 8.0,
                                  "length": 23}
    return matrix


def craft_parity(ctx, max_abs, runtimes=m05.RUNTIMES):
    craft(ctx, m05.parity, parity={"runtimes": list(runtimes), "max_abs": np.asarray(max_abs).tolist(),
                                 "max_rel": (np.asarray(max_abs) / 8.0).tolist()})


def test_parity_matrix_right_and_wrong(ctx):
    matrix = grader_matrix(ctx)
    craft_parity(ctx, matrix * 1.3)
    for name in ("complete", "within_tolerance", "matches_grader"):
        assert check("parity", name)(ctx)
    craft_parity(ctx, matrix[:6, :6], m05.RUNTIMES[:6])
    fails_with(check("parity", "complete"), ctx, "Runtimes missing: litert")
    lopsided = matrix.copy()
    lopsided[0, 1] = 5e-6
    craft_parity(ctx, lopsided)
    fails_with(check("parity", "complete"), ctx, "symmetric")


def test_a_broken_runtime_is_out_of_tolerance_and_a_hidden_one_does_not_match(ctx):
    broken = grader_matrix(ctx, litert=0.2)          # the LiteRT file really is wrong
    craft_parity(ctx, broken)
    fails_with(check("parity", "within_tolerance"), ctx, "beyond their tolerance", "litert")
    craft_parity(ctx, grader_matrix(ctx, litert=3e-6))
    grader_matrix(ctx, litert=0.2)
    fails_with(check("parity", "matches_grader"), ctx, "does not match the artifacts", "litert")


def write_report(ctx, accuracy: float, sizes: dict, matrix, sections=m05.SECTIONS):
    names = list(m05.RUNTIMES)
    parts = {
        "task": "First token returns.",
        "accuracy": f"Validation accuracy: {accuracy:.4f} on 1,000 sequences.",
        "runtimes": "\n".join(["| runtime | artifact | size (bytes) | latency (x ONNX Runtime) |", "|---|---|---|---|",
                               *(f"| {n} | {m05.ARTIFACT_OF[n]} | {sizes[n]} | 1.00 |" for n in names)]),
        "parity": "\n".join(["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
                             *(f"| {a} | " + " | ".join(f"{v:.2e}" for v in row) + " |" for a, row in zip(names, matrix))]),
        "known limits": "- short sequences only",
    }
    text = "# Report\n\n" + "\n\n".join(f"## {s.title()}\n{parts[s]}" for s in sections)
    (ctx.workdir / m05.REPORT_FILE).write_text(text)


@pytest.fixture
def artifacts(ctx, keras_pair):
    """capstone.keras (the random-weight model, accuracy near chance) and files of known size for the others."""
    keras_pair[0].save(ctx.workdir / m05.KERAS_FILE)
    for i, name in enumerate((m05.PT2_FILE, m05.ONNX_FILE, m05.TFLITE_FILE)):
        (ctx.workdir / name).write_bytes(b"x" * (1000 + i))
    (ctx.workdir / m05.SAVEDMODEL_DIR / "variables").mkdir(parents=True)
    (ctx.workdir / m05.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"x" * 300)
    (ctx.workdir / m05.SAVEDMODEL_DIR / "variables" / "variables.data").write_bytes(b"x" * 200)
    sizes = {n: m05.artifact_size(ctx, n) for n in m05.RUNTIMES}
    tokens, labels = m05.grader_sequences(ctx, "accuracy", n=1000)
    accuracy = float((keras_pair[0].predict(tokens, verbose=0).argmax(1) == labels).mean())
    return sizes, accuracy


def test_a_report_that_matches_its_artifacts_passes(ctx, artifacts):
    sizes, accuracy = artifacts
    write_report(ctx, accuracy + 0.01, sizes, grader_matrix(ctx) * 1.2)
    for name in ("sections", "figures", "parity_figures"):
        assert check("report", name)(ctx), name
    assert sizes["tf_savedmodel"] == 500


def test_report_numbers_that_do_not_match_the_artifacts_are_caught(ctx, artifacts):
    sizes, accuracy = artifacts
    matrix = grader_matrix(ctx)
    write_report(ctx, 0.998, sizes, matrix)                      # an accuracy typed by hand
    fails_with(check("report", "figures"), ctx, "accuracy does not match")
    write_report(ctx, accuracy, {**sizes, "litert": 53_748}, matrix)  # the size of another file
    fails_with(check("report", "figures"), ctx, "size for litert does not match")
    stale = matrix.copy()
    stale[0, 3] = stale[3, 0] = 4e-3                             # a parity figure from an older export
    write_report(ctx, accuracy, sizes, stale)
    fails_with(check("report", "parity_figures"), ctx, "does not match the artifacts", "keras_tf vs onnxruntime")
    broken = grader_matrix(ctx, litert=0.2)                      # a real mismatch, measured on other inputs
    write_report(ctx, accuracy, sizes, np.where(broken > 0.1, 0.17, broken))
    assert check("report", "parity_figures")(ctx)
    write_report(ctx, accuracy, sizes, matrix, sections=m05.SECTIONS[:-1])
    fails_with(check("report", "sections"), ctx, "no section about 'known limits'")


def tokens_savedmodel(directory, name="tokens", dtype="int64", shape=(None, None)):
    """A SavedModel whose serving signature takes `name` (dtype, shape) and returns {'logits': ...}."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name=name)])
        def serve(self, tokens):
            return {"logits": tf.cast(tokens[:, :2], tf.float32) * 0.5}

    model = Model()
    tf.saved_model.save(model, str(directory), signatures={"serving_default": model.serve})


@pytest.mark.parametrize("kwargs, words", [
    ({}, None),
    ({"name": "x"}, "not named as asked"),
    ({"dtype": "int32"}, "must be int64"),
    ({"shape": (None, 16)}, "must be int64 of any batch size and length"),
], ids=["right", "renamed", "int32", "fixed-length"])
def test_saved_model_signature_names_dtype_and_shape(ctx, kwargs, words):
    tokens_savedmodel(ctx.workdir / m05.SAVEDMODEL_DIR, **kwargs)
    if words is None:
        assert "tokens int64 [None, None]" in check("saved_model", "signature")(ctx)
    else:
        fails_with(check("saved_model", "signature"), ctx, words)
