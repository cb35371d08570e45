"""Grader-held data: the held-out digits, never handed to a learner's notebook."""
from __future__ import annotations

import numpy as np

from polyglot_lab.data import _split_digits


def holdout_digits() -> tuple[np.ndarray, np.ndarray]:
    _, X_holdout, _, y_holdout = _split_digits()
    return X_holdout, y_holdout
