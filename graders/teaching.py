"""The teaching text of a master notebook, reviewed like code: what every module must hold besides its exercises.

- an opening (the first markdown cell): `### You will be able to`, `### It assumes`, `### Time` (its sizing block,
  filled by `make notebooks`) and `### Where it sits`, and a code cell that draws the course with this module marked;
- before each exercise, a paragraph that starts `**Why.**`: the idea the exercise exercises;
- at least one demo (a code cell tagged `demo`) that uses no learner's answer, so it runs in the learner edition;
- in a module with parts (the catalogue's [[module.parts]]), `grader.score("<part>")` after each part's last check;
- a closing (the last markdown cell): `## What to keep` with exactly three bullets, `## Where industry goes next`,
  `## Going further` with links into official documentation, and the notebook's licences (LICENSE_LINE);
- an exercise longer than half an hour (graders/sizing.py) in numbered steps, one idea each.
"""
from __future__ import annotations

import ast
import re

from graders.generate import tag_value
from graders.sizing import BLOCK, EXERCISE_MINUTES, fmt_minutes

OPENING = ("### You will be able to", "### It assumes", "### Time", "### Where it sits")
CLOSING = ("## What to keep", "## Where industry goes next", "## Going further")
WHY = re.compile(r"(^|\n)\*\*Why\.\*\*")
# The frameworks' own documentation, where "Going further" must point.
OFFICIAL = ("pytorch.org", "keras.io", "onnx.ai", "onnxruntime.ai", "tensorflow.org", "ai.google.dev", "numpy.org",
            "scikit-learn.org", "docs.python.org", "jupyter.org", "matplotlib.org")
# The notebooks' licences, stated in each one's last cell (LICENSE-content.md explains them)
LICENSE_LINE = ("*Polyglot Lab: the code in this notebook is MIT-licensed, its text CC BY 4.0 (LICENSE-content.md "
                "in the course's repository); your own answers are yours.*")
_LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


def _texts_before_solutions(nb):
    """(exercise id, the markdown between the previous exercise's check cell and its solution cell) per exercise."""
    text: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            text.append(cell.source)
        exercise = tag_value(cell, "solution:")
        if exercise:
            yield exercise, "\n".join(text)
        if exercise or tag_value(cell, "check:"):
            text = []


