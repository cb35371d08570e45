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

import functools
import json
import re
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
GRADER_ONLY = ("nbclient", "nbformat", "rich", "psutil", "dask", "cryptography")
LEARNER_README = REPO / "docs" / "learners.md"
SKIPPED = ("__pycache__", ".ipynb_checkpoints")


class ReleaseError(RuntimeError):
    """The release would hold something of the answer key, or could not be built; the message says what."""


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def learner_dependencies() -> list[str]:
    def name(requirement: str) -> str:  # a requirement starts with its project name (PEP 508)
        return re.match(r"[A-Za-z0-9._-]+", requirement).group(0).lower()  # type: ignore[union-attr]
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
    if isinstance(value, dict):  # an inline table: [module]'s parts
        return "{" + ", ".join(f"{key} = {_toml_value(v)}" for key, v in value.items()) + "}"
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
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{DISTRIBUTION}"
version = "{version}"
description = "Polyglot Lab, the learner's edition: the course notebooks and their in-notebook checks."
readme = "README.md"
license = {json.dumps(meta["license"])}
license-files = {json.dumps(meta["license-files"])}
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


def carried_files(released: list[str]) -> dict[str, str]:
    """{a file of polyglot_lab/carried/: the module whose answer it holds} for the files a released module starts
    from (polyglot_lab.models.CARRIED)."""
    from polyglot_lab.models import CARRIED
    numbers = {m[:2] for m in released}
    return {"polyglot_lab/" + where.split(".", 1)[1].replace(".", "/") + ".py": answers
            for where, answers, needed_by in CARRIED.values() if needed_by in numbers}


def _shipped(relative: str, released: list[str]) -> bool:
    """Whether a file of polyglot_lab/ (a path relative to the repository) ships with the `released` modules."""
    parts = relative.split("/")
    if len(parts) == 3 and parts[1] in ("probes", "checks") and parts[2][:1] == "m" and parts[2][1:3].isdigit():
        return any(parts[2].startswith(f"m{m[:2]}_") for m in released)
    if len(parts) == 3 and parts[1] == "carried" and parts[2] != "__init__.py":
        return relative in carried_files(released)
    return True


def _check_imports(package: Path) -> None:
    """Every `polyglot_lab.…` module a shipped file imports is shipped too."""
    from graders.generate import imported_modules
    missing = []
    for path in sorted(package.rglob("*.py")):
        for name, _ in imported_modules(path.read_text(encoding="utf-8")):
            if name.split(".")[0] != "polyglot_lab":
                continue
            target = package.parent / name.replace(".", "/")
            if not (target.with_suffix(".py").is_file() or (target / "__init__.py").is_file()):
                missing.append(f"{path.relative_to(package.parent)} imports {name}, which this release leaves out")
    if missing:
        raise ReleaseError("the release does not hold what its own code imports:\n  " + "\n  ".join(missing))


def stage(source: Path, address: str = "", modules: list[str] | None = None) -> Path:
    """Write the release's source tree to `source` (emptied first): the `modules` given (default all) and what they
    need. `address` is where the course is published, for the notebooks' Colab/Kaggle install cell (a git URL, a
    wheel's address, a package name)."""
    released = modules or [p.stem for p in sorted(CATALOGUE_DIR.glob("*.toml"))]
    shutil.rmtree(source, ignore_errors=True)
    package = source / "polyglot_lab"
    for path in sorted((REPO / "polyglot_lab").rglob("*")):
        relative = path.relative_to(REPO).as_posix()
        if path.is_file() and not set(SKIPPED) & set(path.parts) and _shipped(relative, released):
            (source / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, source / relative)
    (package / "exercises").mkdir()
    (package / "notebooks").mkdir()
    for module_id in released:
        path = CATALOGUE_DIR / f"{module_id}.toml"
        (package / "exercises" / path.name).write_text(stripped_catalogue(path), encoding="utf-8")
        notebook = REPO / "notebooks" / f"{module_id}.ipynb"
        (package / "notebooks" / notebook.name).write_text(learner_notebook(notebook, address), encoding="utf-8")
    _check_imports(package)
    version = project()["version"]
    (source / "pyproject.toml").write_text(learner_pyproject(version), encoding="utf-8")
    shutil.copy(LEARNER_README, source / "README.md")
    for name in project()["license-files"]:  # the licences travel with what they license
        shutil.copy(REPO / name, source / name)
    return source


