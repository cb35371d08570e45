"""The teaching text is reviewed like code (graders/teaching.py), each module is sized for a sitting
(graders/sizing.py), and long modules come in parts with their own scores (the catalogue's [[module.parts]])."""
from __future__ import annotations

import contextlib
import copy
import io
import re

import nbformat
import pytest

from graders import sizing
from graders.generate import SOLUTIONS, GenerateError
from graders.teaching import teaching_problems
from polyglot_lab import course
from polyglot_lab.catalogue import CatalogueError, load_catalogue, load_module

CATALOGUE = load_catalogue()
MASTERS = {m: nbformat.read(SOLUTIONS / f"{m}.ipynb", as_version=4) for m in CATALOGUE}


SIZES = sizing.measure_course(MASTERS)


@pytest.mark.parametrize("module_id", sorted(CATALOGUE))
def test_every_master_has_its_teaching_text(module_id):
    assert teaching_problems(MASTERS[module_id], CATALOGUE[module_id], SIZES[module_id]) == []


# -- mutants: each requirement of the teaching text fails when it is missing ----------------------------------------
def _mutant(module_id="02_pytorch_eager"):
    return copy.deepcopy(MASTERS[module_id]), CATALOGUE[module_id]


def test_an_exercise_without_its_why_is_named():
    nb, spec = _mutant()
    solution = next(i for i, c in enumerate(nb.cells) if "solution:silu" in c.metadata.get("tags", []))
    previous_check = max(i for i, c in enumerate(nb.cells[:solution]) if "check:layer_norm" in c.metadata.get("tags", []))
    for cell in nb.cells[previous_check:solution]:
        cell.source = cell.source.replace("**Why.**", "**Because.**")
    problems = teaching_problems(nb, spec)
    assert problems == ["exercise 'silu': no '**Why.**' paragraph in the text before its solution cell"], problems


def test_a_demo_that_borrows_a_learners_answer_is_caught():
    nb, spec = _mutant()
    demo = [c for c in nb.cells if "demo" in c.metadata.get("tags", [])][-1]  # after exercise 1's solution cell
    demo.source += "\ndemo_late = port_keras_weights"  # a solution cell's function: a stub in the learner edition
    problems = teaching_problems(nb, spec)
    assert any("uses port_keras_weights" in p for p in problems), problems


def test_a_recap_of_four_ideas_and_links_off_the_official_docs_are_caught():
    nb, spec = _mutant()
    closing = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    closing.source = closing.source.replace("## What to keep\n", "## What to keep\n- a fourth idea\n")
    closing.source = closing.source.replace("https://pytorch.org", "https://pytorch.org.example.com")
    closing.source = closing.source.replace("https://docs.pytorch.org", "https://example.com")
    problems = teaching_problems(nb, spec)
    assert any("exactly three" in p for p in problems), problems
    assert teaching_problems(MASTERS["02_pytorch_eager"], spec) == []


def test_no_course_diagram_no_opening_section_and_no_part_score_are_caught():
    nb, spec = _mutant()
    nb.cells = [c for c in nb.cells if "show_lifecycle" not in c.source and c.source.strip() != 'grader.score("B")']
    opening = [c for c in nb.cells if c.cell_type == "markdown"][0]
    opening.source = opening.source.replace("### It assumes", "### Before you start")
    problems = teaching_problems(nb, spec)
    assert any("draws the course" in p for p in problems), problems
    assert any("'### It assumes'" in p for p in problems), problems
    assert any(p.startswith("part B: no `grader.score(\"B\")`") for p in problems), problems


def test_a_long_exercise_without_steps_is_caught():
    nb, spec = _mutant("04_tensorflow_serving")
    solution = next(i for i, c in enumerate(nb.cells) if "solution:converter" in c.metadata.get("tags", []))
    for cell in nb.cells[:solution]:
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"^(\d+)\. ", r"Step \1: ", cell.source, flags=re.MULTILINE)
    problems = teaching_problems(nb, spec, SIZES["04_tensorflow_serving"])
    assert any(p.startswith("exercise 'converter' takes about") and "0 numbered step(s)" in p for p in problems), problems


def test_going_further_needs_official_documentation():
    nb, spec = _mutant("03_onnx_export")
    closing = [c for c in nb.cells if c.cell_type == "markdown"][-1]
    further = closing.source.index("## Going further")
    closing.source = closing.source[:further] + "## Going further\n- [a blog](https://example.com/onnx)\n"
    assert any("official documentation" in p for p in teaching_problems(nb, spec))


