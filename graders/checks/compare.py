"""Numeric comparisons shared by the parity checks of every module."""
from __future__ import annotations

import numpy as np

PARITY_ATOL = 1e-5  # fp32 on CPU


def max_diff(found, expected) -> float:
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(found - expected).max()) if found.shape == expected.shape else float("inf")


def close(found, expected, atol=PARITY_ATOL) -> bool:
    """Agreement within atol, scaled up for outputs larger than 1 (float32 carries ~7 digits)."""
    return max_diff(found, expected) <= atol * max(1.0, float(np.abs(np.asarray(expected, np.float64)).max()))


def looks_like_probabilities(out) -> bool:
    out = np.asarray(out, np.float64)
    return bool(out.ndim == 2 and np.all(out >= -1e-6) and np.allclose(out.sum(1), 1.0, atol=1e-4))


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)
