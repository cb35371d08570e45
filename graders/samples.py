"""The sample check output in README.md and docs/learners.md, written by `make notebooks` from a real run: module 01's
`split` with a classic mistake, checked and hinted through polyglot_lab.Notebook as a learner's kernel does it, so
the documentation shows what a learner will see (and the drift test fails when the two part ways)."""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from polyglot_lab.catalogue import REPO

DOCUMENTS = (REPO / "README.md", REPO / "docs" / "learners.md")
BEGIN = "<!-- sample output: written by `make notebooks` from a real check (graders/samples.py); do not edit -->"
END = "<!-- end of sample output -->"

# The learner's cell: everything as the exercise asks, but the scaler is fit on the test rows.
MISTAKE = '''
import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

def prepare_data(X, y, seed):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(X_test)
    return (scaler.transform(X_train).astype(np.float32), scaler.transform(X_test).astype(np.float32),
            y_train, y_test, scaler)
'''


def sample_block() -> str:
    from polyglot_lab.notebook import Notebook

    namespace: dict = {}
    exec(compile(MISTAKE, "<learner cell>", "exec"), namespace)  # the course's own sample, as a kernel would run it
    with tempfile.TemporaryDirectory() as workdir:
        grader = Notebook("01_keras_prototype", workdir=workdir)
        said = []
        for call in (lambda: grader.check("split", namespace), lambda: grader.hint("split")):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                call()
            said.append(out.getvalue().rstrip("\n"))
    return "\n".join([
        BEGIN,
        "```python",
        'grader.check("split")   # prepare_data fit its StandardScaler on X_test',
        "```", "```", said[0], "```",
        "```python", 'grader.hint("split")', "```", "```", said[1], "```",
        END])


def with_sample(path: Path, block: str) -> str:
    """`path`'s text with its sample block replaced by `block`."""
    from graders.generate import GenerateError

    text = path.read_text(encoding="utf-8")
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise GenerateError(f"{path}: no sample block (a line {BEGIN!r}, then {END!r})")
    return text[:start] + block + text[end + len(END):]
