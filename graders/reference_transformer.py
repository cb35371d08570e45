"""The grader's own tiny transformer (module 05), in Keras and in PyTorch, and the ways to get attention wrong.

The layer names are the capstone's contract: token_embedding, position_embedding, attention (MultiHeadAttention),
norm1, ff1, ff2, norm2, classifier. The PyTorch twin has Linear layers query/key/value/out for the attention.
Nothing here is shown to learners. The torch model spells attention out as the course does, so that its ONNX
export holds the operators the capstone's converter handles (torch's fused attention exports IsNaN and Slice too).
"""
from __future__ import annotations

import math

import numpy as np

from polyglot_lab.sequences import MAX_POSITIONS, PAD, VOCAB_SIZE

DIMS = {"vocab_size": VOCAB_SIZE, "max_positions": MAX_POSITIONS, "d_model": 32, "heads": 2, "ff": 64, "classes": 2}
EPSILON = 1e-5


def build_keras(vocab_size, max_positions, d_model, heads, ff, classes):
    import keras
    from keras import layers, ops

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    mask = ops.not_equal(tokens, PAD)
    positions = ops.cumsum(ops.ones_like(tokens), axis=1) - 1
    x = (layers.Embedding(vocab_size, d_model, name="token_embedding")(tokens)
         + layers.Embedding(max_positions, d_model, name="position_embedding")(positions))
    attended = layers.MultiHeadAttention(heads, d_model // heads, name="attention")(
        x, x, attention_mask=ops.expand_dims(mask, 1))
    x = layers.LayerNormalization(epsilon=EPSILON, name="norm1")(x + attended)
    hidden = layers.Dense(ff, activation="gelu", name="ff1")(x)
    x = layers.LayerNormalization(epsilon=EPSILON, name="norm2")(x + layers.Dense(d_model, name="ff2")(hidden))
    weights = ops.expand_dims(ops.cast(mask, "float32"), -1)
    pooled = ops.sum(x * weights, axis=1) / ops.sum(weights, axis=1)
    return keras.Model(tokens, layers.Dense(classes, name="classifier")(pooled), name="tiny_transformer")


def randomize(keras_model, rng: np.random.Generator) -> None:
    """Weights drawn for this grading run: every tensor different, scaled so that logits stay near 1."""
    keras_model.set_weights([(rng.normal(size=w.shape) / np.sqrt(w.shape[0] if w.ndim > 1 else 4.0)
                              + (1.0 if "gamma" in w.path else 0.0)).astype(np.float32)
                             for w in keras_model.weights])


def torch_model(vocab_size, max_positions, d_model, heads, ff, classes):
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Reference(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = heads
            self.token_embedding = nn.Embedding(vocab_size, d_model)
            self.position_embedding = nn.Embedding(max_positions, d_model)
            self.query, self.key, self.value, self.out = (nn.Linear(d_model, d_model) for _ in range(4))
            self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=EPSILON), nn.LayerNorm(d_model, eps=EPSILON)
            self.ff1, self.ff2 = nn.Linear(d_model, ff), nn.Linear(ff, d_model)
            self.classifier = nn.Linear(d_model, classes)

        def forward(self, tokens):
            mask = tokens != PAD
            x = self.token_embedding(tokens) + self.position_embedding(torch.arange(tokens.shape[1]))
            batch, length, width = x.shape
            q, k, v = (layer(x).reshape(batch, length, self.heads, -1).transpose(1, 2)
                       for layer in (self.query, self.key, self.value))
            scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(~mask[:, None, None, :], -math.inf)
            attended = torch.softmax(scores, -1) @ v
            x = self.norm1(x + self.out(attended.transpose(1, 2).reshape(batch, length, width)))
            x = self.norm2(x + self.ff2(F.gelu(self.ff1(x))))
            weights = mask.unsqueeze(-1).to(x.dtype)
            return self.classifier((x * weights).sum(1) / weights.sum(1))

    return Reference()


def dims_of(keras_model) -> dict:
    attention = keras_model.get_layer("attention")
    vocab_size, d_model = keras_model.get_layer("token_embedding").embeddings.shape
    return {"vocab_size": int(vocab_size), "max_positions": int(keras_model.get_layer("position_embedding").embeddings.shape[0]),
            "d_model": int(d_model), "heads": int(attention.num_heads), "ff": int(keras_model.get_layer("ff1").units),
            "classes": int(keras_model.get_layer("classifier").units)}


def ported_state(keras_model, heads_swapped: bool = False) -> dict[str, np.ndarray]:
    """The PyTorch state dict holding keras_model's weights; `heads_swapped` builds the classic mistake of
    flattening (head, head_dim) in the wrong order."""
    def weights(name):
        return [np.asarray(w) for w in keras_model.get_layer(name).get_weights()]

    state = {"token_embedding.weight": weights("token_embedding")[0],
             "position_embedding.weight": weights("position_embedding")[0]}
    wq, bq, wk, bk, wv, bv, wo, bo = weights("attention")
    width = wq.shape[0]
    order = (1, 0) if heads_swapped else (0, 1)
    for name, kernel, bias in (("query", wq, bq), ("key", wk, bk), ("value", wv, bv)):  # kernel (d, heads, head_dim)
        state[f"{name}.weight"] = kernel.transpose(0, *(1 + i for i in order)).reshape(width, -1).T
        state[f"{name}.bias"] = bias.transpose(order).reshape(-1)
    state["out.weight"] = wo.transpose(*order, 2).reshape(-1, width).T                     # (heads, head_dim, d)
    state["out.bias"] = bo
    for name in ("norm1", "norm2"):
        state[f"{name}.weight"], state[f"{name}.bias"] = weights(name)
    for name in ("ff1", "ff2", "classifier"):
        kernel, bias = weights(name)
        state[f"{name}.weight"], state[f"{name}.bias"] = kernel.T, bias
    return {k: np.ascontiguousarray(v, np.float32) for k, v in state.items()}


# -- attention, right and wrong, in float64 numpy ------------------------------------------------
def _softmax(z, axis):
    z = z - np.max(np.where(np.isfinite(z), z, -np.inf), axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def attention_variants(q, k, v, mask) -> dict[str, np.ndarray]:
    """{"right": softmax(q k^T / sqrt(d), masked) v, and each named mistake}. mask: True where a key may be seen."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    mask = np.broadcast_to(np.asarray(mask, bool), q.shape[:-1] + (k.shape[-2],))
    scores = q @ np.swapaxes(k, -1, -2)
    scale = np.sqrt(q.shape[-1])

    def attend(s, m=mask, axis=-1):
        return _softmax(np.where(m, s, -np.inf), axis) @ v

    with np.errstate(invalid="ignore"):  # a softmax over a fully masked column is NaN, in torch as here
        return {"right": attend(scores / scale),
                "mask ignored": attend(scores / scale, np.ones_like(mask)),
                "mask inverted": attend(scores / scale, np.where(mask.all(-1, keepdims=True), mask, ~mask)),
                "softmax over the queries (axis -2) instead of the keys": attend(scores / scale, mask, -2),
                "softmax over the heads (axis 1) instead of the keys (the last axis)": attend(scores / scale, mask, 1),
                "softmax over the batch (axis 0) instead of the keys (the last axis)": attend(scores / scale, mask, 0),
                "no scaling by sqrt(head_dim)": attend(scores),
                "scaled by head_dim instead of its square root": attend(scores / q.shape[-1])}
