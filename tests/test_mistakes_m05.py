"""Module 05's typical mistakes, each caught with a message that names it, on small crafted artifacts: the grader's
own reference transformer (random weights) stands in for the learner's, with one mistake put in."""
import math

import nbformat
import numpy as np
import pytest
import torch
from mistakes import costs_only, craft, fails_with, full_marks, run_probe

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
    ({"dim": -2}, "softmax over the queries (axis -2) instead of the keys"),
    ({"dim": 1}, "softmax over the heads (axis 1) instead of the keys"),
    ({"dim": 0}, "softmax over the batch (axis 0) instead of the keys"),
    ({"scale": False}, "no scaling by sqrt(head_dim)"),
], ids=["mask-ignored", "softmax-queries", "softmax-heads", "softmax-batch", "unscaled"])
def test_attention_mistakes_are_named(ctx, mistake, words):
    attention_run(ctx, **mistake)
    costs_only(ctx, m05.registry, "attention", "matches_sdpa", words)  # written from tensors, all the same


def test_torch_attention_is_not_written_from_tensors(ctx):
    attention_run(ctx, fused=True)
    costs_only(ctx, m05.registry, "attention", "from_tensors", "scaled_dot_product_attention")


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
    # the layout is wrong whatever the sizes: both models' checks fail, each naming it
    results = costs_only(ctx, m05.registry, "port", ("parity", "other_sizes"), "heads in the wrong order")
    assert "other sizes" in results["other_sizes"].message


def test_untransposed_kernels_and_a_wrong_epsilon_are_named(ctx):
    def untransposed(state, model):
        return {**state, "ff1.weight": state["ff1.weight"].T.reshape(state["ff1.weight"].shape)} | {
            "query.weight": state["query.weight"].T}
    port_run(ctx, port_with(untransposed))
    results = costs_only(ctx, m05.registry, "port", ("parity", "other_sizes"), "differ from Keras's")
    assert "query.weight" in results["parity"].message and "ff1.weight" in results["parity"].message
    port_run(ctx, port_with(eps=1e-3))
    costs_only(ctx, m05.registry, "port", ("parity", "other_sizes"), "weights are all in place", "epsilon")


# -- Keras and the export --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_pair(tmp_path_factory):
    """A Keras transformer of the grader's with random weights, and the same weights in the reference torch model."""
    keras_model = build_keras(**DIMS)
    randomize(keras_model, np.random.default_rng(0))
    net = torch_model(**DIMS).eval()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in ported_state(keras_model).items()})
    return keras_model, net


@pytest.fixture(scope="module")
def trained_keras():
    """The grader's Keras transformer trained on the capstone's task (seconds per epoch on a CPU), over the accuracy
    bar: a Keras mistake put into it costs only its own check, not the accuracy too."""
    import keras

    from polyglot_lab.sequences import first_token_returns

    keras.utils.set_random_seed(0)
    model = build_keras(**DIMS)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    tokens, labels = first_token_returns(4000, seed=1)
    held_out, held_labels = first_token_returns(1000, seed=7, pad_to=24)
    for _ in range(30):
        model.fit(tokens, labels, epochs=1, batch_size=64, verbose=0)
        if (model.predict(held_out, verbose=0).argmax(1) == held_labels).mean() > 0.97:
            break
    return model


def keras_like(trained, attention_mask=True, names=None):
    """build_keras with a mistake (no attention mask, or layers named otherwise), holding `trained`'s weights."""
    import keras
    from keras import layers, ops

    name = {layer: layer for layer in m05.LAYERS} | (names or {})
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    mask = ops.not_equal(tokens, 0)
    positions = ops.cumsum(ops.ones_like(tokens), axis=1) - 1
    x = (layers.Embedding(DIMS["vocab_size"], DIMS["d_model"], name=name["token_embedding"])(tokens)
         + layers.Embedding(DIMS["max_positions"], DIMS["d_model"], name=name["position_embedding"])(positions))
    attended = layers.MultiHeadAttention(DIMS["heads"], DIMS["d_model"] // DIMS["heads"], name=name["attention"])(
        x, x, attention_mask=ops.expand_dims(mask, 1) if attention_mask else None)
    x = layers.LayerNormalization(epsilon=1e-5, name=name["norm1"])(x + attended)
    hidden = layers.Dense(DIMS["ff"], activation="gelu", name=name["ff1"])(x)
    x = layers.LayerNormalization(epsilon=1e-5, name=name["norm2"])(
        x + layers.Dense(DIMS["d_model"], name=name["ff2"])(hidden))
    weights = ops.expand_dims(ops.cast(mask, "float32"), -1)
    pooled = ops.sum(x * weights, axis=1) / ops.sum(weights, axis=1)
    model = keras.Model(tokens, layers.Dense(DIMS["classes"], name=name["classifier"])(pooled))
    model.set_weights(trained.get_weights())
    return model