def build(out: Path, address: str = "", modules: list[str] | None = None) -> list[Path]:
    """Stage the release of `modules` (default all) under out/src, build its wheel and sdist into out/dist, and
    search both for the answer key; returns the two files. Raises ReleaseError naming every leak found."""
    out = Path(out)
    source = stage(out / "src", address, modules)
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


def _answer_carried_by(name: str) -> str | None:
    """The number of the module whose answer a file of polyglot_lab/carried/ holds (None for any other file)."""
    from polyglot_lab.models import CARRIED
    if "/carried/" not in f"/{name}":
        return None
    return next((answers for where, answers, _ in CARRIED.values() if where.rsplit(".", 1)[1] == Path(name).stem),
                None)


def carried_forward(archive: Path) -> list[str]:
    """What of an earlier module's answer a built release carries (polyglot_lab/carried/), one line per file."""
    answers = solution_lines_of()
    said = []
    for name, text in _members(archive).items():
        if "/carried/" not in f"/{name}":
            continue
        found = {answers[line][0] for line in {line.strip() for line in text.split("\n")} & set(answers)}
        if found:
            said.append(f"{name} holds the answer of module {', '.join(sorted(found))}, which a later module in "
                        "this release starts from: release it after that module is due")
    return said


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


def solution_lines() -> dict[str, str]:
    """{line: "solutions/NN_slug.ipynb, cell i"}: see solution_lines_of."""
    return {line: where for line, (_, where) in solution_lines_of().items()}


@functools.lru_cache(maxsize=1)  # the masters, read once per process: every archive is searched for the same lines
def solution_lines_of() -> dict[str, tuple[str, str]]:
    """{a line of a master's solution region: where it is}: the lines long enough to be an answer rather than
    scaffolding (a learner edition keeps what surrounds the regions, so those lines are not counted)."""
    import nbformat

    from graders.generate import _REGION, SOLUTIONS, learner_edition
    found: dict[str, tuple[str, str]] = {}
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
                        found.setdefault(text, (path.stem, f"solutions/{path.name}, cell {index}"))
    return found


def hidden_checks() -> list[tuple[str, str, str]]:
    """(module, exercise.check id, title) of every hidden check."""
    return [(spec.id, f"{e.id}.{c.id}", c.title) for spec in load_catalogue().values()
            for e in spec.exercises for c in e.checks if c.hidden]


GRADER_FILES = ("reference_transformer.py", "serving_codec.py", "data.py")


@functools.lru_cache(maxsize=1)
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
    by_module = solution_lines_of()
    problems = []
    for name in members:
        parts = Path(name).parts
        if {"solutions", "graders", "examples", "tests"} & set(parts):
            problems.append(f"{archive.name}: {name} is a file of the grader or its answers")
    answers, grader = solution_lines(), grader_lines()
    hidden = hidden_checks()
    for name, text in members.items():
        lines = {line.strip() for line in text.split("\n")}
        carried = _answer_carried_by(name)  # an earlier module's answer, carried: that module's lines only
        for line in sorted(lines & set(answers)):
            if carried is not None and by_module[line][0][:2] == carried:
                continue
            problems.append(f"{archive.name}: {name} holds a line of {answers[line]}'s solution: {line[:80]!r}")
        for line in sorted(lines & set(grader)):
            problems.append(f"{archive.name}: {name} holds a line of {grader[line]}: {line[:80]!r}")
        for module, ids, title in hidden:
            if title in text or ids.split(".")[1] in text:
                problems.append(f"{archive.name}: {name} names the hidden check {module} {ids} ({title!r})")
        if "import graders" in text or "from graders" in text:
            problems.append(f"{archive.name}: {name} imports the grader (graders)")
    return problems