# -- sizing: counted from the notebook, at a stated pace -------------------------------------------------------------
def _tiny(cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        maker = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(maker(source, metadata={"tags": tags}))
    return nb


def test_sizing_counts_words_given_lines_new_and_carried_solution_lines():
    carried = "values = {name: run(node) for name, node in graph}"
    nb = _tiny([
        ("md", "# 09 · Tiny\n\n### Time\n<!-- sizing -->forty words that are not counted<!-- /sizing -->", []),
        ("md", "**Why.** " + "word " * 149, []),
        ("code", "x = 1\n# a comment\n\ndef f():\n    ### BEGIN SOLUTION\n    a = 1\n    " + carried
         + "\n    ### END SOLUTION", ["solution:f"]),
        ("code", 'grader.check("f")', ["check:f"]),
    ])
    size = sizing.measure(nb, {carried}, "09_tiny")
    (f,) = size.exercises
    assert (f.words, f.new_lines, f.carried_lines) == (6 + 150, 1, 1)  # "# 09 · Tiny ### Time", the Why
    assert f.given_lines == 3  # x = 1, def f():, grader.check(...)
    pace = sizing.PACE
    assert f.minutes() == pytest.approx(156 / pace.words_per_minute + 3 / pace.given_lines_per_minute
                                        + pace.minutes_per_line + pace.minutes_per_carried_line
                                        + pace.minutes_per_check)
    assert sizing.fmt_minutes(61) == "1 h 05 min" and sizing.fmt_minutes(20.2) == "25 min"


def test_the_time_section_is_written_from_the_counts_and_a_missing_block_is_an_error():
    nb = _tiny([("md", "# 09\n### Time\n<!-- sizing --><!-- /sizing -->", []),
                ("code", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", ["solution:f"]),
                ("code", 'grader.check("f")', ["check:f"])])
    size = sizing.measure(nb, set(), "09_tiny")
    sizing.with_sizing(nb, sizing.sizing_text(size), "09_tiny")
    assert "How this is measured" in nb.cells[0].source and sizing.fmt_minutes(size.minutes()) in nb.cells[0].source
    nb.cells[0].source = "# 09"
    with pytest.raises(GenerateError, match="09_tiny.ipynb: the opening cell has no <!-- sizing -->"):
        sizing.with_sizing(nb, "x", "09_tiny")


def test_every_module_and_every_part_fits_a_sitting():
    sizes = sizing.measure_course(MASTERS)
    for module_id, size in sizes.items():
        parts = CATALOGUE[module_id].parts
        sittings = ([(f"{module_id} part {p.id}", sum(size.exercise(e).minutes() for e in p.exercises))
                     for p in parts] if parts else [(module_id, size.minutes())])
        for name, minutes in sittings:
            assert minutes <= sizing.SITTING_MINUTES, f"{name} takes {sizing.fmt_minutes(minutes)}: split it"


def test_the_stated_times_are_the_counted_ones():
    """The generator fills the Time sections; this holds the masters to it (the drift test holds the rest)."""
    sizes = sizing.measure_course(MASTERS)
    for module_id, nb in MASTERS.items():
        opening = next(c for c in nb.cells if c.cell_type == "markdown").source
        assert sizing.sizing_text(sizes[module_id], CATALOGUE[module_id].parts) in opening, module_id


# -- parts: sittings with their own scores --------------------------------------------------------------------------
def test_a_part_scores_only_its_exercises():
    import polyglot_lab

    grader = polyglot_lab.Notebook("02_pytorch_eager", workdir=".")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        grader.score("D")
    lines = out.getvalue().splitlines()
    assert lines[0] == "02_pytorch_eager, part D: What eager mode is for"
    assert [line.split()[0] for line in lines[1:]] == ["hooks", "branch", "total"]
    with pytest.raises(KeyError, match="no part 'E' \\(its parts: A, B, C, D\\)"):
        grader.score("E")


def test_parts_must_cover_the_exercises_in_order(tmp_path):
    text = (CATALOGUE["02_pytorch_eager"].path).read_text(encoding="utf-8")
    swapped = text.replace('exercises = ["hooks", "branch"]', 'exercises = ["branch", "hooks"]')
    assert swapped != text
    path = tmp_path / "02_pytorch_eager.toml"
    path.write_text(swapped, encoding="utf-8")
    with pytest.raises(CatalogueError, match="02_pytorch_eager.toml: \\[\\[module.parts\\]\\] must list every exercise"):
        load_module(path)


def test_the_learner_release_keeps_the_parts(tmp_path):
    from graders.release import stripped_catalogue

    spec = CATALOGUE["05_capstone"]
    path = tmp_path / "05_capstone.toml"
    path.write_text(stripped_catalogue(spec.path), encoding="utf-8")
    assert load_module(path).parts == spec.parts


# -- the course diagram ---------------------------------------------------------------------------------------------
def test_the_course_diagram_has_every_module_and_refuses_an_unknown_one():
    for module_id in CATALOGUE:
        assert course.stage(module_id).module == module_id
    with pytest.raises(KeyError, match="no module '07_nope'"):
        course.lifecycle_figure("07_nope")
    svg = course.svg_text()
    assert svg == course.svg_text() and "02 · Custom model" in svg  # stable bytes; text kept as text
