"""The catalogue is the one place that says what a module asks: it and the graders agree."""
import pytest

from conftest import MODULES
from polyglot_lab.catalogue import CatalogueError, load_catalogue, load_module
from graders.checks import load_registry


@pytest.mark.parametrize("module", MODULES)
def test_every_catalogue_check_is_implemented_and_nothing_else(module, catalogue):
    spec = catalogue[module]
    registry = load_registry(spec.checks_module)
    declared = {(e.id, c.id) for e in spec.exercises for c in e.checks}
    assert declared == set(registry.checks)
    assert set(registry.input_makers) <= {e.id for e in spec.exercises}


@pytest.mark.parametrize("module", MODULES)
def test_every_exercise_has_tagged_cells_and_hints(module, catalogue):
    import nbformat
    from polyglot_lab.catalogue import REPO
    nb = nbformat.read(REPO / "solutions" / f"{module}.ipynb", as_version=4)
    tags = {t for cell in nb.cells for t in cell.metadata.get("tags", [])}
    for exercise in catalogue[module].exercises:
        assert f"solution:{exercise.id}" in tags and f"check:{exercise.id}" in tags, exercise.id
        assert exercise.hints and exercise.title


def test_bad_catalogue_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "09_bad.toml"
    bad.write_text("[module]\nid = '09_bad'\n[[exercise]]\ntitle = 'x'\n")
    with pytest.raises(CatalogueError, match=r"09_bad.toml.*no 'id'"):
        load_module(bad)
    bad.write_text("not = [toml")
    with pytest.raises(CatalogueError, match="09_bad.toml: not valid TOML"):
        load_module(bad)
    (tmp_path / "other.toml").write_text(
        "[module]\nid='x'\ntitle='x'\nchecks='a'\nprobes='b'\n[[exercise]]\nid='e'\ntitle='t'\n"
        "[[exercise.check]]\nid='c'\npoints=1\n")
    bad.unlink()
    with pytest.raises(CatalogueError, match="named 'other'"):
        load_catalogue(tmp_path)


def test_checks_take_artifact_names_from_the_catalogue_and_open_no_other(tmp_path, catalogue):
    from graders.checks import CheckContext, Registry, UndeclaredArtifact
    from graders.checks import m02_pytorch_eager as m02

    spec = catalogue["02_pytorch_eager"]
    assert (m02.PROGRAM_FILE, m02.STATE_FILE) == spec.exercise("save").artifacts
    ctx = CheckContext(tmp_path, seed=1, device="cpu", artifacts=spec.artifact_names)
    (tmp_path / "stray.pt").write_bytes(b"")
    with pytest.raises(UndeclaredArtifact, match="stray.pt"):
        ctx.artifact("stray.pt", "save")
    with pytest.raises(CatalogueError, match="lists no artifacts"):
        Registry("02_pytorch_eager").artifacts("port")
