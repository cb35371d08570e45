"""The learner release: nothing shipped imports the grader, a built release holds no answer, and a fresh install
checks a learner notebook in a real kernel."""
import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import MODULES
from graders import release
from graders.generate import imported_modules, remove_markers
from polyglot_lab.catalogue import REPO, load_catalogue, load_module

LEARNER_SIDE = REPO / "polyglot_lab"


def graders_imports(path: Path) -> list[str]:
    return [f"{path.relative_to(REPO)}:{line}" for name, line in imported_modules(path.read_text(encoding="utf-8"))
            if name.split(".")[0] == "graders"]


def test_no_file_of_the_learner_package_imports_the_grader():
    found = [hit for path in sorted(LEARNER_SIDE.rglob("*.py")) for hit in graders_imports(path)]
    assert not found, found


def test_the_in_notebook_checks_import_and_run_with_the_grader_out_of_reach():
    """Each module's in-notebook checks and the Notebook class import in a process where `import graders` fails."""
    modules = [load_catalogue()[m].notebook_checks_module for m in MODULES]
    script = ("import sys; sys.modules['graders'] = None\n"
              "import importlib, polyglot_lab\n"
              f"for name in {modules!r}:\n"
              "    registry = importlib.import_module(name).registry\n"
              "    print(name, len(registry.checks))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=LEARNER_SIDE.parent.parent,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    counts = dict(line.split() for line in run.stdout.strip().splitlines())
    for module_id in MODULES:
        spec = load_catalogue()[module_id]
        notebook = sum(c.in_notebook for e in spec.exercises for c in e.checks)
        assert int(counts[spec.notebook_checks_module]) == notebook


def test_the_released_catalogue_keeps_the_hidden_points_and_nothing_else_of_them(tmp_path):
    for path in sorted((REPO / "exercises").glob("*.toml")):
        (tmp_path / path.name).write_text(release.stripped_catalogue(path), encoding="utf-8")
        full, stripped = load_module(path), load_module(tmp_path / path.name)
        assert [e.id for e in stripped.exercises] == [e.id for e in full.exercises]
        for mine, theirs in zip(stripped.exercises, full.exercises):
            assert not any(c.hidden for c in mine.checks)
            assert [c.id for c in mine.checks] == [c.id for c in theirs.checks if not c.hidden]
            assert [c.runs for c in mine.checks] == [c.runs for c in theirs.checks if not c.hidden]
            assert mine.hidden_points == theirs.hidden_points
            assert (mine.hints, mine.asks, mine.artifacts) == (theirs.hints, theirs.asks, theirs.artifacts)
    assert any(load_module(tmp_path / p.name).exercise("seeding").hidden_points for p in tmp_path.glob("00_*.toml"))


def test_the_search_finds_each_kind_of_leak(tmp_path):
    """A crafted wheel with a solution line, a hidden check's title, a line of the reference transformer and an import
    of the grader: each is named."""
    answer, where = next(iter(release.solution_lines().items()))
    module, ids, title = release.hidden_checks()[0]
    grader_line, grader_file = next((line, f) for line, f in release.grader_lines().items()
                                    if f == "graders/reference_transformer.py")
    wheel = tmp_path / "leaky-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("polyglot_lab/clean.py", "x = 1\n")
        archive.writestr("polyglot_lab/answer.py", f"def f():\n    {answer}\n")
        archive.writestr("polyglot_lab/notes.md", f"the last check: {title}\n")
        archive.writestr("polyglot_lab/model.py", f"    {grader_line}\n")
        archive.writestr("polyglot_lab/uses.py", "from graders.data import holdout_digits\n")
        archive.writestr("graders/grade.py", "")
    problems = release.release_problems(wheel)
    assert any(p.startswith(f"{wheel.name}: graders/grade.py is a file of the grader") for p in problems), problems
    assert any("answer.py holds a line of " + where in p for p in problems), problems
    assert any(f"notes.md names the hidden check {module} {ids}" in p for p in problems), problems
    assert any(f"model.py holds a line of {grader_file}" in p for p in problems), problems
    assert any("uses.py imports the grader" in p for p in problems), problems
    assert not any("clean.py" in p for p in problems)


def fresh_venv(where: Path) -> Path:
    """A new virtual environment whose only extra path is the project environment's site-packages (the frameworks,
    not installed again): the editable install of this repository does not reach it, so `polyglot_lab` comes only
    from what is installed into it, and `graders` from nowhere."""
    subprocess.run([sys._base_executable, "-m", "venv", str(where)], check=True, capture_output=True)
    python = where / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "frameworks.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def wheel_names(built: list[Path]) -> list[str]:
    with zipfile.ZipFile(next(p for p in built if p.suffix == ".whl")) as archive:
        return archive.namelist()


ADDRESS = "https://example.org/polyglot_lab_course.whl"


@pytest.fixture(scope="module")
def first_modules(tmp_path_factory) -> list[Path]:
    """The release of modules 00 and 01, built once (the build searches it and raises on any answer)."""
    return release.build(tmp_path_factory.mktemp("release"), address=ADDRESS,
                         modules=["00_setup", "01_keras_prototype"])


def test_a_whole_release_carries_only_the_models_later_modules_start_from(tmp_path):
    """Every module: nothing of the answer key but modules 01 and 02's models, which modules 02-04 start from (the
    build raises on anything else), and `make release` says so."""
    built = release.build(tmp_path / "all")
    assert any(p.name.endswith(".tar.gz") for p in built)
    names = wheel_names(built)
    assert {f"polyglot_lab/checks/{m}.py" for m in ("m00_setup", "m05_capstone")} <= set(names)
    assert not any(n.startswith(("graders/", "solutions/")) for n in names)
    notes = release.carried_forward(built[0])
    assert len(notes) == 2, notes
    assert any("carried/keras_baseline.py holds the answer of module 01_keras_prototype" in n for n in notes)
    assert any("carried/digits_models.py holds the answer of module 02_pytorch_eager" in n for n in notes)


def test_a_release_of_the_first_modules_holds_no_answer_at_all(first_modules):
    built = first_modules
    names = wheel_names(built)
    assert release.carried_forward(built[0]) == []
    assert not any("/carried/" in n and not n.endswith("__init__.py") for n in names)
    assert not any("m02_" in n or "02_pytorch" in n for n in names), names
    licences = [n for n in names if n.endswith(("/LICENSE", "/LICENSE-content.md"))]
    assert len(licences) == 2, names  # the licences travel with the course they license


@pytest.mark.slow
def test_the_release_installs_fresh_and_checks_a_learner_notebook(tmp_path, first_modules):
    built = first_modules
    wheel = next(p for p in built if p.suffix == ".whl")
    assert "polyglot_lab/notebooks/00_setup.ipynb" in wheel_names(built)

    python = fresh_venv(tmp_path / "venv")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True)
    workspace = tmp_path / "work"
    got = subprocess.run([str(python), "-m", "polyglot_lab", "get", str(workspace)], check=True, capture_output=True,
                         text=True, cwd=tmp_path).stdout
    assert f"new      {workspace / '00_setup.ipynb'}" in got

    # the learner's notebook, with exercise `versions` solved as the master solves it
    nb = nbformat.read(workspace / "00_setup.ipynb", as_version=4)
    master = nbformat.read(REPO / "solutions" / "00_setup.ipynb", as_version=4)
    solved = next(c for c in master.cells if "solution:versions" in c.metadata.get("tags", []))
    cells = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "nbval-ignore-output" in tags and "check:versions" not in tags:
            continue
        if "solution:versions" in tags:
            cell.source = remove_markers(solved.source)
        cells.append(cell)
        if "check:versions" in tags:
            break
    cells.append(nbformat.v4.new_code_cell(
        "import importlib.util\nprint('package', polyglot_lab.__file__)\nprint('graders', importlib.util.find_spec('graders'))"))
    nb.cells = cells
    assert "colab-install" in nb.cells[0].metadata.get("tags", []) and repr(ADDRESS) in nb.cells[0].source

    kernels = tmp_path / "kernels" / "fresh"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh install", "language": "python"}))
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    km = KernelManager(kernel_name="fresh", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels.parent)]))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLYGLOT_GRADING")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", KERAS_BACKEND="tensorflow")
    NotebookClient(nb, km=km, timeout=300, resources={"metadata": {"path": str(workspace)}}).execute(env=env)

    def text(cell) -> str:
        """What a cell printed, and the plain-text twin of what it displayed (grader.check's report)."""
        return "".join(o.get("text", "") if o.output_type == "stream" else o.get("data", {}).get("text/plain", "")
                       for o in cell.outputs if o.output_type in ("stream", "display_data"))

    checked = text(nb.cells[-2])
    assert checked.startswith("versions: 1/1 points") and "✔" in checked, checked
    assert "✔" in nb.cells[-2].outputs[0].data["text/html"], "the report has its HTML in the notebook"
    where = text(nb.cells[-1])
    assert f"package {tmp_path / 'venv'}" in where and "graders None" in where, where


