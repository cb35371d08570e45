"""The learner release: what learners install, and nothing of the answer key.

    make release   ->  build/release/dist/polyglot_lab_course-<version>-py3-none-any.whl (and the sdist)

Like nbgrader's `release_assignment` and otter-grader's `assign`, it writes the student copy: the learner package
(polyglot_lab/: the in-notebook checks, the probes, the check core, the datasets learners use), the learner
notebooks (generated from the masters, solutions removed) and the catalogue without its hidden checks (an exercise
keeps only their points: `hidden_points`). Never in it: solutions/, graders/ (hidden checks, reference converter,
codec and transformer, the held-out digits), examples/, tests/. `release_problems` searches a built release for all
of those, and `make release` refuses to finish while it finds any.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from polyglot_lab.catalogue import CATALOGUE_DIR, REPO, load_catalogue
from polyglot_lab.compat import tomllib

DISTRIBUTION = "polyglot-lab-course"
# What the learner package needs at run time: the project's dependencies less the grader's own.
GRADER_ONLY = ("nbclient", "nbformat", "rich", "psutil")
LEARNER_README = REPO / "docs" / "learners.md"
SKIPPED = ("__pycache__", ".ipynb_checkpoints")


class ReleaseError(RuntimeError):
    """The release would hold something of the answer key, or could not be built; the message says what."""


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def learner_dependencies() -> list[str]:
    def name(requirement: str) -> str:
        return requirement.split(";")[0].split("[")[0].strip().split(" ")[0].rstrip("<>=!~").split("<")[0] \
            .split(">")[0].split("=")[0].split("!")[0].split("~")[0].lower()
    return [r for r in project()["dependencies"] if name(r) not in GRADER_ONLY]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def stripped_catalogue(path: Path) -> str:
    """The catalogue file at `path` without its hidden checks: each exercise says only how many points they carry."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    lines = [f"# The learner release's catalogue of {path.stem}, written by `make release`: hidden checks are left",
             "# out (their points are the exercise's hidden_points), and are graded when you submit.", "[module]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in data["module"].items()]
    for exercise in data.get("exercise", []):
        lines += ["", "[[exercise]]"]
        checks = exercise.get("check", [])
        hidden = sum(float(c["points"]) for c in checks if c.get("hidden"))
        lines += [f"{key} = {_toml_value(value)}" for key, value in exercise.items() if key != "check"]
        if hidden:
            lines.append(f"hidden_points = {_toml_value(hidden)}")
        for check in checks:
            if check.get("hidden"):
                continue
            lines += ["  [[exercise.check]]"] + [f"  {key} = {_toml_value(value)}" for key, value in check.items()]
    return "\n".join(lines) + "\n"


def learner_pyproject(version: str) -> str:
    meta = project()
    deps = "".join(f"    {json.dumps(d)},\n" for d in learner_dependencies())
    return f"""[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{DISTRIBUTION}"
version = "{version}"
description = "Polyglot Lab, the learner's edition: the course notebooks and their in-notebook checks."
readme = "README.md"
requires-python = {json.dumps(meta["requires-python"])}
dependencies = [
{deps}]

[project.scripts]
polyglot-lab = "polyglot_lab.__main__:main"

[tool.setuptools.packages.find]
include = ["polyglot_lab*"]

[tool.setuptools.package-data]
polyglot_lab = ["exercises/*.toml", "notebooks/*.ipynb"]
"""


COLAB_CELL = """# On Google Colab or Kaggle, this cell installs the course into the runtime; anywhere else it does nothing.
import os, subprocess, sys  # noqa: E401

COURSE = {address!r}  # where your instructor published the course (pip install accepts it as it is)
if "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ:
    if not COURSE:
        raise RuntimeError("This copy of the course does not say where to install it from: ask your instructor.")
    # pip keeps the frameworks the runtime has where they are in the course's ranges, and replaces the others.
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", COURSE], check=True)"""


