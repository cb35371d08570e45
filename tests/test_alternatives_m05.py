"""Module 05: valid answers written otherwise than the master's score full marks, through the real probes (issue 14).
Each is what a learner may well write: other tensor operations, another module layout, another order, a report in
sentences with tables laid out otherwise."""
import math

import numpy as np
import pytest
import torch
from mistakes import full_marks, run_probe

from graders.checks import CheckContext
from graders.checks import m05_capstone as m05
from graders.reference_transformer import DIMS, build_keras, ported_state, randomize, torch_model
from polyglot_lab.sequences import PAD

PROBES = "polyglot_lab.probes.m05_capstone"


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=11, device="cpu")


# -- attention -------------------------------------------------------------------------------------
def test_attention_with_einsum_and_a_large_negative_mask(ctx):
    def attention(q, k, v, mask):
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * q.shape[-1] ** -0.5
        scores = torch.where(mask, scores, torch.tensor(-1e9, dtype=scores.dtype))
        return torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=3), v)

    run_probe(ctx, m05.registry, PROBES, "attention", attention=attention)
    full_marks(ctx, m05.registry, "attention")


def test_attention_with_the_softmax_written_out_in_float64(ctx):
    def attention(q, k, v, mask):
        scores = torch.matmul(q.double(), k.double().transpose(2, 3)) / math.sqrt(k.size(-1))
        scores = scores.masked_fill(mask.logical_not(), -math.inf)
        weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
        return (weights / weights.sum(dim=-1, keepdim=True)).matmul(v.double()).to(q.dtype)

    run_probe(ctx, m05.registry, PROBES, "attention", attention=attention)
    full_marks(ctx, m05.registry, "attention")


