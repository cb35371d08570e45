"""Course datasets. Everything ships with installed packages: nothing is downloaded.

scikit-learn's bundled digits (1,797 8x8 images, pixel values 0..16) are split once, with a
fixed seed, into the learners' share (80%) and a held-out share only the grader scores on.
"""
from __future__ import annotations

import numpy as np

COURSE_SPLIT_SEED = 20261124
HOLDOUT_FRACTION = 0.2


def _split_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X, y = digits.data.astype(np.float32), digits.target.astype(np.int64)
    return train_test_split(X, y, test_size=HOLDOUT_FRACTION, stratify=y, random_state=COURSE_SPLIT_SEED)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The learners' digits: X of shape (n, 64) with raw pixels 0..16 (float32), y of shape (n,) (int64)."""
    X_learn, _, y_learn, _ = _split_digits()
    return X_learn, y_learn