def learner_notebook(path: Path, address: str) -> str:
    """A learner notebook as released: the generated learner edition, with the Colab/Kaggle install cell first."""
    import nbformat

    from graders.generate import dumps
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(COLAB_CELL.format(address=address), metadata={"tags": ["colab-install"]})
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0  # after the title
    nb.cells.insert(at, cell)
    return dumps(nb)


def stage(source: Path, address: str = "") -> Path:
    """Write the release's source tree to `source` (emptied first); `address` is where the course is published, for
    the notebooks' Colab/Kaggle install cell (a git URL, a wheel's address, a package name)."""
    shutil.rmtree(source, ignore_errors=True)
    package = source / "polyglot_lab"
    shutil.copytree(REPO / "polyglot_lab", package, ignore=shutil.ignore_patterns(*SKIPPED))
    (package / "exercises").mkdir()
    for path in sorted(CATALOGUE_DIR.glob("*.toml")):
        (package / "exercises" / path.name).write_text(stripped_catalogue(path), encoding="utf-8")
    (package / "notebooks").mkdir()
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        (package / "notebooks" / path.name).write_text(learner_notebook(path, address), encoding="utf-8")
    version = project()["version"]
    (source / "pyproject.toml").write_text(learner_pyproject(version), encoding="utf-8")
    shutil.copy(LEARNER_README, source / "README.md")
    return source


def build(out: Path, address: str = "") -> list[Path]:
    """Stage the release under out/src, build its wheel and sdist into out/dist, and search both for the answer
    key; returns the two files. Raises ReleaseError naming every leak found."""
    out = Path(out)
    source = stage(out / "src", address)
    dist = out / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)
    script = ("import sys; from setuptools import build_meta as b; "  # build_wheel rewrites sys.argv: read it first
              "out = sys.argv[1]; b.build_wheel(out); b.build_sdist(out)")
    run = subprocess.run([sys.executable, "-c", script, str(dist.resolve())], cwd=source, capture_output=True,
                         text=True)
    if run.returncode != 0:
        raise ReleaseError(f"building the learner package in {source} failed: {run.stderr.strip()[-2000:]}")
    for scratch in ("build", f"{DISTRIBUTION.replace('-', '_')}.egg-info"):
        shutil.rmtree(source / scratch, ignore_errors=True)
    built = sorted(dist.glob("*.whl")) + sorted(dist.glob("*.tar.gz"))
    problems = [p for path in built for p in release_problems(path)]
    if problems:
        raise ReleaseError("the learner release holds part of the answer key:\n  " + "\n  ".join(problems))
    return built


def carried_forward(archive: Path) -> list[str]:
    """The solution lines a built release holds in the CARRIED_FORWARD files, one line each."""
    answers = solution_lines()
    members = _members(archive)
    return [f"{name} ({why}) holds {len(found)} line(s) of " + ", ".join(sorted(set(answers[line] for line in found)))
            for name, text in members.items() for suffix, why in CARRIED_FORWARD.items() if name.endswith(suffix)
            for found in [sorted({line.strip() for line in text.split("\n")} & set(answers))] if found]


