"""Numeric comparisons shared by the checks of every module: one tolerance rule, one way to fail on it.

The rule: found agrees with expected when max |found - expected| <= max(atol, rtol * max |expected|), elementwise
over arrays of the same shape. rtol defaults to atol: float32 carries about 7 digits, so the bar grows with outputs
larger than 1 and stays atol below."""
from __future__ import annotations

import numpy as np

PARITY_ATOL = 1e-5  # fp32 on CPU


def max_diff(found, expected) -> float:
    """The largest elementwise difference (NaN where only one side is NaN; inf for another shape)."""
    found, expected = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    if found.shape != expected.shape:
        return float("inf")
    diff = np.atleast_1d(np.abs(found - expected))
    diff[np.isnan(found) & np.isnan(expected)] = 0.0  # NaN where NaN was expected agrees
    return float(np.max(diff, initial=0.0)) if not np.isnan(diff).any() else float("nan")


def tolerance(expected, atol: float = PARITY_ATOL, rtol: float | None = None) -> float:
    """The largest difference from `expected` that still agrees with it."""
    scale = float(np.abs(np.asarray(expected, np.float64)).max(initial=0.0))
    return max(atol, (atol if rtol is None else rtol) * scale)


def close(found, expected, atol: float = PARITY_ATOL, rtol: float | None = None) -> bool:
    """Whether found agrees with expected (same shape, within tolerance(expected, atol, rtol))."""
    return max_diff(found, expected) <= tolerance(expected, atol, rtol)


def expect_close(found, expected, what: str, atol: float = PARITY_ATOL, rtol: float | None = None,
                 hint: str | None = None, mistake: str | None = None) -> float:
    """Fail unless found agrees with expected; returns the max abs diff. `what` names the values ("The ported
    model's logits"); `mistake` replaces the failure's message where the difference has a known cause."""
    from polyglot_lab.checking import CheckFailed, describe_array

    found_a, expected_a = np.asarray(found, np.float64), np.asarray(expected, np.float64)
    if found_a.shape != expected_a.shape:
        raise CheckFailed(f"{what}: the outputs have the wrong shape.", expected=f"shape {expected_a.shape}",
                          found=describe_array(found), hint=hint)
    diff, bar = max_diff(found_a, expected_a), tolerance(expected_a, atol, rtol)
    if not diff <= bar:  # `not <=`: a NaN fails
        raise CheckFailed(mistake or f"{what}: the outputs differ.",
                          expected=f"max abs diff <= {bar:.2g}", found=f"max abs diff {diff:.3g}", hint=hint)
    return diff


def looks_like_probabilities(out) -> bool:
    out = np.asarray(out, np.float64)
    return bool(out.ndim == 2 and np.all(out >= -1e-6) and np.allclose(out.sum(1), 1.0, atol=1e-4))


def softmax(logits) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


SPEED_FACTOR = 3.0  # two medians of the same ratio, taken minutes apart, on a machine others may share
SIDE_MARGIN = 1.5   # a ratio within 1.5x of 1 has no reliable side: the two are about as fast


def expect_ratio(reported: float, measured: float, what: str, inverted: str, hint: str,
                 side_margin: float = SIDE_MARGIN) -> None:
    """Fail unless a speed ratio the learner reported agrees with the grader's measurement of the same thing: on
    the same side of 1 (when the grader's is at least `side_margin` off 1; otherwise `inverted` names the likely
    mistake) and within SPEED_FACTOR of it."""
    from polyglot_lab.checking import CheckFailed

    if max(measured, 1 / measured) >= side_margin and (reported > 1) != (measured > 1):
        raise CheckFailed(f"{what} is on the wrong side of 1: {inverted}",
                          expected=f"about {measured:.2f}, as the grader measures it", found=f"{reported:.2f}", hint=hint)
    if max(reported / measured, measured / reported) > SPEED_FACTOR:
        raise CheckFailed(f"{what} is more than {SPEED_FACTOR:g}x away from the grader's own measurement of the same "
                          "thing.", expected=f"about {measured:.2f} (within {SPEED_FACTOR:g}x)", found=f"{reported:.2f}",
                          hint=hint)
