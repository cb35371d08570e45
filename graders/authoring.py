"""Authoring tools: one exercise is written once, and the course's pieces are kept in agreement.

``new_exercise(root, module, exercise)`` (``python -m graders new-exercise``, ``make new-exercise``) appends the stub of
every piece of a new exercise: its catalogue entry (``exercises/NN_slug.toml``), its probe (kernel side), its input maker
and check (grader side), a mistake test, and three cells of the master (prompt, solution, check). Every stub is marked
TODO and fails until written: the master's check fails ``make verify``, the mistake test fails ``make test``.

``lint_course(root)`` (run by ``make verify`` before grading) lists what does not agree, without running a notebook:
solution markers outside solution cells, catalogue checks without a registered check and the reverse, checks no mistake
test names, probes that match no exercise or declare no outputs.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import json
import keyword
import re
import sys
from polyglot_lab.compat import tomllib
from pathlib import Path

import nbformat

from graders.teaching import LICENSE_LINE
from graders.generate import (
    BEGIN, END, KERNEL_BEGIN, KERNEL_END, NOTEBOOK_BEGIN, NOTEBOOK_END, dumps, imported_modules, kernel_side_text,
    module_path, notebook_side_text,
)
from polyglot_lab.catalogue import REPO, CatalogueError, ModuleSpec, load_module

MODULE_ID = re.compile(r"^(\d\d)_[a-z0-9_]+$")
EXERCISE_ID = re.compile(r"^[a-z][a-z0-9_]*$")
EXERCISE_HEADING = re.compile(r"^(#+) Exercise (\d+)")  # a master's prompt: "## Exercise 3 · ..."
FIRST_CHECK = "correct"  # the id of the one check a new exercise starts with


class AuthoringError(ValueError):
    """The exercise cannot be added; the message names the file and the reason."""


# -- where a module's pieces live ---------------------------------------------------------------------------------
class ModuleFiles:
    """The files of one module under `root`, read from its catalogue file's [module] table."""

    def __init__(self, root: Path, module_id: str):
        self.root, self.module_id = Path(root), module_id
        match = MODULE_ID.match(module_id)
        self.catalogue = self.root / "exercises" / f"{module_id}.toml"
        if not match:
            raise AuthoringError(f"{self.rel(self.catalogue)}: a module id is NN_slug (two digits, an underscore, "
                                 f"lower-case words), not {module_id!r}")
        if not self.catalogue.is_file():
            known = ", ".join(sorted(p.stem for p in (self.root / "exercises").glob("*.toml"))) or "none"
            raise AuthoringError(f"{self.rel(self.catalogue)} does not exist: there is no module {module_id!r} "
                                 f"(known: {known}). A new module starts with its catalogue file (CONTRIBUTING.md).")
        try:
            self.data = tomllib.loads(self.catalogue.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise AuthoringError(f"{self.rel(self.catalogue)}: not valid TOML: {exc}") from None
        table = self.data.get("module", {})
        for key in ("checks", "probes"):
            if not isinstance(table.get(key), str):
                raise AuthoringError(f"{self.rel(self.catalogue)}: [module] has no '{key}' (a dotted module name)")
        self.checks_module, self.probes_module = table["checks"], table["probes"]
        self.checks = module_path(self.root, self.checks_module)
        self.probes = module_path(self.root, self.probes_module)
        self.notebook_checks = module_path(self.root, "polyglot_lab.checks." + self.checks_module.rsplit(".", 1)[-1])
        self.short = f"m{match.group(1)}"  # the alias the mistake tests give the checks module
        self.tests = self.root / "tests" / f"test_mistakes_{self.short}.py"
        self.master = self.root / "solutions" / f"{module_id}.ipynb"

    def rel(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def exercise_ids(self) -> list[str]:
        return [str(e.get("id")) for e in self.data.get("exercise", [])]


# -- Python sources: names, imports, appended sections --------------------------------------------------------------
def top_level_names(source: str) -> set[str]:
    """Every name a module binds at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def registered_exercises(source: str) -> set[str]:
    """Exercise ids a checks file registers: registry.check("id", ...) and registry.inputs("id")."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("check", "inputs")
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def imported_as(source: str, module: str, name: str) -> str | None:
    """The local name under which `source` imports `name` from `module` (or `module.name` itself), if it does."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0:
            for alias in node.names:
                if alias.name == name:
                    return alias.asname or alias.name
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == f"{module}.{name}" and alias.asname:
                    return alias.asname
    return None


def _name_order(name: str):
    """isort's order-by-type: CONSTANTS, then Classes, then functions and modules."""
    return (0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2, name)


def _format_from(module: str, names: list[str]) -> str:
    one_line = f"from {module} import {', '.join(names)}"
    if len(one_line) <= 100:
        return one_line
    return f"from {module} import (\n" + "".join(f"    {n},\n" for n in names) + ")"


def ensure_import(source: str, module: str, name: str, asname: str | None = None) -> str:
    """`source` with `from module import name [as asname]`: merged into an existing import of `module`, else a new line
    placed among the top-level imports in module order."""
    local = asname or name
    if imported_as(source, module, name) == local:
        return source
    lines = source.split("\n")
    body = ast.parse(source).body
    imports = [n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    if asname is None:
        for node in imports:
            if (isinstance(node, ast.ImportFrom) and node.module == module and node.level == 0
                    and all(a.asname is None for a in node.names)):
                names = sorted({a.name for a in node.names} | {name}, key=_name_order)
                lines[node.lineno - 1:node.end_lineno] = _format_from(module, names).split("\n")
                return "\n".join(lines)
    statement = f"from {module} import {name}" + (f" as {asname}" if asname else "")

    def key(node) -> str:
        return (node.module or "") if isinstance(node, ast.ImportFrom) else node.names[0].name

    before = [n for n in imports if key(n) <= module]
    if before:
        at = before[-1].end_lineno or before[-1].lineno
    elif imports:
        at = imports[0].lineno - 1
    else:  # no import yet: after the docstring and the __future__ imports
        at = 0
        for statement_node in body:
            if not (isinstance(statement_node, ast.ImportFrom) and statement_node.module == "__future__"
                    or isinstance(statement_node, ast.Expr) and isinstance(statement_node.value, ast.Constant)):
                break
            at = statement_node.end_lineno or statement_node.lineno
    lines.insert(at, statement)
    return "\n".join(lines)


def ensure_module_import(source: str, module: str) -> str:
    """`source` with `import module` (numpy is `import numpy as np`)."""
    tree = ast.parse(source)
    wanted = "np" if module == "numpy" else module
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name == module and (a.asname or a.name) == wanted for a in node.names):
            return source
    lines = source.split("\n")
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    statement = f"import {module}" + (" as np" if module == "numpy" else "")
    at = imports[0].lineno - 1 if imports else 0
    lines.insert(at, statement)
    return "\n".join(lines)


def append_section(source: str, section: str) -> str:
    return source.rstrip("\n") + "\n\n\n" + section.strip("\n") + "\n"


# -- the stubs ------------------------------------------------------------------------------------------------------
def catalogue_stub(exercise_id: str, title: str) -> str:
    def s(text: str) -> str:  # a TOML basic string (JSON's escapes are TOML's)
        return json.dumps(text)
    return f"""
[[exercise]]
id = {s(exercise_id)}
title = {s(title)}
asks = {s(f"TODO: what the learner writes: solve_{exercise_id}(x) -> ..., and what it must return.")}
checked = {s("TODO: how the grader checks it: the probe calls solve_" + exercise_id + " on inputs the grader draws")}
hints = [
  {s("TODO: a hint that helps without giving the answer away.")},
]
  [[exercise.check]]
  id = {s(FIRST_CHECK)}
  title = {s("TODO: what this check proves, in a learner's words")}
  points = 1
"""


def probe_stub(exercise_id: str) -> str:
    return f'''{KERNEL_BEGIN}
@probe(result=ARRAY)
def {exercise_id}(ns, io):
    """TODO: call the learner's code on the grader's inputs (io.inputs) and save what it returned; decide nothing."""
    inputs = io.inputs
    result = need(ns, "solve_{exercise_id}")(inputs["x"])
    io.save(result=np.asarray(result))
{KERNEL_END}
'''


def checks_stub(exercise_id: str) -> str:
    """The exercise's section: its probe (a kernel block, copied into the probes file), inputs and first check (a
    notebook block: learners run it in the notebook; code that needs grader-held data goes outside the block, and the
    catalogue says `runs = "submission"`)."""
    rule = "-" * max(4, 112 - len(exercise_id))
    return f'''# -- {exercise_id} {rule}
{probe_stub(exercise_id)}

{NOTEBOOK_BEGIN}
@registry.inputs("{exercise_id}")
def {exercise_id}_inputs(ctx: CheckContext) -> dict:
    """TODO: the inputs the probe hands the learner's code, drawn fresh each grading run."""
    return {{"x": ctx.rng("{exercise_id}").standard_normal((4, 3))}}


@registry.check("{exercise_id}", "{FIRST_CHECK}")
def {exercise_id}_{FIRST_CHECK}(ctx: CheckContext):
    """TODO: compute the expected value here, at grade time, and compare; name the mistake when it differs."""
    out, given = ctx.outputs({exercise_id}), {exercise_id}_inputs(ctx)
    raise CheckFailed("TODO: say what is wrong, in words a learner understands.",
                      expected=f"TODO: what the grader computed from {{describe_array(given['x'])}}",
                      found=describe_array(out["result"]),
                      hint="TODO: how to fix it, without giving the answer away.")
{NOTEBOOK_END}
'''


def test_name(exercise_id: str) -> str:
    return f"test_{exercise_id}_mistake_is_named"


def test_stub(exercise_id: str, checks_alias: str) -> str:
    check = f"{checks_alias}.{exercise_id}_{FIRST_CHECK}"
    return f'''def {test_name(exercise_id)}(ctx):
    """TODO: the typical mistake in {exercise_id}, as the probe would save it, fails with words that name it.
    Fails until both are written: craft the outputs of a learner who makes the mistake, and put the words of your
    check's message in fails_with. Add a test that the right outputs pass, too."""
    craft(ctx, {checks_alias}.{exercise_id}, result=[0.0])  # TODO: what a learner with the mistake saves
    fails_with({check}, ctx, "TODO: the words of the check's message that name the mistake")
'''


def _ensure_block_imports(source: str, begin: str, end: str, module: str, names: tuple[str, ...],
                          numpy: bool = False) -> str:
    """`source` (a checks file) whose first `begin` block imports `names` from `module` (and numpy). A file without
    such a block gets one after its kernel blocks' first, or after its `from __future__` import."""
    pattern = re.compile(rf"^({re.escape(begin)}[^\n]*\n)(.*?)^{re.escape(end)}[ \t]*$", re.DOTALL | re.MULTILINE)
    match = pattern.search(source)
    if match is None:
        kernel = _FIRST_KERNEL_BLOCK.search(source)
        future = "from __future__ import annotations\n"
        if kernel is not None and begin != KERNEL_BEGIN:
            at = kernel.end() + 1
        else:
            at = source.index(future) + len(future) if future in source else 0
        source = source[:at] + f"\n{begin}  the imports of these blocks\n{end}\n" + source[at:]
        match = pattern.search(source)
        assert match is not None
    block = ensure_module_import(match.group(2), "numpy") if numpy else match.group(2)
    for name in names:
        block = ensure_import(block, module, name)
    return source[:match.start(2)] + block.strip("\n") + "\n" + source[match.end(2):]


def ensure_kernel_imports(source: str) -> str:
    """`source` (a checks file) whose first kernel block imports what a probe stub uses: numpy and the probe
    vocabulary."""
    return _ensure_block_imports(source, KERNEL_BEGIN, KERNEL_END, "polyglot_lab.probe", ("ARRAY", "need", "probe"),
                                 numpy=True)


def ensure_notebook_imports(source: str) -> str:
    """`source` (a checks file) whose first notebook block imports what a check stub uses from the check core."""
    return _ensure_block_imports(source, NOTEBOOK_BEGIN, NOTEBOOK_END, "polyglot_lab.checking",
                                 ("CheckContext", "CheckFailed", "describe_array"))


_FIRST_KERNEL_BLOCK = re.compile(r"^(# <kernel>[^\n]*\n)(.*?)^# </kernel>[ \t]*$", re.DOTALL | re.MULTILINE)


def checks_header(files: ModuleFiles) -> str:
    return (f'"""Checks for module {files.module_id}."""\nfrom __future__ import annotations\n\n'
            f"{KERNEL_BEGIN}  the kernel's imports\nimport numpy as np\n\n"
            f"from polyglot_lab.probe import ARRAY, need, probe\n{KERNEL_END}\n\n"
            f"{NOTEBOOK_BEGIN}  the check core, and the registry (the in-notebook checks get both)\n"
            f"from polyglot_lab.checking import CheckContext, CheckFailed, Registry, describe_array\n\n"
            f'registry = Registry("{files.module_id}")\n{NOTEBOOK_END}\n')


CTX_FIXTURE = '@pytest.fixture\ndef ctx(tmp_path):\n    return CheckContext(tmp_path, seed=7, device="cpu")\n'


def tests_header(files: ModuleFiles) -> str:
    short = files.checks_module.rsplit(".", 1)[-1]
    return (f'"""Module {files.module_id}\'s typical mistakes, each caught with a message that names it."""\n'
            f"import pytest\n\nfrom graders.checks import CheckContext\n"
            f"from graders.checks import {short} as {files.short}\nfrom mistakes import craft, fails_with\n\n\n"
            + CTX_FIXTURE)


def new_master(files: ModuleFiles, title: str) -> nbformat.NotebookNode:
    nn = files.module_id[:2]
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata["polyglot"] = {"module": files.module_id}
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            f"# {nn} · {title}\n\nTODO: what this module builds, and why industry does it.\n\n"
            "### You will be able to\n- TODO: three or more abilities a learner can test themselves on\n\n"
            "### It assumes\n- TODO: the modules and knowledge it builds on\n\n"
            "### Time\n<!-- sizing --><!-- /sizing -->\n\n"  # filled by make notebooks (graders/sizing.py)
            "### Where it sits\nTODO: its stage of the lifecycle (add it to polyglot_lab/course.py's STAGES)."),
        nbformat.v4.new_code_cell(f'import polyglot_lab\n\ngrader = polyglot_lab.Notebook("{files.module_id}")'),
        nbformat.v4.new_code_cell(f'polyglot_lab.course.show_lifecycle("{files.module_id}")',
                                  metadata={"tags": ["nbval-ignore-output"]}),
        nbformat.v4.new_markdown_cell("## Your score"),
        nbformat.v4.new_code_cell("grader.score()", metadata={"tags": ["nbval-ignore-output"]}),
        nbformat.v4.new_markdown_cell(
            "## What to keep\n- TODO: exactly three ideas\n\n## Where industry goes next\nTODO\n\n"
            "## Going further\n- TODO: links into the official documentation\n\n" + LICENSE_LINE),
    ]
    for index, cell in enumerate(nb.cells):
        cell.id = f"{nn}-{index:02d}"
    return nb


