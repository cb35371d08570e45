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
# Gradescope runs this once, as root, when the autograder image is built. Its base images: Ubuntu 22.04 (python3 is
# 3.10) and 24.04 (3.12); the course runs on 3.10 to 3.13. The grader goes into a venv of the image's python3.
# Overrides (how it is simulated off Gradescope): AUTOGRADER_ROOT (default /autograder), SETUP_PYTHON (a python to
# use instead of installing the image's), TORCH (default torch==2.13.0), TORCH_INDEX (default PyTorch's CPU index;
# empty: pip's own index).
set -euo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PYTHON="${SETUP_PYTHON:-python3}"
if [ -z "${SETUP_PYTHON:-}" ]; then
  apt-get update -qq && apt-get install -y -qq python3 python3-pip python3-venv >/dev/null
fi
"$PYTHON" -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 13) else
  f"setup.sh: Python {v[0]}.{v[1]} is not one the course runs on (3.10 to 3.13): install one, set SETUP_PYTHON")'
"$PYTHON" -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q --upgrade pip
# The CPU build of torch first: PyPI's Linux wheel brings about 3 GB of CUDA libraries Gradescope cannot use.
TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
"$ROOT/venv/bin/pip" install -q ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "${TORCH:-torch==2.13.0}"
# Editable: the kernels and the checker import polyglot_lab from the source, beside its catalogue (exercises/).
"$ROOT/venv/bin/pip" install -q -e "$ROOT/source"
"$ROOT/venv/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
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
    graded = []
    for spec in modules:
        path, note = find(submission, spec, modules)
        result = grade_module(path, spec, "submission", device, hide=(results.parent,))
        result.note = note
        graded.append(result)
    payload = gradescope_results(LearnerResult("submission", graded))
    atomic_write(results, json.dumps(payload, indent=2))
    return payload


def find(submission: Path, spec: ModuleSpec, modules: list[ModuleSpec]) -> tuple[Path | None, str | None]:
    """The module's notebook in the submission, and a note for the learner when it is not the exact name: the exact
    name, else its only near match (graders.grade.find_notebook: "00_Setup (1).ipynb", a subfolder), else, when one
    module is graded, the only .ipynb uploaded (anywhere in the upload, checkpoints left out)."""
    from graders.grade import find_notebook

    path, note = find_notebook(submission, spec, modules)
    if path is not None or note is not None or len(modules) != 1:
        return path, note
    notebooks = sorted(p for p in submission.rglob("*.ipynb") if p.is_file() and ".ipynb_checkpoints" not in p.parts
                       and not any(part.startswith(".") for part in p.relative_to(submission).parts))
    if len(notebooks) == 1:
        name = notebooks[0].relative_to(submission).as_posix()
        return notebooks[0], (f"{spec.notebook_name} was not found: graded {name} instead, the only notebook "
                              f"uploaded. Name it {spec.notebook_name} next time.")
    return None, None


def error_results(results: Path, message: str) -> None:
    """A results.json that says the autograder itself failed (Gradescope then shows the message, not a blank)."""
    from graders.reports import atomic_write
    atomic_write(results, json.dumps({"score": 0, "output": message, "tests": []}))