def test_a_trained_model_gets_full_marks(ctx, trained_keras):
    trained_keras.save(ctx.workdir / m05.KERAS_FILE)
    full_marks(ctx, m05.registry, "keras")


def test_a_layer_named_otherwise_costs_only_saved(ctx, trained_keras):
    keras_like(trained_keras, names={"position_embedding": "positions"}).save(ctx.workdir / m05.KERAS_FILE)
    costs_only(ctx, m05.registry, "keras", "saved", "missing or named otherwise", "position_embedding")


def test_attention_without_the_mask_costs_only_padding(ctx, trained_keras):
    keras_like(trained_keras, attention_mask=False).save(ctx.workdir / m05.KERAS_FILE)
    costs_only(ctx, m05.registry, "keras", "padding", "mask is ignored")


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


def test_a_fixed_length_model_costs_only_saved(ctx, trained_keras):
    import keras

    tokens = keras.Input((16,), dtype="int32")
    keras.Model(tokens, trained_keras(tokens)).save(ctx.workdir / m05.KERAS_FILE)
    # it truly cannot run the grader's longer sequences: the accuracy and the padding cannot be measured
    results = costs_only(ctx, m05.registry, "keras", ("saved", "accuracy", "padding"))
    assert "any batch size and length" in results["saved"].message
    for name in ("accuracy", "padding"):
        assert "fails on tokens of shape" in results[name].message, results[name].message
        assert "expected shape=(None, 16)" in results[name].message, results[name].message


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
    save_pt2(net, ctx.workdir / m05.PT2_FILE)
    results = costs_only(ctx, m05.registry, "export", "dynamic_axes", "fixed sequence length")
    assert results["onnx_parity"].status == "passed"  # the grader trims its padding to the fixed length


def test_onnx_of_other_weights_is_caught(ctx, keras_pair):
    keras_model, _ = keras_pair
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    export_onnx(torch_model(**DIMS).eval(), ctx.workdir / m05.ONNX_FILE)  # fresh weights: not the ported ones
    save_pt2(keras_pair[1], ctx.workdir / m05.PT2_FILE)                  # the program holds the ported ones
    costs_only(ctx, m05.registry, "export", "onnx_parity", "capstone.onnx in ONNX Runtime against capstone.keras",
               "the outputs differ")


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
    results = costs_only(ctx, m05.registry, "converter", ("softmax", "layer_norm"))
    assert "wrong axis" in results["softmax"].message, results["softmax"].message
    assert "LayerNormalization handler fails" in results["layer_norm"].message, results["layer_norm"].message


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
    # a matrix without litert has no pairs to judge against it: every check of the matrix says it is incomplete
    costs_only(ctx, m05.registry, "parity", ("complete", "within_tolerance", "matches_grader", "relative"),
               "The parity matrix is incomplete", "Runtimes missing: litert")
    lopsided = matrix.copy()
    lopsided[0, 1] = 5e-6
    craft_parity(ctx, lopsided)
    costs_only(ctx, m05.registry, "parity", "complete", "symmetric")


def test_a_broken_runtime_is_out_of_tolerance_and_a_hidden_one_does_not_match(ctx):
    broken = grader_matrix(ctx, litert=0.2)          # the LiteRT file really is wrong
    craft_parity(ctx, broken)
    costs_only(ctx, m05.registry, "parity", "within_tolerance", "beyond their tolerance", "litert")
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
    for name in ("sections", "accuracy", "sizes", "parity_figures"):
        assert check("report", name)(ctx), name
    assert sizes["tf_savedmodel"] == 500