def master_cells(nb, files: ModuleFiles, exercise_id: str, title: str) -> None:
    """Insert the prompt, solution and check cells before the score section (or at the end), in place."""
    headings = [m for c in nb.cells if c.cell_type == "markdown" for m in [EXERCISE_HEADING.match(c.source)] if m]
    number = 1 + max((int(m.group(2)) for m in headings), default=0)
    level = headings[-1].group(1) if headings else "##"  # module 02 has parts (##) and exercises (###)
    prompt = nbformat.v4.new_markdown_cell(
        f"{level} Exercise {number} · {title}\n\n"
        "**Why.** TODO: the idea this exercise exercises, derived or shown (graders/teaching.py).\n\n"
        f"TODO: the prompt. Write `solve_{exercise_id}(x)` returning ...; say what it is for in industry, and what the "
        "usual mistake costs.")
    solution = nbformat.v4.new_code_cell(
        f"def solve_{exercise_id}(x):\n    {BEGIN}\n    return x  # TODO: the reference solution (learners get "
        f"`raise NotImplementedError()` here)\n    {END}", metadata={"tags": [f"solution:{exercise_id}"]})
    check = nbformat.v4.new_code_cell(f'grader.check("{exercise_id}")',
                                      metadata={"tags": [f"check:{exercise_id}", "nbval-ignore-output"]})
    used = {c.get("id") for c in nb.cells}
    counter = len(nb.cells)
    for cell in (prompt, solution, check):
        while f"{files.module_id[:2]}-{counter:02d}" in used:
            counter += 1
        cell.id = f"{files.module_id[:2]}-{counter:02d}"
        used.add(cell.id)
    nb.cells[_insertion_point(nb):_insertion_point(nb)] = [prompt, solution, check]