def section(text: str, heading: str) -> str | None:
    """The text under `heading` (a whole line) up to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    match = re.search(rf"^{re.escape(heading)}[ \t]*$", text, re.MULTILINE)
    if not match:
        return None
    rest = text[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[:end.start()] if end else rest


def bullets(text: str) -> list[str]:
    return [line for line in text.split("\n") if re.match(r"^\s*[-*] ", line)]


def _sections_problems(text: str, headings: tuple[str, ...], where: str) -> list[str]:
    """Each heading of `headings` present in `text`, with something under it that is not a TODO."""
    problems = []
    for heading in headings:
        body = section(text, heading)
        if body is None:
            problems.append(f"{where} has no '{heading}' section")
        elif not body.strip() or "TODO" in body:
            problems.append(f"{where}: its '{heading}' section is empty or still says TODO")
    return problems


def _opening_problems(nb, module_id: str) -> list[str]:
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    if not markdown:
        return ["no markdown cell: no opening"]
    opening = markdown[0].source
    problems = _sections_problems(opening, OPENING, "the opening (first markdown cell)")
    for heading, least in (("### You will be able to", 3), ("### It assumes", 1)):
        body = section(opening, heading)
        if body is not None and len(bullets(body)) < least:
            problems.append(f"the opening's '{heading}' lists {len(bullets(body))} item(s); it needs {least} or more")
    time = section(opening, "### Time") or ""
    if not BLOCK.search(time):
        problems.append("the opening's '### Time' has no <!-- sizing --><!-- /sizing --> block for make notebooks")
    first_exercise = next((i for i, c in enumerate(nb.cells) if tag_value(c, "solution:")), len(nb.cells))
    call = f"polyglot_lab.course.show_lifecycle({module_id!r})".replace("'", '"')
    if not any(c.cell_type == "code" and call in c.source for c in nb.cells[:first_exercise]):
        problems.append(f"no code cell before the first exercise draws the course: {call}")
    return problems


def _why_problems(nb) -> list[str]:
    return [f"exercise {exercise!r}: no '**Why.**' paragraph in the text before its solution cell"
            for exercise, text in _texts_before_solutions(nb) if not WHY.search(text)]


def _assigned(source: str) -> set[str]:
    """The names a cell binds at top level (defs, classes, assignments, imports)."""
    try:
        tree = ast.parse("\n".join(line for line in source.split("\n") if not line.lstrip().startswith(("%", "!"))))
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


def _loaded(source: str) -> set[str]:
    tree = ast.parse(source)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _demo_problems(nb) -> list[str]:
    """A demo runs in the learner edition, where solution cells raise: it may use what the given cells bind and its
    own names, never a name only a solution cell binds."""
    problems: list[str] = []
    given: set[str] = set()
    answers: set[str] = set()
    demos = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if "demo" in cell.metadata.get("tags", []):
            demos += 1
            try:
                used = _loaded(cell.source) - _assigned(cell.source)
            except SyntaxError as exc:
                problems.append(f"demo cell {index} (id {cell.get('id', '?')}) does not parse: {exc}")
                continue
            borrowed = sorted(used & (answers - given))
            if borrowed:
                problems.append(f"demo cell {index} (id {cell.get('id', '?')}) uses {', '.join(borrowed)}, which only "
                                "a solution cell defines: in the learner edition it would fail")
            given |= _assigned(cell.source)
        elif tag_value(cell, "solution:"):
            answers |= _assigned(cell.source)
        else:
            given |= _assigned(cell.source)
    if not demos:
        problems.append("no demo: show the idea working (a code cell tagged 'demo') before an exercise asks for it")
    return problems


def _parts_problems(nb, parts) -> list[str]:
    problems = []
    order = [(i, tag_value(c, "check:"), c) for i, c in enumerate(nb.cells)]
    for part in parts:
        last = max((i for i, checked, _ in order if checked == part.exercises[-1]), default=None)
        if last is None:
            problems.append(f"part {part.id}: no check cell for its last exercise {part.exercises[-1]!r}")
            continue
        call = f'grader.score("{part.id}")'
        following = []
        for _, _, cell in order[last + 1:]:
            if tag_value(cell, "solution:"):
                break
            following.append(cell)
        if not any(c.cell_type == "code" and c.source.strip() == call for c in following):
            problems.append(f"part {part.id}: no `{call}` cell after its last check ({part.exercises[-1]}) and "
                            "before the next exercise")
    return problems


def _closing_problems(nb) -> list[str]:
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    closing = markdown[-1].source if markdown else ""
    problems = _sections_problems(closing, CLOSING, "the closing (last markdown cell)")
    keep = section(closing, "## What to keep")
    if keep is not None and len(bullets(keep)) != 3:
        problems.append(f"'## What to keep' lists {len(bullets(keep))} idea(s); it must be exactly three")
    further = section(closing, "## Going further") or ""
    official = [url for url in _LINK.findall(further)
                if any(re.match(rf"https?://([\w-]+\.)*{re.escape(site)}(/|$)", url) for site in OFFICIAL)]
    if section(closing, "## Going further") is not None and len(official) < 2:
        problems.append(f"'## Going further' links {len(official)} official documentation page(s); it needs 2 or "
                        f"more (on {', '.join(OFFICIAL[:6])}, ...)")
    if LICENSE_LINE not in closing:
        problems.append(f"the closing does not end with the notebook's licences: {LICENSE_LINE!r}")
    return problems


def _steps_problems(nb, size) -> list[str]:
    """An exercise longer than a half-hour's work comes in numbered steps (3 or more), one idea each, so that a
    learner always has a next thing to finish and check."""
    problems = []
    for exercise, text in _texts_before_solutions(nb):
        minutes = size.exercise(exercise).minutes()
        steps = len(re.findall(r"^\d+\. ", text, re.MULTILINE))
        if minutes > EXERCISE_MINUTES and steps < 3:
            problems.append(f"exercise {exercise!r} takes about {fmt_minutes(minutes)}, over "
                            f"{EXERCISE_MINUTES} min, and its text has {steps} numbered step(s): give it 3 or more")
    return problems


def teaching_problems(nb, spec, size=None) -> list[str]:
    """Everything a master's teaching text lacks, one line each; [] when it has it all. With its size
    (graders.sizing.measure_course), a long exercise must also come in steps."""
    return (_opening_problems(nb, spec.id) + _why_problems(nb) + _demo_problems(nb)
            + _parts_problems(nb, spec.parts) + _closing_problems(nb)
            + (_steps_problems(nb, size) if size is not None else []))