def test_report_numbers_that_do_not_match_the_artifacts_are_caught(ctx, artifacts):
    sizes, accuracy = artifacts
    matrix = grader_matrix(ctx)
    write_report(ctx, 0.998, sizes, matrix)                      # an accuracy typed by hand
    costs_only(ctx, m05.registry, "report", "accuracy", "does not match the model's")
    write_report(ctx, accuracy, {**sizes, "litert": 53_748}, matrix)  # the size of another file
    costs_only(ctx, m05.registry, "report", "sizes", "size for litert does not match")
    stale = matrix.copy()
    stale[0, 3] = stale[3, 0] = 4e-3                             # a parity figure from an older export
    write_report(ctx, accuracy, sizes, stale)
    costs_only(ctx, m05.registry, "report", "parity_figures", "does not match the artifacts", "keras_tf vs onnxruntime")
    broken = grader_matrix(ctx, litert=0.2)                      # a real mismatch, measured on other inputs
    write_report(ctx, accuracy, sizes, np.where(broken > 0.1, 0.17, broken))
    assert check("report", "parity_figures")(ctx)
    write_report(ctx, accuracy, sizes, grader_matrix(ctx), sections=m05.SECTIONS[:-1])  # the grader's fp32 matrix again
    costs_only(ctx, m05.registry, "report", "sections", "no section about 'known limits'")


def tokens_savedmodel(directory, name="tokens", dtype="int64", shape=(None, None), scale=0.5):
    """A SavedModel whose serving signature takes `name` (dtype, shape) and returns {'logits': the first two tokens
    times `scale`}."""
    import tensorflow as tf

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name=name)])
        def serve(self, tokens):
            return {"logits": tf.cast(tokens[:, :2], tf.float32) * scale}

    model = Model()
    tf.saved_model.save(model, str(directory), signatures={"serving_default": model.serve})


@pytest.mark.parametrize("kwargs, words", [
    ({}, None),
    ({"name": "x"}, "not named as asked"),
    ({"dtype": "int32"}, "must be int64"),
    ({"shape": (None, 16)}, "must be int64 of any batch size and length"),
], ids=["right", "renamed", "int32", "fixed-length"])
def test_saved_model_signature_names_dtype_and_shape(ctx, kwargs, words):
    import tensorflow as tf

    halving_onnx(ctx.workdir / m05.ONNX_FILE)
    tokens_savedmodel(ctx.workdir / m05.SAVEDMODEL_DIR, **kwargs)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(ctx.workdir / m05.SAVEDMODEL_DIR))
    (ctx.workdir / m05.TFLITE_FILE).write_bytes(converter.convert())
    if words is None:
        assert "tokens int64 [None, None]" in full_marks(ctx, m05.registry, "saved_model")["signature"].message
    elif "shape" in kwargs:  # a fixed length truly cannot run the grader's longer sequences (under XLA)
        results = costs_only(ctx, m05.registry, "saved_model", ("signature", "parity"))
        assert words in results["signature"].message, results["signature"].message
        assert "fails on tokens of shape" in results["parity"].message, results["parity"].message
    else:
        costs_only(ctx, m05.registry, "saved_model", "signature", words)


def test_a_saved_model_of_other_weights_costs_only_its_parity(ctx, tmp_path):
    import tensorflow as tf

    halving_onnx(ctx.workdir / m05.ONNX_FILE)
    tokens_savedmodel(ctx.workdir / m05.SAVEDMODEL_DIR, scale=0.25)  # saved from another model than the ONNX file's
    tokens_savedmodel(tmp_path / "right")                             # LiteRT's file converted from the right one
    (ctx.workdir / m05.TFLITE_FILE).write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "right")).convert())
    costs_only(ctx, m05.registry, "saved_model", "parity", "capstone_savedmodel against ONNX Runtime",
               "the outputs differ")


# -- issue 14: each mistake costs only its own check, through the real probes --------------------------
def test_sizes_fixed_in_the_port_cost_only_the_other_sizes(ctx):
    """A failure on the second model no longer costs the first: the probe saves each model's results on its own."""
    def fixed_sizes(keras_model):  # the course's sizes, not the model's: load_state_dict fails on the other one
        net = torch_model(**DIMS)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in ported_state(keras_model).items()})
        return net.eval()
    port_run(ctx, fixed_sizes)
    costs_only(ctx, m05.registry, "port", "other_sizes", "failed on the grader's Keras model (a model of other sizes")