_PART_SCORE = re.compile(r'grader\.score\("[^"]+"\)')


def _insertion_point(nb) -> int:
    """Where a new exercise goes: before the module's score (or, in a module with parts, before the last part's
    score, since the catalogue adds it to that part), and before the markdown cell that introduces that score."""
    scores = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.source.strip() == "grader.score()"]
    parts = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _PART_SCORE.fullmatch(c.source.strip())]
    candidates = parts[-1:] or scores[:1]
    if not candidates:
        return len(nb.cells)
    at = candidates[0]
    before = nb.cells[at - 1] if at else None
    if before is not None and before.cell_type == "markdown" and ("score" in before.source.lower()
                                                                  or "part" in before.source.lower()):
        at -= 1
    return at


_LAST_PART = re.compile(r'(\[\[module\.parts\]\](?:(?!\[\[)[\s\S])*?exercises = \[)([^\]]*)(\])')


def _in_last_part(toml_text: str, exercise_id: str) -> str:
    """The catalogue with `exercise_id` appended to its last [[module.parts]] (parts cover every exercise in order)."""
    matches = list(_LAST_PART.finditer(toml_text))
    if not matches:
        return toml_text
    last = matches[-1]
    listed = last.group(2).rstrip()
    joined = f'{listed}, "{exercise_id}"' if listed.strip() else f'"{exercise_id}"'
    return toml_text[:last.start(2)] + joined + toml_text[last.end(2):]