# -- port: a fused query-key-value projection, weights copied in place -----------------------------
class FusedTransformer(torch.nn.Module):
    """Another layout than the master's: one Linear for query, key and value, sizes kept in a dict."""

    def __init__(self, sizes):
        super().__init__()
        nn, d = torch.nn, sizes["d_model"]
        self.sizes = sizes
        self.embed = nn.Embedding(sizes["vocab_size"], d)
        self.positions = nn.Parameter(torch.zeros(sizes["max_positions"], d))
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, sizes["ff"]), nn.GELU(), nn.Linear(sizes["ff"], d))
        self.head = nn.Linear(d, sizes["classes"])

    def forward(self, tokens):
        keep = tokens.ne(PAD)
        x = self.embed(tokens) + self.positions[: tokens.shape[1]]
        b, n, d = x.shape
        h = self.sizes["heads"]
        q, k, v = self.qkv(x).view(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(d // h)
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        attended = torch.einsum("bhqk,bhkd->bqhd", scores.softmax(-1), v).reshape(b, n, d)
        x = self.ln1(x + self.proj(attended))
        x = self.ln2(x + self.mlp(x))
        keep = keep.unsqueeze(-1).float()
        return self.head((x * keep).sum(1) / keep.sum(1))


def fused_port(keras_model):
    layer = keras_model.get_layer
    wq, bq, wk, bk, wv, bv, wo, bo = (np.asarray(w) for w in layer("attention").get_weights())
    d = wq.shape[0]
    sizes = {"vocab_size": layer("token_embedding").input_dim, "max_positions": layer("position_embedding").input_dim,
             "d_model": d, "heads": wq.shape[1], "ff": layer("ff1").units, "classes": layer("classifier").units}
    net = FusedTransformer(sizes)
    t = torch.as_tensor
    with torch.no_grad():
        net.embed.weight.copy_(t(np.asarray(layer("token_embedding").get_weights()[0])))
        net.positions.copy_(t(np.asarray(layer("position_embedding").get_weights()[0])))
        net.qkv.weight.copy_(t(np.concatenate([w.reshape(d, d) for w in (wq, wk, wv)], axis=1).T))
        net.qkv.bias.copy_(t(np.concatenate([b.reshape(d) for b in (bq, bk, bv)])))
        net.proj.weight.copy_(t(wo.reshape(d, d).T))
        net.proj.bias.copy_(t(bo))
        for keras_name, linear in (("ff1", net.mlp[0]), ("ff2", net.mlp[2]), ("classifier", net.head)):
            kernel, bias = layer(keras_name).get_weights()
            linear.weight.copy_(t(np.asarray(kernel).T))
            linear.bias.copy_(t(np.asarray(bias)))
        for keras_name, norm in (("norm1", net.ln1), ("norm2", net.ln2)):
            gamma, beta = layer(keras_name).get_weights()
            norm.weight.copy_(t(np.asarray(gamma)))
            norm.bias.copy_(t(np.asarray(beta)))
    net.train(False)
    return net


def test_port_with_a_fused_projection_and_copied_weights(ctx):
    run_probe(ctx, m05.registry, PROBES, "port", port_keras_weights=fused_port)
    full_marks(ctx, m05.registry, "port")


# -- the parity matrix -----------------------------------------------------------------------------
def simulated_outputs(seed: int, n: int = 64, scale: float = 8.0) -> dict:
    """Seven runtimes' logits on one batch: the same logits with float32-sized rounding noise (LiteRT more)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 2))
    base *= scale / np.abs(base).max()
    return {r: base + rng.normal(size=base.shape) * (1e-5 if r == "litert" else 5e-7) for r in m05.RUNTIMES}


def grader_stand_in(ctx, seed: int = 99) -> np.ndarray:
    """The grader's matrix (it runs every artifact) stood in for by its own batch of the same runtimes."""
    outputs = simulated_outputs(seed)
    stacked = np.stack([outputs[r] for r in m05.RUNTIMES])
    matrix = np.abs(stacked[:, None] - stacked[None, :]).max(axis=(2, 3))
    ctx.cache["grader_matrix"] = {"runtimes": list(m05.RUNTIMES), "max_abs": matrix.tolist(), "length": 23,
                                  "scale": float(np.abs(stacked).max())}
    return matrix


def test_parity_in_another_order_with_numpy_broadcasting(ctx):
    outputs = simulated_outputs(3)
    names = sorted(outputs, reverse=True)
    stacked = np.stack([outputs[name].astype(np.float32) for name in names])
    max_abs = np.abs(stacked[:, None] - stacked[None, :]).max(axis=(2, 3))
    sizes = np.abs(stacked).max(axis=(1, 2))
    parity = {"runtimes": tuple(names), "max_abs": max_abs, "max_rel": max_abs / np.maximum.outer(sizes, sizes)}
    run_probe(ctx, m05.registry, PROBES, "parity", parity=parity)
    grader_stand_in(ctx)  # after run_probe, which clears the cache
    full_marks(ctx, m05.registry, "parity")


# -- the report ------------------------------------------------------------------------------------
@pytest.fixture
def artifacts(ctx):
    """capstone.keras (random weights, accuracy near chance) and files of known size for the other runtimes."""
    keras_model = build_keras(**DIMS)
    randomize(keras_model, np.random.default_rng(0))
    keras_model.save(ctx.workdir / m05.KERAS_FILE)
    for i, name in enumerate((m05.PT2_FILE, m05.ONNX_FILE, m05.TFLITE_FILE)):
        (ctx.workdir / name).write_bytes(b"x" * (3000 + 517 * i))
    (ctx.workdir / m05.SAVEDMODEL_DIR / "variables").mkdir(parents=True)
    (ctx.workdir / m05.SAVEDMODEL_DIR / "saved_model.pb").write_bytes(b"x" * 2300)
    (ctx.workdir / m05.SAVEDMODEL_DIR / "variables" / "variables.data").write_bytes(b"x" * 1200)
    sizes = {n: m05.artifact_size(ctx, n) for n in m05.RUNTIMES}
    tokens, labels = m05.grader_sequences(ctx, "accuracy", n=1000)
    accuracy = float((keras_model.predict(tokens, verbose=0).argmax(1) == labels).mean())
    return sizes, accuracy, grader_stand_in(ctx)


def write(ctx, *parts: str):
    (ctx.workdir / m05.REPORT_FILE).write_text("\n".join(parts))


def test_report_in_sentences_with_tables_laid_out_otherwise(ctx, artifacts):
    """A count before the accuracy, a percentage; sizes before the names, alignment colons, an extra column; the
    parity table in another order, its figures in fixed-point notation."""
    sizes, accuracy, matrix = artifacts
    order = list(reversed(m05.RUNTIMES))
    index = {r: m05.RUNTIMES.index(r) for r in order}
    write(ctx, "# Tiny transformer", "",
          "## The task", "Sequences of 4 to 16 tokens: does the first token come back?", "",
          "## Accuracy", f"Evaluated on 1,000 fresh sequences of 4 to 16 tokens, the model reaches an accuracy of "
                         f"{accuracy:.1%} (chance is 50%).", "",
          "## Runtimes and sizes", "| size (bytes) | runtime | format | latency vs ONNX Runtime |",
          "|---:|:---|:---:|---:|",
          *(f"| {sizes[r]:,} | `{r}` | {m05.ARTIFACT_OF[r].rsplit('.', 1)[-1]} | 1.0x |" for r in order), "",
          "## Parity (max abs difference)", "", "| runtime | " + " | ".join(order) + " |",
          "|:--|" + "--:|" * len(order),
          *(f"| {a} | " + " | ".join(f"{matrix[index[a]][index[b]] * 1.2:.9f}" for b in order) + " |" for a in order),
          "", "## Known limits", "Only sequences of up to 32 tokens.")
    full_marks(ctx, m05.registry, "report")


def test_report_with_a_metrics_table_a_count_and_sizes_in_kib(ctx, artifacts):
    sizes, accuracy, matrix = artifacts
    names = list(m05.RUNTIMES)
    right = round(accuracy * 1000)
    write(ctx, "## Task", "First-token return, generated sequences.",
          "## Accuracy", "| metric | value |", "|---|---|", "| sequences | 1000 |", f"| correct | {right}/1000 |",
          "## Runtimes", "| Runtime | Artifact | Size (KiB) |", "|---|---|---|",
          *(f"| **{r}** | {m05.ARTIFACT_OF[r]} | {sizes[r] / 1024:.3f} |" for r in names),
          "## Parity", "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|",
          *(f"| {a} | " + " | ".join(f"{v:.1e}" for v in row) + " |" for a, row in zip(names, matrix)),
          "## Known limits", "- short sequences only")
    full_marks(ctx, m05.registry, "report")


def test_port_of_the_master_layout_passes_on_both_models(ctx):
    """The grader's own reference layout (the master's), ported through a helper with other names."""
    def port_keras_weights(model):
        sizes = {"vocab_size": model.get_layer("token_embedding").input_dim,
                 "max_positions": model.get_layer("position_embedding").input_dim,
                 "d_model": model.get_layer("token_embedding").output_dim,
                 "heads": model.get_layer("attention").num_heads, "ff": model.get_layer("ff1").units,
                 "classes": model.get_layer("classifier").units}
        net = torch_model(**sizes)
        net.load_state_dict({name: torch.tensor(array) for name, array in ported_state(model).items()})
        return net.eval()

    run_probe(ctx, m05.registry, PROBES, "port", port_keras_weights=port_keras_weights)
    full_marks(ctx, m05.registry, "port")