def test_heads_fixed_in_the_forward_pass_cost_only_the_other_sizes(ctx):
    def two_heads(keras_model):  # the weights fit whatever the heads: only the forward pass shows the mistake
        net = torch_model(**{**dims_of(keras_model), "heads": DIMS["heads"]})
        net.load_state_dict({k: torch.from_numpy(v) for k, v in ported_state(keras_model).items()})
        return net.eval()
    port_run(ctx, two_heads)
    costs_only(ctx, m05.registry, "port", "other_sizes", "matches Keras at the course's sizes", "a size is fixed")


def simulated_outputs(seed: int, n: int = 64, scale: float = 8.0) -> dict:
    """Seven runtimes' logits for one batch: the same logits, each with its own float32-sized rounding noise (LiteRT
    more)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    base *= scale / np.abs(base).max()
    return {r: base + rng.normal(size=base.shape) * (1e-5 if r == "litert" else 5e-7) for r in m05.RUNTIMES}


def parity_of(outputs: dict) -> dict:
    """The learner's matrix, as the exercise asks for it."""
    runtimes = list(outputs)
    max_abs = [[float(np.abs(outputs[a] - outputs[b]).max()) for b in runtimes] for a in runtimes]
    size = [float(np.abs(outputs[r]).max()) for r in runtimes]
    max_rel = [[max_abs[i][j] / max(size[i], size[j]) for j in range(len(runtimes))] for i in range(len(runtimes))]
    return {"runtimes": runtimes, "max_abs": max_abs, "max_rel": max_rel}


def measure_like_the_grader(ctx, seed: int = 99):
    """Stand in for the grader's matrix (which runs every artifact) with its own batch of the same runtimes."""
    outputs = simulated_outputs(seed)
    matrix = parity_of(outputs)
    ctx.cache["grader_matrix"] = {"runtimes": matrix["runtimes"], "max_abs": matrix["max_abs"], "length": 23,
                                  "scale": max(float(np.abs(v).max()) for v in outputs.values())}


def parity_run(ctx, parity):
    run_probe(ctx, m05.registry, "polyglot_lab.probes.m05_capstone", "parity", parity=parity)
    measure_like_the_grader(ctx)  # after run_probe, which clears the cache


def test_a_runtime_compared_with_itself_is_named(ctx):
    """A typo that reuses Keras-TF's outputs for Keras's torch backend (the child process never ran): the pair is
    exactly 0, inside every tolerance; only the grader's own measurement shows it."""
    outputs = simulated_outputs(1)
    outputs["keras_torch"] = outputs["keras_tf"]
    parity_run(ctx, parity_of(outputs))
    costs_only(ctx, m05.registry, "parity", "matches_grader", "keras_tf vs keras_torch is exactly 0",
               "compared a runtime with itself")


def test_an_all_zero_matrix_is_named(ctx):
    outputs = simulated_outputs(1)
    parity_run(ctx, parity_of({r: outputs["torch"] for r in m05.RUNTIMES}))
    costs_only(ctx, m05.registry, "parity", "matches_grader", "exactly 0", "compared a runtime with itself")


def test_figures_far_from_the_grader_s_measurement_are_caught(ctx):
    """Right verdicts, wrong figures: a matrix from an older export, with 15 times the differences the artifacts
    show between the fp32 runtimes (still within their tolerance)."""
    outputs = simulated_outputs(1)
    stale = {r: v if r == "litert" else outputs["keras_tf"] + 15 * (v - outputs["keras_tf"]) for r, v in outputs.items()}
    parity_run(ctx, parity_of(stale))
    costs_only(ctx, m05.registry, "parity", "matches_grader", "more than 10 times larger")


def test_max_rel_not_divided_by_the_size_is_named(ctx):
    matrix = parity_of(simulated_outputs(1))
    parity_run(ctx, {**matrix, "max_rel": matrix["max_abs"]})
    costs_only(ctx, m05.registry, "parity", "relative", "not divided by the size of the outputs")