# -- what must never ship ----------------------------------------------------------------------------------------
def _members(archive: Path) -> dict[str, str]:
    """{name: text} of every file in a wheel or sdist (text read as UTF-8, undecodable bytes replaced)."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as wheel:
            return {n: wheel.read(n).decode("utf-8", "replace") for n in wheel.namelist() if not n.endswith("/")}
    with tarfile.open(archive) as sdist:
        found = {}
        for member in sdist.getmembers():
            handle = sdist.extractfile(member) if member.isfile() else None
            if handle is not None:
                found[member.name] = handle.read().decode("utf-8", "replace")
        return found


# Lines of a solution that are not its answer: the same API call written where the course needs it for another reason.
NOT_ANSWERS = {
    "options = ort.SessionOptions()": "ONNX Runtime's constructor, which the checker's ops call too",
    "mean = x.mean(-1, keepdim=True)": "the first line of the wrong layer_norm variants that name a learner's mistake "
                                       "(the reference is torch's own F.layer_norm)",
}
# Files that carry an earlier module's answer because a later module starts from it (module 02 ports module 01's
# Keras model; modules 03 and 04 export module 02's models). They ship, and `make release` says so: release a
# module's successor only after the module is due. Left to do: ship them with the module that needs them.
CARRIED_FORWARD = {
    "polyglot_lab/models.py": "modules 02-04 start from the models of modules 01 and 02",
}


def solution_lines() -> dict[str, str]:
    """{a line of a master's solution region: where it is}: the lines long enough to be an answer rather than
    scaffolding (a learner edition keeps what surrounds the regions, so those lines are not counted)."""
    import nbformat

    from graders.generate import _REGION, SOLUTIONS, learner_edition
    found: dict[str, str] = {}
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        master = nbformat.read(path, as_version=4)
        kept = {line.strip() for cell in learner_edition(master).cells for line in cell.source.split("\n")}
        for index, cell in enumerate(master.cells):
            if cell.cell_type != "code":
                continue
            for region in _REGION.finditer(cell.source):
                for line in region.group(0).split("\n")[1:-1]:
                    text = line.strip()
                    if len(text) >= 30 and not text.startswith("#") and text not in kept and text not in NOT_ANSWERS:
                        found.setdefault(text, f"solutions/{path.name}, cell {index}")
    return found


def hidden_checks() -> list[tuple[str, str, str]]:
    """(module, exercise.check id, title) of every hidden check."""
    return [(spec.id, f"{e.id}.{c.id}", c.title) for spec in load_catalogue().values()
            for e in spec.exercises for c in e.checks if c.hidden]


GRADER_FILES = ("reference_transformer.py", "serving_codec.py", "data.py")


def grader_lines() -> dict[str, str]:
    """Distinctive lines of the grader's reference code and grader-held data (graders/<GRADER_FILES>) and of the
    checks files outside their notebook and kernel blocks (the submission-only checks): none of them ships."""
    from graders.generate import _KERNEL_BLOCK, _NOTEBOOK_BLOCK
    checks = sorted((REPO / "graders" / "checks").glob("m*.py"))
    shipped = {line.strip() for path in checks for block in (_KERNEL_BLOCK, _NOTEBOOK_BLOCK)
               for m in block.finditer(path.read_text(encoding="utf-8")) for line in m.group(1).split("\n")}
    found: dict[str, str] = {}
    for path in [REPO / "graders" / name for name in GRADER_FILES] + checks:
        for line in path.read_text(encoding="utf-8").split("\n"):
            line = line.strip()
            if len(line) >= 40 and not line.startswith(("#", "from ", "import ", '"""')) and line not in shipped:
                found.setdefault(line, path.relative_to(REPO).as_posix())
    return found


def release_problems(archive: Path) -> list[str]:
    """Every part of the answer key found in a built wheel or sdist, one line each: a file of solutions/, graders/,
    examples/ or tests/; a line of a master's solution; a hidden check's id or title; a line of the grader's
    reference code, held-out data or submission-only checks; any import of `graders`."""
    members = _members(archive)
    problems = []
    for name in members:
        parts = Path(name).parts
        if {"solutions", "graders", "examples", "tests"} & set(parts):
            problems.append(f"{archive.name}: {name} is a file of the grader or its answers")
    answers, grader = solution_lines(), grader_lines()
    hidden = hidden_checks()
    for name, text in members.items():
        lines = {line.strip() for line in text.split("\n")}
        carried = any(name.endswith(suffix) for suffix in CARRIED_FORWARD)
        for line in sorted(lines & set(answers) if not carried else ()):
            problems.append(f"{archive.name}: {name} holds a line of {answers[line]}'s solution: {line[:80]!r}")
        for line in sorted(lines & set(grader)):
            problems.append(f"{archive.name}: {name} holds a line of {grader[line]}: {line[:80]!r}")
        for module, ids, title in hidden:
            if title in text or ids.split(".")[1] in text:
                problems.append(f"{archive.name}: {name} names the hidden check {module} {ids} ({title!r})")
        if "import graders" in text or "from graders" in text:
            problems.append(f"{archive.name}: {name} imports the grader (graders)")
    return problems
