"""Generate learner editions (notebooks/) and example submissions (examples/submissions/) from the masters, and each
module's learner side from its checks file: the probes (polyglot_lab/probes/) from its `# <kernel>` blocks and the
checks a learner can run in the notebook (polyglot_lab/checks/) from its `# <notebook>` blocks.

Learner edition: each ``### BEGIN SOLUTION`` ... ``### END SOLUTION`` region becomes
``# YOUR CODE HERE`` + ``raise NotImplementedError("Exercise <id> (<title>) is yours to write: ...")`` at the
region's indentation, so that Run All stops with a message that says where; outputs and
execution counts are cleared; tags and cell ids are kept, so grading finds the same exercises.
"""
from __future__ import annotations

import ast
import copy
import re
import tempfile
from polyglot_lab.compat import tomllib
from pathlib import Path

import nbformat

from polyglot_lab.catalogue import REPO

SOLUTIONS, NOTEBOOKS = REPO / "solutions", REPO / "notebooks"
COURSE_SVG = REPO / "docs" / "course.svg"  # the course diagram (polyglot_lab/course.py), for the README
# Every notebook's licence, in its metadata (written here) and its last cell (held by graders/teaching.py)
LICENSE_NOTE = "Code: MIT (LICENSE). Text: CC-BY-4.0 (LICENSE-content.md). Polyglot Lab contributors."
EXAMPLES = REPO / "examples"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[ \t]*\n.*?^[ \t]*### END SOLUTION[ \t]*$", re.DOTALL | re.MULTILINE)


class GenerateError(ValueError):
    pass


def stub_message(exercise_id: str, title: str | None = None) -> str:
    """What a learner edition's stub raises: which exercise stops a Run All, and what to do (as Python source)."""
    named = f"{exercise_id} ({title})" if title else exercise_id
    return repr(f"Exercise {named} is yours to write: replace this line with your code, "
                f"then run grader.check('{exercise_id}').")


def strip_solutions(source: str, where: str = "", message: str = "") -> str:
    """Each solution region becomes `# YOUR CODE HERE` and `raise NotImplementedError(message)` (message: Python
    source, see stub_message)."""
    if source.count(BEGIN) != source.count(END):
        raise GenerateError(f"{where}: unbalanced {BEGIN} / {END} markers")
    return _REGION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError({message})",
                       source)


def tag_value(cell, prefix: str) -> str | None:
    """What follows `prefix` in a cell's tag that starts with it: tag_value(cell, "check:") is the exercise id of a
    `check:<id>` cell; None when no tag starts with it."""
    return next((t.split(":", 1)[1] for t in cell.metadata.get("tags", []) if str(t).startswith(prefix)), None)


def _solution_of(cell) -> str | None:
    """The exercise id of a cell's `solution:<id>` tag."""
    return tag_value(cell, "solution:")


def remove_markers(source: str) -> str:
    """The solved code without the marker lines (what a learner who solved it would have)."""
    return "\n".join(line for line in source.split("\n") if line.strip() not in (BEGIN, END))


def drop_stderr(outputs: list) -> list:
    """Outputs without stderr streams: framework start-up logs with timestamps, never course content."""
    return [o for o in outputs if not (o.output_type == "stream" and o.name == "stderr")]


def clear_outputs(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)