# -- new-exercise ---------------------------------------------------------------------------------------------------
def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def new_exercise(root: Path, module_id: str, exercise_id: str, title: str | None = None) -> list[Path]:
    """Append the stubs of a new exercise to every piece of module `module_id` under `root`; the files written.

    Refuses (AuthoringError, naming the file) when the module has no catalogue file, or any piece has the id already.
    Nothing is written unless every piece can be.
    """
    root = Path(root)
    files = ModuleFiles(root, module_id)
    if not EXERCISE_ID.match(exercise_id) or keyword.iskeyword(exercise_id):
        raise AuthoringError(f"{files.rel(files.catalogue)}: an exercise id is a lower-case Python name "
                             f"(it names the probe function), not {exercise_id!r}")
    title = title or f"TODO: a title for {exercise_id}"
    toml_text = files.catalogue.read_text(encoding="utf-8")
    checks_text = _read(files.checks) or checks_header(files)
    tests_text = _read(files.tests) or tests_header(files)
    nb = nbformat.read(files.master, as_version=4) if files.master.is_file() else new_master(
        files, str(files.data.get("module", {}).get("title", module_id)))

    holders = []
    if exercise_id in files.exercise_ids():
        holders.append(files.catalogue)
    for path, text, names in ((files.checks, checks_text,
                               {exercise_id, f"{exercise_id}_inputs", f"{exercise_id}_{FIRST_CHECK}"}),
                              (files.tests, tests_text, {test_name(exercise_id)})):
        try:
            taken = top_level_names(text)
        except SyntaxError as exc:
            raise AuthoringError(f"{files.rel(path)}: not valid Python ({exc.msg}, line {exc.lineno})") from None
        if names & taken or (path == files.checks and exercise_id in registered_exercises(text)):
            holders.append(path)
    tags = {t for c in nb.cells for t in c.metadata.get("tags", [])}
    if {f"solution:{exercise_id}", f"check:{exercise_id}"} & tags:
        holders.append(files.master)
    if holders:
        raise AuthoringError(f"exercise {exercise_id!r} exists already in module {module_id}: "
                             f"{', '.join(files.rel(p) for p in holders)}")

    checks_text = ensure_notebook_imports(ensure_kernel_imports(checks_text))
    checks_package, checks_name = files.checks_module.rsplit(".", 1)
    checks_alias = imported_as(tests_text, checks_package, checks_name)
    if checks_alias is None:
        checks_alias = files.short
        tests_text = ensure_import(tests_text, checks_package, checks_name, asname=checks_alias)
    for name in ("craft", "fails_with"):
        tests_text = ensure_import(tests_text, "mistakes", name)
    if "ctx" not in top_level_names(tests_text):  # the stub's fixture, as every mistake test file has it
        tests_text = ensure_module_import(ensure_import(tests_text, "graders.checks", "CheckContext"), "pytest")
        tests_text = append_section(tests_text, CTX_FIXTURE)
    master_cells(nb, files, exercise_id, title)
    nbformat.validate(nb)

    checks_text = append_section(checks_text, checks_stub(exercise_id))
    writes = {
        files.catalogue: _in_last_part(toml_text, exercise_id).rstrip("\n") + "\n" + catalogue_stub(exercise_id, title),
        files.checks: checks_text,
        # what `make notebooks` writes: the learner side of the checks file
        files.probes: kernel_side_text(module_id, files.rel(files.checks), checks_text),
        files.notebook_checks: notebook_side_text(module_id, files.rel(files.checks), checks_text, files.probes_module),
        files.tests: append_section(tests_text, test_stub(exercise_id, checks_alias)),
        files.master: dumps(nb),
    }
    for path, text in writes.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(writes)