def test_a_report_accuracy_in_another_form_is_read_and_still_checked(ctx, artifacts):
    sizes, accuracy = artifacts
    write_report(ctx, accuracy, sizes, grader_matrix(ctx))
    text = (ctx.workdir / m05.REPORT_FILE).read_text()
    accuracy_line = f"Validation accuracy: {accuracy:.4f} on 1,000 sequences."
    wrong = f"Over 1,000 sequences of 4 to 16 tokens, the accuracy is {min(accuracy + 0.2, 1.0):.1%}."
    (ctx.workdir / m05.REPORT_FILE).write_text(text.replace(accuracy_line, wrong))
    costs_only(ctx, m05.registry, "report", "accuracy", "does not match the model's")
    (ctx.workdir / m05.REPORT_FILE).write_text(text.replace(accuracy_line, "Trained on 4,000 sequences."))
    costs_only(ctx, m05.registry, "report", "accuracy", "states no accuracy")


def test_parity_figures_rounded_to_zero_are_named(ctx, artifacts):
    sizes, accuracy = artifacts
    write_report(ctx, accuracy, sizes, grader_matrix(ctx))
    text = (ctx.workdir / m05.REPORT_FILE).read_text()
    (ctx.workdir / m05.REPORT_FILE).write_text(text.replace("2.00e-06", "0.0000"))  # f"{v:.4f}"
    costs_only(ctx, m05.registry, "report", "parity_figures", "is exactly 0", "rounded its figure to 0")


def save_pt2(net, path):
    program = torch.export.export(net, (torch.ones((2, 16), dtype=torch.int64),), dynamic_shapes={
        "tokens": {0: torch.export.Dim("batch"), 1: torch.export.Dim("length", max=32)}})
    torch.export.save(program, str(path))


def test_a_program_of_other_weights_costs_only_pt2_parity(ctx, keras_pair):
    keras_model, net = keras_pair
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    export_onnx(net, ctx.workdir / m05.ONNX_FILE)
    save_pt2(torch_model(**DIMS).eval(), ctx.workdir / m05.PT2_FILE)  # the model before the port
    costs_only(ctx, m05.registry, "export", "pt2_parity", "capstone.pt2 against capstone.keras", "the outputs differ")


def halving_onnx(path):
    """The ONNX twin of tokens_savedmodel: logits = the first two tokens, as floats, halved."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Slice", ["tokens", "zero", "two", "one"], ["first"]),
         helper.make_node("Cast", ["first"], ["floats"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["floats", "half"], ["logits"])],
        "halving", [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "length"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0]), helper.make_tensor("two", TensorProto.INT64, [1], [2]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1]), helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_tflite_file_of_another_model_costs_only_litert_parity(ctx, tmp_path):
    import tensorflow as tf

    halving_onnx(ctx.workdir / m05.ONNX_FILE)
    tokens_savedmodel(ctx.workdir / m05.SAVEDMODEL_DIR)
    tokens_savedmodel(tmp_path / "older", scale=0.25)  # converted from an older SavedModel
    (ctx.workdir / m05.TFLITE_FILE).write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "older")).convert())
    costs_only(ctx, m05.registry, "saved_model", "litert_parity", "capstone.tflite in LiteRT against ONNX Runtime",
               "the outputs differ")


def test_a_gpu_that_disagrees_with_the_cpu_is_named(ctx, monkeypatch):
    """No GPU here: the check's message path, on outputs crafted for each device."""
    monkeypatch.setattr(m05, "tensorflow_sees_a_gpu", lambda ctx: True)
    monkeypatch.setattr(m05, "savedmodel_logits", lambda ctx, t, xla=False, device="/CPU:0": np.zeros(
        (len(t), 2)) + (0.01 if device == "/GPU:0" else 0.0))
    fails_with(check("saved_model", "gpu_parity"), ctx, "on the GPU against the CPU", "the outputs differ")
    monkeypatch.setattr(m05, "savedmodel_logits", lambda ctx, t, xla=False, device="/CPU:0": np.zeros((len(t), 2)))
    assert "the same outputs on the GPU" in check("saved_model", "gpu_parity")(ctx)


def master_codec() -> str:
    cell = next(c for c in nbformat.read(MASTER, as_version=4).cells if "solution:serve" in c.metadata.get("tags", []))
    return cell.source.split("\n", 1)[1]