def test_the_notebook_names_what_is_checked_only_when_you_submit(catalogue):
    """grader.check lists each submission-only check by its title, and the hidden checks by their points only."""
    from polyglot_lab.notebook import Notebook

    spec = catalogue["02_pytorch_eager"]
    save = spec.exercise("save")
    later = [c for c in save.checks if not c.in_notebook]
    assert later and not any(c.hidden for c in later)
    said = Notebook._format(save, [])
    for check in later:
        assert f"• {check.title} ({check.points:g} pt): checked when you submit" in said
    hooks = spec.exercise("hooks")
    hidden = [c for c in hooks.checks if c.hidden]
    said = Notebook._format(hooks, [])
    assert f"• hidden checks ({sum(c.points for c in hidden):g} pt): checked when you submit" in said
    assert not any(c.title in said for c in hidden)


@pytest.mark.parametrize("softmax", [True, False], ids=["valid", "logits_out"])
def test_in_notebook_checks_give_the_graders_verdicts(tmp_path, softmax):
    """Module 01's `model` through its real probe: the checks shipped to learners (a plain child process as the
    checker) and the grader's (the sandboxed checker) agree, check by check, on a valid model and on a mistake."""
    import importlib

    import keras

    from graders.checks import CheckContext as GraderContext
    from graders.checks import m01_keras_prototype as m01
    from mistakes import run_probe, verdicts
    from polyglot_lab.checking import CheckContext as NotebookContext

    def build_model():
        features = keras.Input(shape=(64,))
        hidden = keras.layers.Dense(32, activation="relu")(features)
        return keras.Model(features, keras.layers.Dense(10, activation="softmax" if softmax else None)(hidden))

    shipped = importlib.import_module(load_catalogue()["01_keras_prototype"].notebook_checks_module).registry
    found = {}
    for name, ctx, registry in (("grader", GraderContext(tmp_path / "grader", 5, "cpu"), m01.registry),
                                ("notebook", NotebookContext(tmp_path / "notebook", 5, "cpu"), shipped)):
        try:
            run_probe(ctx, registry, "polyglot_lab.probes.m01_keras_prototype", "model", build_model=build_model)
            found[name] = verdicts(ctx, registry, "model")
        finally:
            ctx.close()
    spec = load_catalogue()["01_keras_prototype"].exercise("model")
    in_notebook = [c.id for c in spec.checks if c.in_notebook]
    assert in_notebook
    for check_id in in_notebook:
        grader, notebook = found["grader"][check_id], found["notebook"][check_id]
        assert (notebook.status, notebook.message) == (grader.status, grader.message), check_id
    assert any(r.status == "failed" for r in found["grader"].values()) == (not softmax)