# -- lint -------------------------------------------------------------------------------------------------------------
def _load(root: Path, dotted: str):
    """The module `dotted` as its file under `root` defines it: imported as usual when that is the file Python finds
    (the repository itself), else executed from the file under a name of its own (a copy of the course)."""
    path = module_path(root, dotted)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    try:
        found = importlib.util.find_spec(dotted)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.origin and Path(found.origin).resolve() == path.resolve():
        return importlib.import_module(dotted)
    digest = hashlib.sha256(path.read_bytes() + str(path.resolve()).encode()).hexdigest()[:12]
    name = f"_polyglot_lint_{digest}_{dotted.replace('.', '_')}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and the like look their module up while it executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _rel(root: Path, path: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _lint_master(root: Path, spec: ModuleSpec) -> list[str]:
    path = root / "solutions" / spec.notebook_name
    where = _rel(root, path)
    if not path.is_file():
        return [f"{where}: no master for module {spec.id}"]
    problems = []
    exercises = {e.id for e in spec.exercises}
    nb = nbformat.read(path, as_version=4)
    for index, cell in enumerate(nb.cells):
        tags = [str(t) for t in cell.metadata.get("tags", [])]
        solution = [t for t in tags if t.startswith("solution:")]
        marked = any(line.strip() in (BEGIN, END) for line in cell.source.split("\n"))
        name = f"cell {index} (id {cell.get('id', '?')})"
        if marked and not solution:
            problems.append(f"{where}: {name} has solution markers ({BEGIN} / {END}) but no solution:<id> tag: "
                            "no exercise owns the code learners write there")
        if solution and cell.cell_type == "code" and BEGIN not in cell.source:
            problems.append(f"{where}: {name} is tagged {solution[0]} but has no {BEGIN} / {END} markers: "
                            "the learner edition would show the solution")
        for tag in tags:
            kind, _, exercise_id = tag.partition(":")
            if kind in ("solution", "check") and exercise_id not in exercises:
                problems.append(f"{where}: {name} is tagged {tag}, but {_rel(root, spec.path)} has no exercise "
                                f"{exercise_id!r}")
    return problems