def learner_edition(master, titles: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The learner's copy of a master: solutions become stubs that name their exercise (its title from `titles`,
    {exercise id: title}, where given), outputs are cleared."""
    nb = copy.deepcopy(master)
    clear_outputs(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and BEGIN in cell.source:
            exercise = _solution_of(cell)
            message = stub_message(exercise, (titles or {}).get(exercise)) if exercise else ""
            cell.source = strip_solutions(cell.source, f"cell {index}", message)
    return nb


def dumps(nb) -> str:
    return nbformat.writes(nb) + "\n"


# -- example submissions -----------------------------------------------------------------------
def solved_edition(master) -> nbformat.NotebookNode:
    nb = copy.deepcopy(master)
    clear_outputs(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source = remove_markers(cell.source)
    return nb


def apply_edit(nb, edit: dict, where: str) -> None:
    """One recipe edit: replace text in the one cell that has it."""
    matches = [c for c in nb.cells if edit["find"] in c.source]
    if len(matches) != 1:
        raise GenerateError(f"{where}: {edit['find']!r} is in {len(matches)} cells, not exactly one")
    matches[0].source = matches[0].source.replace(edit["find"], edit["replace"])


def example_submission(master, edits: list[dict], where: str,
                       titles: dict[str, str] | None = None) -> nbformat.NotebookNode:
    stubs = {e["stub"] for e in edits if "stub" in e}
    nb = copy.deepcopy(master)
    clear_outputs(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        stubbed = any(f"solution:{s}" in tags for s in stubs)
        exercise = _solution_of(cell)
        message = stub_message(exercise, (titles or {}).get(exercise)) if exercise else ""
        cell.source = strip_solutions(cell.source, where, message) if stubbed else remove_markers(cell.source)
    for edit in edits:
        if "stub" not in edit:
            apply_edit(nb, edit, where)
    return nb


def expected_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {}
    from polyglot_lab.catalogue import load_catalogue
    catalogue = load_catalogue()
    titles = {m: {e.id: e.title for e in spec.exercises} for m, spec in catalogue.items()}
    masters = {p.stem: nbformat.read(p, as_version=4) for p in sorted(SOLUTIONS.glob("*.ipynb"))}
    # Each master's opening states its time, counted from the master itself (graders/sizing.py).
    from graders import sizing
    sizes = sizing.measure_course(masters)
    for module_id, master in masters.items():
        parts = catalogue[module_id].parts if module_id in catalogue else ()
        sizing.with_sizing(master, sizing.sizing_text(sizes[module_id], parts), module_id)
        master.metadata["license"] = LICENSE_NOTE  # every edition made from it says the same
        files[SOLUTIONS / f"{module_id}.ipynb"] = dumps(master)
    from polyglot_lab.course import svg_text
    files[COURSE_SVG] = svg_text()
    for module_id, master in masters.items():
        files[NOTEBOOKS / f"{module_id}.ipynb"] = dumps(learner_edition(master, titles.get(module_id)))
    recipes = tomllib.loads((EXAMPLES / "recipes.toml").read_text(encoding="utf-8"))
    for learner in recipes["learner"]:
        for module_id in learner.get("modules", []):
            edits = [e for e in learner.get("edit", []) if e["module"] == module_id]
            where = f"examples/recipes.toml, learner {learner['name']}, module {module_id}"
            if module_id not in masters:
                raise GenerateError(f"{where}: no master solutions/{module_id}.ipynb")
            nb = example_submission(masters[module_id], edits, where, titles.get(module_id))
            files[EXAMPLES / "submissions" / learner["name"] / f"{module_id}.ipynb"] = dumps(nb)
    for spec in catalogue.values():
        for path, text in (kernel_side(spec), notebook_side(spec)):
            files[path] = text
    from graders.samples import DOCUMENTS, sample_block, with_sample
    block = sample_block()
    for path in DOCUMENTS:
        files[path] = with_sample(path, block)
    readme = REPO / "README.md"
    files[readme] = sizing.with_times_table(files[readme], sizing.times_table(sizes, catalogue), "README.md")
    return files


def generate(check: bool = False) -> list[Path]:
    """Write the generated files; with check=True only list those that drifted (or are stale)."""
    files = expected_files()
    drifted = [path for path, text in files.items()
               if not path.exists() or path.read_text(encoding="utf-8") != text]
    stale = [p for folder in (NOTEBOOKS, EXAMPLES / "submissions")
             for p in folder.rglob("*.ipynb") if p not in files and ".ipynb_checkpoints" not in p.parts]
    if check:
        return drifted + stale
    for path in drifted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
    for path in stale:
        path.unlink()
    return drifted + stale


def refresh_masters(module_ids: list[str] | None = None) -> list[Path]:
    """Re-execute masters (in a scratch folder) and rewrite them in solutions/, keeping the outputs nbval compares (stderr dropped)."""
    from nbclient import NotebookClient

    written = []
    for path in sorted(SOLUTIONS.glob("*.ipynb")):
        if module_ids and path.stem not in module_ids:
            continue
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory(prefix="polyglot-master-") as workdir:  # artifacts stay out of solutions/
            NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": workdir}}).execute()
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = drop_stderr(cell.outputs)
            cell.metadata.pop("execution", None)
        path.write_text(dumps(nb), encoding="utf-8")
        written.append(path)
    return written


# -- the kernel side of each module: its probes file, written from the kernel blocks of its checks file ----------
KERNEL_BEGIN, KERNEL_END = "# <kernel>", "# </kernel>"
_KERNEL_BLOCK = re.compile(r"^# <kernel>[^\n]*\n(.*?)^# </kernel>[ \t]*$", re.DOTALL | re.MULTILINE)


def kernel_blocks(source: str, where: str = "") -> list[str]:
    """The code between `# <kernel>` and `# </kernel>` lines, in order."""
    blocks = _KERNEL_BLOCK.findall(source)
    lines = source.split("\n")
    begins, ends = sum(line.startswith(KERNEL_BEGIN) for line in lines), sum(line.strip() == KERNEL_END for line in lines)
    if not begins == ends == len(blocks):
        raise GenerateError(f"{where}: unbalanced or nested {KERNEL_BEGIN} / {KERNEL_END} lines")
    return [block.strip("\n") for block in blocks]


def kernel_side_text(module_id: str, checks_where: str, checks_source: str) -> str:
    """The probes file of a module whose checks file (at `checks_where`) reads `checks_source`."""
    header = (f'"""The kernel side of module {module_id}: one probe per exercise, run in the learner\'s kernel\n'
              f"after the exercise's cells. Written by `make notebooks` from the `{KERNEL_BEGIN}` blocks of\n"
              f"{checks_where}, each in its exercise's section beside the inputs and checks:\n"
              'edit those, not this file."""\n')
    return header + "\n\n\n".join(kernel_blocks(checks_source, checks_where)) + "\n"


