"""The capstone's task, generated (nothing is downloaded): does a sequence's first token come back later?

    tokens, labels = first_token_returns(2000, seed=0)    # tokens (n, 16) int64, 0 is padding; labels (n,) in {0, 1}

Sequences hold 4 to 16 tokens drawn from 1..VOCAB_SIZE-1, padded on the right with PAD up to `pad_to`.
Half of them repeat their first token somewhere later (label 1), half never do (label 0). A bag of tokens
cannot tell the classes apart: the model has to compare every token with the first, which is what attention does.
"""
from __future__ import annotations

import numpy as np

VOCAB_SIZE = 12        # token ids 0..11; 0 is PAD
PAD = 0
MAX_POSITIONS = 32     # the longest padded sequence a model of the course accepts
LENGTHS = (4, 16)      # shortest and longest real sequence


def first_token_returns(n: int, seed: int, lengths: tuple[int, int] = LENGTHS,
                        pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`n` sequences and their labels (1: the first token comes back later), balanced and shuffled."""
    shortest, longest = lengths
    pad_to = longest if pad_to is None else pad_to
    if not 2 <= shortest <= longest <= pad_to <= MAX_POSITIONS:
        raise ValueError(f"need 2 <= shortest <= longest <= pad_to <= {MAX_POSITIONS}, got {lengths}, pad_to={pad_to}")
    rng = np.random.default_rng(seed)
    tokens = np.full((n, pad_to), PAD, np.int64)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    for row, (label, length) in enumerate(zip(labels, rng.integers(shortest, longest + 1, n))):
        first = rng.integers(1, VOCAB_SIZE)
        others = np.setdiff1d(np.arange(1, VOCAB_SIZE), [first])
        sequence = np.concatenate([[first], rng.choice(others, length - 1)])
        if label:
            sequence[rng.integers(1, length)] = first
        tokens[row, :length] = sequence
    return tokens, labels