def _lint_checks(root: Path, spec: ModuleSpec) -> list[str]:
    from graders.checks import Registry

    catalogue, checks_file = _rel(root, spec.path), _rel(root, module_path(root, spec.checks_module))
    try:
        registry = getattr(_load(root, spec.checks_module), "registry", None)
    except FileNotFoundError:
        return [f"{catalogue}: its checks module {spec.checks_module} has no file {checks_file}"]
    except Exception as exc:  # noqa: BLE001 - a checks file that does not import is the problem to report
        return [f"{checks_file} could not be imported: {type(exc).__name__}: {exc}"]
    if not isinstance(registry, Registry):
        return [f"{checks_file} defines no `registry = Registry({spec.id!r})`"]
    problems: list[str] = []
    declared = [(e.id, c.id) for e in spec.exercises for c in e.checks]
    for exercise in spec.exercises:
        for check in exercise.checks:
            if check.title == check.id:  # the catalogue's reader defaults a missing title to the id
                problems.append(f"{catalogue}: check {exercise.id}.{check.id} has no title: the one-line requirement "
                                "it enforces, as the exercise states it (feedback shows it to the learner)")
    for exercise_id, check_id in declared:
        if (exercise_id, check_id) not in registry.checks:
            problems.append(f"{catalogue}: check {exercise_id}.{check_id} has no check registered in {checks_file} "
                            f"(@registry.check({exercise_id!r}, {check_id!r}))")
    for exercise_id, check_id in registry.checks:
        if (exercise_id, check_id) not in declared:
            problems.append(f"{checks_file}: check {exercise_id}.{check_id} is registered but {catalogue} has no "
                            "such check")
    problems += _lint_notebook_checks(root, spec, registry)
    tests = root / "tests" / f"test_mistakes_m{spec.id[:2]}.py"
    text = tests.read_text(encoding="utf-8") if tests.is_file() else ""
    for (exercise_id, check_id), fn in registry.checks.items():
        name = getattr(fn, "__name__", "")
        if _named_in(text, name, exercise_id, check_id):
            continue
        problems.append(f"{checks_file}: check {exercise_id}.{check_id} ({name}) has no mistake test: neither "
                        f"{name} nor {check_id!r} is named in {_rel(root, tests)}")
    return problems