def test_a_codec_that_feeds_floats_costs_the_predictions(ctx):
    """A codec that takes only floats (module 04's features): the capstone's token ids are integers."""
    halving_onnx(ctx.workdir / m05.ONNX_FILE)
    tokens_savedmodel(ctx.workdir / m05.SAVEDMODEL_DIR)
    source = master_codec()
    (ctx.workdir / m05.CODEC_FILE).write_text(source)
    assert "rows and columns" in check("serve", "predictions")(ctx)
    allowed = 'allowed = "iuf" if dtype.kind == "f" else "iu" if dtype.kind in "iu" else dtype.kind'
    assert allowed in source
    (ctx.workdir / m05.CODEC_FILE).write_text(source.replace(allowed, 'allowed = "f"'))
    costs_only(ctx, m05.registry, "serve", "predictions", "did not get the model's answer", "status 400",
               "rejected a valid request of integer token ids")


def test_an_untrained_model_costs_only_the_accuracy(ctx, keras_pair):
    keras_pair[0].save(ctx.workdir / m05.KERAS_FILE)  # random weights: right layers and mask, chance accuracy
    costs_only(ctx, m05.registry, "keras", "accuracy", "under the bar")


def test_a_port_left_in_train_mode_costs_only_eval_mode(ctx):
    def train_mode(keras_model):
        return port_with()(keras_model).train()
    port_run(ctx, train_mode)
    costs_only(ctx, m05.registry, "port", "eval_mode", "train mode")


def test_onnx_names_other_than_asked_cost_only_their_check(ctx, keras_pair):
    keras_model, net = keras_pair
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    save_pt2(net, ctx.workdir / m05.PT2_FILE)
    torch.onnx.export(net, (torch.ones((2, 16), dtype=torch.int64),), str(ctx.workdir / m05.ONNX_FILE), dynamo=True,
                      verbose=False, input_names=["input_ids"], external_data=False,  # output name left to torch
                      dynamic_shapes={"tokens": {0: torch.export.Dim("batch"), 1: torch.export.Dim("length", max=32)}})
    costs_only(ctx, m05.registry, "export", "names", "not named as asked", "input_ids")


def test_handler_mistakes_a_transformer_never_exercises_cost_their_own_checks(ctx):
    """A vector operand of MatMul, Transpose's default perm, negative Gather indices, Gelu's tanh form: the grader's
    transformers use none of them, so only ONNX's own cases fail, each in its own check."""
    source = master_converter()
    for find, replace in (
            ("    if len(b.shape) == 1:  # a vector", "    if False:  # a vector"),
            ("return tf.transpose(x, perm)", "return tf.transpose(x, perm if perm is not None else list(range(len(x.shape))))"),
            ("return tf.gather(x, tf.where(indices < 0, indices + size, indices), axis=axis)",
             "return tf.gather(x, indices, axis=axis)"),
            ('approximate=approximate in (b"tanh", "tanh")', "approximate=False")):
        assert find in source, find
        source = source.replace(find, replace)
    (ctx.workdir / m05.CONVERTER_FILE).write_text(source)
    costs_only(ctx, m05.registry, "converter", ("matmul", "transpose", "gather", "gelu"),
               "handler fails ONNX's own test cases")


def test_a_where_with_its_branches_swapped_costs_only_model_parity(ctx):
    """Where has no conformance group here: only the grader's transformers (their attention mask) exercise it."""
    source = master_converter()
    assert "return tf.where(condition, a, b)" in source
    (ctx.workdir / m05.CONVERTER_FILE).write_text(source.replace("return tf.where(condition, a, b)",
                                                                 "return tf.where(condition, b, a)"))
    costs_only(ctx, m05.registry, "converter", "model_parity", "differs from ONNX Runtime")


def test_a_signature_that_fixes_the_batch_costs_the_dynamic_shapes_and_says_so_in_model_parity(ctx):
    """A signature of batch 1 truly breaks the grader's batch of 5 or more: model_parity fails too, and names it."""
    source = master_converter()
    find = 'signature = [tf.TensorSpec([d.dim_value if d.HasField("dim_value") else None'
    assert find in source
    (ctx.workdir / m05.CONVERTER_FILE).write_text(source.replace(find, 'signature = [tf.TensorSpec([d.dim_value or 1'))
    costs_only(ctx, m05.registry, "converter", ("dynamic_shapes", "model_parity"), "input signature fixes")