def module_path(root: Path, dotted: str) -> Path:
    """graders.checks.m01_x -> <root>/graders/checks/m01_x.py"""
    return Path(root) / (dotted.replace(".", "/") + ".py")


def kernel_side(spec) -> tuple[Path, str]:
    """(the module's probes file, its text): the only part of each exercise's section that runs in the learner's
    kernel, and ships to learners."""
    checks = module_path(REPO, spec.checks_module)
    return module_path(REPO, spec.probes_module), kernel_side_text(spec.id, checks.relative_to(REPO).as_posix(),
                                                             checks.read_text(encoding="utf-8"))


# -- the checks a learner runs in the notebook, written from the notebook blocks of the checks file --------------------
NOTEBOOK_BEGIN, NOTEBOOK_END = "# <notebook>", "# </notebook>"
_NOTEBOOK_BLOCK = re.compile(r"^# <notebook>[^\n]*\n(.*?)^# </notebook>[ \t]*$", re.DOTALL | re.MULTILINE)


def notebook_blocks(source: str, where: str = "") -> list[str]:
    """The code between `# <notebook>` and `# </notebook>` lines, in order."""
    blocks = _NOTEBOOK_BLOCK.findall(source)
    lines = source.split("\n")
    begins = sum(line.startswith(NOTEBOOK_BEGIN) for line in lines)
    ends = sum(line.strip() == NOTEBOOK_END for line in lines)
    if not begins == ends == len(blocks):
        raise GenerateError(f"{where}: unbalanced or nested {NOTEBOOK_BEGIN} / {NOTEBOOK_END} lines")
    return [block.strip("\n") for block in blocks]


def imported_modules(source: str) -> list[tuple[str, int]]:
    """(module, line) of every absolute import in `source`, at any depth: `from a.b import c` and `import a.b` both
    give a.b."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return found


def _bound(tree: ast.Module) -> tuple[dict[str, str], set[str]]:
    """(the import statement that binds each imported name, the names defined otherwise) at the top level."""
    imported: dict[str, str] = {}
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                name = alias.asname or alias.name.split(".")[0]
                if isinstance(node, ast.ImportFrom):
                    asname = f" as {alias.asname}" if alias.asname else ""
                    imported[name] = f"from {node.module} import {alias.name}{asname}"
                else:
                    imported[name] = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        else:
            defined.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return imported, defined


def notebook_side_text(module_id: str, checks_where: str, checks_source: str, probes_module: str) -> str:
    """The in-notebook checks of a module: its notebook blocks, with what they use of its kernel blocks (the probes
    file's functions, imported from it; the kernel's imports, repeated)."""
    code = "\n\n\n".join(notebook_blocks(checks_source, checks_where))
    kernel = ast.parse("\n\n".join(kernel_blocks(checks_source, checks_where)))
    kernel_imports, kernel_defined = _bound(kernel)
    tree = ast.parse(code)
    own_imports, own_defined = _bound(tree)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - own_defined - set(own_imports)
    imports = sorted({kernel_imports[name] for name in used if name in kernel_imports})
    probes = sorted(name for name in used if name in kernel_defined)
    header = [f'"""The checks of module {module_id} that a learner runs in the notebook (`grader.check(...)`), on the',
              f"core in polyglot_lab.checking. Written by `make notebooks` from the `{NOTEBOOK_BEGIN}` blocks of",
              f'{checks_where}: edit those, not this file. The checks that run only at submission are not here."""',
              "from __future__ import annotations", "", *imports]
    if probes:
        header.append(f"from {probes_module} import (  # the probes, in the kernel side of the module")
        header += [f"    {name}," for name in probes] + [")"]
    return "\n".join(header) + "\n\n" + code + "\n"


def notebook_side(spec) -> tuple[Path, str]:
    """(the module's in-notebook checks file, its text): what of each exercise's checks ships to learners."""
    checks = module_path(REPO, spec.checks_module)
    return module_path(REPO, spec.notebook_checks_module), notebook_side_text(
        spec.id, checks.relative_to(REPO).as_posix(), checks.read_text(encoding="utf-8"), spec.probes_module)