def _lint_notebook_checks(root: Path, spec: ModuleSpec, registry) -> list[str]:
    """The checks in the notebook blocks (what ships to learners) are exactly the catalogue's `runs = "notebook"`
    checks, with the inputs their probes need, and nothing of them imports the grader."""
    from polyglot_lab.checking import Registry

    catalogue, checks_file = _rel(root, spec.path), _rel(root, module_path(root, spec.checks_module))
    source = module_path(root, spec.checks_module).read_text(encoding="utf-8")
    try:
        probes = _load(root, spec.probes_module)
        text = notebook_side_text(spec.id, checks_file, source, probes.__name__)
    except Exception as exc:  # noqa: BLE001 - the problem to report
        return [f"{checks_file}: its notebook blocks cannot be written out: {type(exc).__name__}: {exc}"]
    graders_imports = sorted({name for name, _ in imported_modules(text) if name.split(".")[0] == "graders"})
    if graders_imports:
        return [f"{checks_file}: its notebook blocks import {', '.join(graders_imports)}: what ships to learners "
                "never imports the grader (move that code out of the blocks; its checks run at submission)"]
    namespace: dict = {"__name__": f"_polyglot_lint_notebook_{spec.id}"}
    try:
        exec(compile(text, f"<notebook blocks of {checks_file}>", "exec"), namespace)  # the course's own code
    except Exception as exc:  # noqa: BLE001 - the problem to report
        return [f"{checks_file}: its notebook blocks do not run on their own: {type(exc).__name__}: {exc}"]
    public = namespace.get("registry")
    if not isinstance(public, Registry):
        return [f"{checks_file}: its notebook blocks define no `registry = Registry({spec.id!r})`"]
    problems = []
    for exercise in spec.exercises:
        for check in exercise.checks:
            key = (exercise.id, check.id)
            if check.in_notebook and key in registry.checks and key not in public.checks:
                problems.append(f"{catalogue}: check {exercise.id}.{check.id} runs in the notebook, but {checks_file} "
                                f"registers it outside its {NOTEBOOK_BEGIN} blocks (or say runs = \"submission\")")
            if not check.in_notebook and key in public.checks:
                problems.append(f"{checks_file}: check {exercise.id}.{check.id} is in a {NOTEBOOK_BEGIN} block, so it "
                                f"ships to learners, but {catalogue} says it runs only at submission"
                                + (" (it is hidden)" if check.hidden else ""))
        needs_inputs = any(c.in_notebook for c in exercise.checks) and exercise.id in registry.input_makers
        if needs_inputs and exercise.id not in public.input_makers:
            problems.append(f"{checks_file}: the inputs of {exercise.id} are made outside the {NOTEBOOK_BEGIN} blocks, "
                            "but its in-notebook checks need them")
    return problems


