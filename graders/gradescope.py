"""A Gradescope autograder bundle for classes beyond one machine.

    make gradescope MODULES=02_pytorch_eager   ->  build/gradescope/autograder.zip

The zip holds the grader (graders/, polyglot_lab/, exercises/, pyproject.toml, never solutions/), a
`setup.sh` that installs it on Gradescope's Ubuntu image, and a `run_autograder` that grades the notebooks in
/autograder/submission and writes /autograder/results/results.json. AUTOGRADER_ROOT and PYTHON override the
paths, which is how the tests run it against a simulated /autograder in a temporary folder.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from polyglot_lab.catalogue import REPO, ModuleSpec

SOURCES = ("graders", "polyglot_lab", "exercises")

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when the autograder image is built.
set -euo pipefail
apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
python3 -m venv /autograder/venv
# The CPU build of torch: the default wheel pulls several GB of CUDA libraries Gradescope cannot use.
/autograder/venv/bin/pip install -q --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
/autograder/venv/bin/pip install -q /autograder/source
/autograder/venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; the notebooks are in $ROOT/submission.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${PYTHON:-$ROOT/venv/bin/python}"
mkdir -p "$ROOT/results"
cd "$ROOT/source"
export TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=tensorflow TF_FORCE_GPU_ALLOW_GROWTH=true
"$PYTHON" -m graders gradescope-run --submission "$ROOT/submission" --results "$ROOT/results/results.json" \\
  --modules "$(cat "$ROOT/source/MODULES")" || "$PYTHON" -m graders gradescope-run --error "$ROOT/results/results.json"
"""


def build_bundle(modules: list[ModuleSpec], out: Path) -> Path:
    """Write the autograder zip for `modules`; returns its path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        for folder in SOURCES:
            for path in sorted((REPO / folder).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    bundle.write(path, path.relative_to(REPO).as_posix())
        for name in ("pyproject.toml", "README.md", "CHANGELOG.md"):  # CHANGELOG: the grader version names its release
            bundle.write(REPO / name, name)
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16  # executable, as Gradescope expects
            bundle.writestr(info, text)
        bundle.writestr("MODULES", ",".join(m.id for m in modules))
    return out


def run(submission: Path, results: Path, modules: list[ModuleSpec], device: str = "auto") -> dict:
    """Grade one learner's submission folder and write Gradescope's results.json."""
    from polyglot_lab.devices import resolve_device
    from graders.grade import grade_module
    from graders.reports import atomic_write, gradescope_results
    from graders.results import LearnerResult

    device = resolve_device(device)
    graded = [grade_module(_find(submission, spec), spec, "submission", device, hide=(results.parent,))
              for spec in modules]
    payload = gradescope_results(LearnerResult("submission", graded))
    atomic_write(results, json.dumps(payload, indent=2))
    return payload


def _find(submission: Path, spec: ModuleSpec) -> Path | None:
    """The module's notebook in the submission: by its exact name, else the only .ipynb uploaded."""
    exact = submission / spec.notebook_name
    if exact.is_file():
        return exact
    notebooks = sorted(p for p in submission.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    matching = [p for p in notebooks if p.name == spec.notebook_name]
    return matching[0] if matching else None


def error_results(results: Path, message: str) -> None:
    """A results.json that says the autograder itself failed (Gradescope then shows the message, not a blank)."""
    from graders.reports import atomic_write
    atomic_write(results, json.dumps({"score": 0, "output": message, "tests": []}))
