"""Learner editions and example submissions are generated from the masters, and never drift."""
import pytest

from graders.generate import GenerateError, generate, strip_solutions


def test_generated_files_match_their_masters():
    assert generate(check=True) == [], "run `make notebooks`"


def test_strip_solutions_keeps_indentation_and_code_around():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\nprint(f)"
    assert strip_solutions(source) == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(f)"


def test_a_stub_says_which_exercise_stops_run_all_and_what_to_do(catalogue):
    """Run All on a learner edition stops at the first stub with the exercise's name, title and next step."""
    import nbformat

    from polyglot_lab.catalogue import REPO
    nb = nbformat.read(REPO / "notebooks" / "01_keras_prototype.ipynb", as_version=4)
    stub = next(c for c in nb.cells if "solution:split" in c.metadata.get("tags", []))
    with pytest.raises(NotImplementedError) as stopped:
        exec(stub.source, {"X": None, "y": None})  # the cell calls prepare_data(X, y, seed=42) itself
    title = catalogue["01_keras_prototype"].exercise("split").title
    assert str(stopped.value) == (f"Exercise split ({title}) is yours to write: replace this line with your code, "
                                  "then run grader.check('split').")


def test_two_regions_in_one_cell():
    source = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\nb = 2\n### BEGIN SOLUTION\nc = 3\n### END SOLUTION"
    out = strip_solutions(source)
    assert out.count("raise NotImplementedError()") == 2 and "b = 2" in out and "a = 1" not in out


def test_unbalanced_markers_are_an_error():
    with pytest.raises(GenerateError, match="unbalanced"):
        strip_solutions("### BEGIN SOLUTION\nx = 1\n", "cell 3")


def test_learner_editions_hold_no_solution_and_no_outputs():
    import nbformat
    from polyglot_lab.catalogue import REPO
    for path in (REPO / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            assert "BEGIN SOLUTION" not in cell.source, path
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path


def test_every_learner_edition_cell_is_valid_python():
    """A stub never cuts a statement in two (a solution marker inside a multi-line signature did, in module 04's
    converter): every code cell of every learner edition, and the file each `%%writefile` cell writes, compiles."""
    import nbformat

    from polyglot_lab.catalogue import REPO

    broken = []
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type != "code":
                continue
            source = cell.source
            if source.startswith("%%writefile"):
                source = source.split("\n", 1)[1] if "\n" in source else ""
            elif source.startswith("%%"):
                continue
            lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            try:
                compile("\n".join(lines), f"{path.name} cell {index}", "exec")
            except SyntaxError as exc:
                broken.append(f"{path.name} cell {index}: {exc}")
    assert broken == []