ALTERNATIVES_PER_MODULE = 5


def _lint_alternatives(root: Path, spec: ModuleSpec) -> list[str]:
    """Every module proves that valid answers other than its master's score full marks: at least
    ALTERNATIVES_PER_MODULE tests in tests/test_alternatives_mNN.py, each ending in `full_marks(...)`."""
    path = root / "tests" / f"test_alternatives_m{spec.id[:2]}.py"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    tests = re.split(r"^def (?=test_)", text, flags=re.M)[1:]
    found = sum("full_marks(" in body for body in tests)
    if found >= ALTERNATIVES_PER_MODULE:
        return []
    return [f"{_rel(root, path)}: {found} valid-alternative test(s) for module {spec.id}, at least "
            f"{ALTERNATIVES_PER_MODULE} wanted (test_* functions that end in full_marks(ctx, registry, exercise))"]


def _named_in(text: str, function: str, exercise_id: str, check_id: str) -> bool:
    """A mistake test names a check by its function (`m01.leak_free_scaling`) or by its ids (`check("keras",
    "padding")`, `registry.checks[("converter", name)]` over a list of check ids)."""
    by_function = function.isidentifier() and re.search(rf"\b{re.escape(function)}\b", text)
    return bool(by_function or re.search(rf"[\"']{re.escape(check_id)}[\"']", text))


def _probe_functions(module) -> dict[str, object]:
    """The probes a module defines: what the @probe decorator marked (an `outputs` attribute), and, without it, the
    public functions of the module that take (ns, io)."""
    found = {}
    for name, value in vars(module).items():
        if name.startswith("_") or not callable(value):
            continue
        if getattr(value, "outputs", None) is not None:
            found[name] = value
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            try:
                params = list(inspect.signature(value).parameters)
            except (TypeError, ValueError):
                continue
            if params[:2] == ["ns", "io"]:
                found[name] = value
    return found


def _lint_probes(root: Path, spec: ModuleSpec, declarations: bool) -> list[str]:
    catalogue, probes_file = _rel(root, spec.path), _rel(root, module_path(root, spec.probes_module))
    try:
        module = _load(root, spec.probes_module)
    except FileNotFoundError:
        return [f"{catalogue}: its probes module {spec.probes_module} has no file {probes_file}"]
    except Exception as exc:  # noqa: BLE001
        return [f"{probes_file} could not be imported: {type(exc).__name__}: {exc}"]
    problems = []
    exercises = [e.id for e in spec.exercises]
    for name, fn in _probe_functions(module).items():
        if name not in exercises:
            problems.append(f"{probes_file}: probe {name} matches no exercise of {catalogue} "
                            f"(exercises: {', '.join(exercises)}); the grader never runs it")
        if declarations and getattr(fn, "outputs", None) is None:
            problems.append(f"{probes_file}: probe {name} declares no outputs: decorate it with "
                            "@probe(name=ARRAY | ARRAYS | VALUE | FILE, ...) from polyglot_lab.probe")
    return problems


def declarations_landed() -> bool:
    """Whether polyglot_lab.probe has the @probe decorator that declares a probe's outputs."""
    from polyglot_lab import probe

    return hasattr(probe, "probe")


def lint_course(root: Path = REPO, modules: list[str] | None = None, declarations: bool | None = None) -> list[str]:
    """The course's problems a notebook run would not show, one line each (paths relative to `root`).

    modules: the module ids to look at (default: all). declarations: require every probe to declare its outputs
    (default: once polyglot_lab.probe has the @probe decorator).
    """
    root = Path(root)
    if declarations is None:
        declarations = declarations_landed()
    problems = []
    for path in sorted((root / "exercises").glob("*.toml")):
        if modules is not None and path.stem not in modules:
            continue
        try:
            spec = load_module(path)
        except CatalogueError as exc:
            problems.append(str(exc).replace(str(path), _rel(root, path)))
            continue
        if spec.id != path.stem:
            problems.append(f"{_rel(root, path)}: [module] id is {spec.id!r} but the file is named {path.stem!r}")
        problems += _lint_master(root, spec)
        problems += _lint_checks(root, spec)
        problems += _lint_alternatives(root, spec)
        problems += _lint_probes(root, spec, declarations)
    return problems
