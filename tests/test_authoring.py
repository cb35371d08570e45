"""Authoring tools (graders/authoring.py): `new-exercise` writes every piece of an exercise once, on a copy of the
course in a temporary folder (never the repository); `lint_course` finds the pieces that disagree, on crafted
courses and on the real one; the grader's version names its release."""
import ast
import re
import shutil
from polyglot_lab.compat import tomllib
from pathlib import Path

import nbformat
import pytest

from conftest import MODULES
from graders import authoring
from graders.authoring import AuthoringError, lint_course, new_exercise
from graders.generate import BEGIN, END, kernel_side_text, learner_edition, notebook_side_text, remove_markers
from graders.teaching import LICENSE_LINE
from polyglot_lab.catalogue import REPO, load_catalogue, load_module

NEW = "normalise"


def copy_module(root: Path, module: str) -> authoring.ModuleFiles:
    """The repository's files of `module` (catalogue, probes, checks, mistake tests, master), copied under `root`."""
    (root / "exercises").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "exercises" / f"{module}.toml", root / "exercises")
    files = authoring.ModuleFiles(root, module)
    for path in (files.probes, files.notebook_checks, files.checks, files.tests, files.master):
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / path.relative_to(root), path)
    alternatives = REPO / "tests" / f"test_alternatives_m{module[:2]}.py"
    if alternatives.is_file():
        shutil.copy(alternatives, root / "tests")
    return files


def function(source: str, name: str) -> ast.FunctionDef:
    found = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(found) == 1, f"{name} is defined {len(found)} times"
    return found[0]


def tags(nb) -> list[list[str]]:
    return [list(c.metadata.get("tags", [])) for c in nb.cells]


# -- new-exercise ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module", MODULES)
def test_new_exercise_writes_every_piece_and_each_parses(tmp_path, module):
    files = copy_module(tmp_path, module)
    before = {p: p.read_text(encoding="utf-8") for p in (files.catalogue, files.probes, files.checks, files.tests)}
    old_master = nbformat.read(files.master, as_version=4)

    written = new_exercise(tmp_path, module, NEW)
    assert set(written) == {files.catalogue, files.probes, files.notebook_checks, files.checks, files.tests, files.master}
    assert all(tmp_path in p.parents for p in written)

    # the catalogue: appended, valid TOML, loads as a module with the new exercise and its one check
    toml = files.catalogue.read_text(encoding="utf-8")
    # appended, and in a module with parts also listed in its last part
    assert toml.startswith(authoring._in_last_part(before[files.catalogue], NEW).rstrip("\n"))
    tomllib.loads(toml)
    spec = load_module(files.catalogue)
    exercise = spec.exercise(NEW)
    assert exercise.title and exercise.asks and exercise.hints
    assert [(c.id, c.points) for c in exercise.checks] == [(authoring.FIRST_CHECK, 1.0)]
    assert "TODO" in exercise.checks[0].title
    assert [e.id for e in spec.exercises][:-1] == [e.id for e in load_catalogue()[module].exercises]

    # the probe: in the checks file's new section, a kernel block; the probes file is written from the kernel blocks
    probes = files.probes.read_text(encoding="utf-8")
    assert probes == kernel_side_text(module, files.rel(files.checks), files.checks.read_text(encoding="utf-8"))
    probe = function(probes, NEW)
    assert [a.arg for a in probe.args.args] == ["ns", "io"]
    decorator = probe.decorator_list[0]
    assert isinstance(decorator, ast.Call) and decorator.func.id == "probe" and decorator.keywords
    assert authoring.imported_as(probes, "polyglot_lab.probe", "probe") == "probe"
    assert authoring.imported_as(probes, "polyglot_lab.probe", "ARRAY") == "ARRAY"
    assert "import numpy as np" in probes

    # the checks: an input maker and one check that reads the probe's outputs and fails with expected/found/hint
    checks = files.checks.read_text(encoding="utf-8")
    assert NEW in authoring.registered_exercises(checks)
    assert function(checks, NEW).decorator_list  # the probe, beside its inputs and checks
    assert checks.index(f"def {NEW}(ns, io)") < checks.index(f"def {NEW}_inputs")
    maker = function(checks, f"{NEW}_inputs")
    assert ast.unparse(maker.decorator_list[0]) == f"registry.inputs('{NEW}')"
    check = function(checks, f"{NEW}_{authoring.FIRST_CHECK}")
    assert ast.unparse(check.decorator_list[0]) == f"registry.check('{NEW}', '{authoring.FIRST_CHECK}')"
    body = ast.unparse(check)
    assert f"ctx.outputs({NEW})" in body
    raised = [n for n in ast.walk(check) if isinstance(n, ast.Raise)][0]
    assert raised.exc.func.id == "CheckFailed"
    assert {k.arg for k in raised.exc.keywords} == {"expected", "found", "hint"}
    for name in ("CheckContext", "CheckFailed", "describe_array"):
        assert authoring.imported_as(checks, "polyglot_lab.checking", name) == name

    # the learner side: the new check runs in the notebook (its code is in a notebook block, written out to the
    # in-notebook checks file, which imports nothing of the grader)
    notebook = files.notebook_checks.read_text(encoding="utf-8")
    assert notebook == notebook_side_text(module, files.rel(files.checks), checks, files.probes_module)
    assert f"def {NEW}_{authoring.FIRST_CHECK}(ctx" in notebook and f"def {NEW}_inputs(ctx" in notebook
    assert "graders" not in {n.module.split(".")[0] for n in ast.walk(ast.parse(notebook))
                             if isinstance(n, ast.ImportFrom) and n.module}

    # the mistake test: a real test that names the check, with the helpers it uses imported
    tests = files.tests.read_text(encoding="utf-8")
    test = function(tests, f"test_{NEW}_mistake_is_named")
    assert [a.arg for a in test.args.args] == ["ctx"]
    checks_alias = authoring.imported_as(tests, *files.checks_module.rsplit(".", 1))
    assert f"fails_with({checks_alias}.{NEW}_{authoring.FIRST_CHECK}, ctx" in ast.unparse(test)
    assert f"craft(ctx, {checks_alias}.{NEW}" in ast.unparse(test)
    for name in ("craft", "fails_with"):
        assert authoring.imported_as(tests, "mistakes", name) == name

    # everything else in the Python files is still there
    for path in (files.checks, files.tests):
        old_names = authoring.top_level_names(before[path])
        assert old_names <= authoring.top_level_names(path.read_text(encoding="utf-8")), path

    # the master: valid, the old cells kept, three new cells before the score: prompt, solution, check
    nb = nbformat.read(files.master, as_version=4)
    nbformat.validate(nb)
    new = [c for c in nb.cells if c.id not in {o.id for o in old_master.cells}]
    assert [c.cell_type for c in new] == ["markdown", "code", "code"]
    assert [c.source for c in nb.cells if c not in new] == [c.source for c in old_master.cells]
    assert len({c.id for c in nb.cells}) == len(nb.cells)
    prompt, solution, check_cell = new
    numbers = [int(m.group(2)) for c in old_master.cells if (m := authoring.EXERCISE_HEADING.match(c.source))]
    level = authoring.EXERCISE_HEADING.match(prompt.source).group(1)
    assert prompt.source.startswith(f"{level} Exercise {max(numbers) + 1} · TODO")
    assert level == authoring.EXERCISE_HEADING.match(
        [c for c in old_master.cells if authoring.EXERCISE_HEADING.match(c.source)][-1].source).group(1)
    assert solution.metadata["tags"] == [f"solution:{NEW}"] and BEGIN in solution.source and END in solution.source
    assert check_cell.metadata["tags"][0] == f"check:{NEW}"
    assert check_cell.source == f'grader.check("{NEW}")'
    score = next(i for i, c in enumerate(nb.cells) if c.source == "grader.score()")
    assert nb.cells.index(check_cell) < score and LICENSE_LINE in nb.cells[-1].source  # the closing stays last
    if spec.parts:  # the catalogue puts it in the last part, and the master before that part's score
        assert spec.parts[-1].exercises[-1] == NEW
        part_score = next(i for i, c in enumerate(nb.cells) if c.source == f'grader.score("{spec.parts[-1].id}")')
        assert nb.cells.index(check_cell) < part_score
    learner = learner_edition(nb)
    stub = learner.cells[nb.cells.index(solution)].source
    assert f"raise NotImplementedError(\"Exercise {NEW} is yours to write" in stub and "return x" not in stub
    ast.parse(remove_markers(solution.source))


def test_the_stubs_run_end_to_end_and_fail_until_written(tmp_path):
    """Solution, probe, input maker and check of a new exercise run together; the check fails naming its TODO, and
    the mistake test fails (loudly) until the author writes the check's words and crafts the mistake."""
    from graders.checks import CheckContext, CheckFailed
    from polyglot_lab.probe import ProbeIO

    module = "01_keras_prototype"
    files = copy_module(tmp_path / "course", module)
    new_exercise(tmp_path / "course", module, NEW)
    probes = authoring._load(tmp_path / "course", files.probes_module)
    checks = authoring._load(tmp_path / "course", files.checks_module)
    checks.probes = probes  # the copy's checks read the copy's probes

    namespace: dict = {}
    nb = nbformat.read(files.master, as_version=4)
    solution = next(c for c in nb.cells if f"solution:{NEW}" in c.metadata.get("tags", []))
    exec(remove_markers(solution.source), namespace)  # the master's own solution stub

    ctx = CheckContext(tmp_path / "run", seed=7, device="cpu")
    io = ProbeIO(tmp_path / "run" / ".polyglot" / NEW, declared=getattr(probes, NEW).outputs)
    io.write_inputs(**checks.registry.input_makers[NEW](ctx))
    getattr(probes, NEW)(namespace, io)
    io.mark_done()
    with pytest.raises(CheckFailed) as failure:
        checks.registry.checks[(NEW, authoring.FIRST_CHECK)](ctx)
    assert failure.value.message.startswith("TODO")
    assert failure.value.expected and failure.value.hint and "(4, 3)" in failure.value.found

    test_source = ast.unparse(function(files.tests.read_text(encoding="utf-8"), f"test_{NEW}_mistake_is_named"))
    from mistakes import craft, fails_with
    scope = {"craft": craft, "fails_with": fails_with, "m01": checks}
    exec(test_source, scope)  # the generated test, against the copy's checks
    with pytest.raises(AssertionError, match="TODO"):
        scope[f"test_{NEW}_mistake_is_named"](CheckContext(tmp_path / "mistake", seed=7, device="cpu"))


def test_a_second_call_refuses_and_names_the_file(tmp_path):
    files = copy_module(tmp_path, "01_keras_prototype")
    new_exercise(tmp_path, "01_keras_prototype", NEW)
    written = {p: p.read_bytes() for p in (files.catalogue, files.probes, files.checks, files.tests, files.master)}
    with pytest.raises(AuthoringError, match=rf"'{NEW}' exists already.*exercises/01_keras_prototype.toml") as error:
        new_exercise(tmp_path, "01_keras_prototype", NEW)
    for path in ("graders/checks/m01_keras_prototype.py", "tests/test_mistakes_m01.py",
                 "solutions/01_keras_prototype.ipynb"):
        assert path in str(error.value)
    assert {p: p.read_bytes() for p in written} == written  # nothing written


def test_an_existing_exercise_is_refused_where_it_is_found(tmp_path):
    files = copy_module(tmp_path, "01_keras_prototype")
    with pytest.raises(AuthoringError, match="exercises/01_keras_prototype.toml") as error:
        new_exercise(tmp_path, "01_keras_prototype", "split")
    assert "graders/checks/m01_keras_prototype.py" in str(error.value)
    # only a probe (a kernel block of the checks file) has the name: still refused, naming the checks file alone
    files.checks.write_text(files.checks.read_text() + "\n\n# <kernel>\ndef orphan(ns, io):\n    pass\n# </kernel>\n")
    with pytest.raises(AuthoringError) as error:
        new_exercise(tmp_path, "01_keras_prototype", "orphan")
    assert str(error.value).endswith(": graders/checks/m01_keras_prototype.py")


def test_unknown_module_and_bad_ids_are_refused(tmp_path):
    copy_module(tmp_path, "01_keras_prototype")
    with pytest.raises(AuthoringError, match=r"exercises/09_nope.toml does not exist.*01_keras_prototype"):
        new_exercise(tmp_path, "09_nope", NEW)
    with pytest.raises(AuthoringError, match="module id is NN_slug"):
        new_exercise(tmp_path, "keras", NEW)
    for bad in ("Split", "2d", "with-dash", "class", ""):
        with pytest.raises(AuthoringError, match="lower-case Python name"):
            new_exercise(tmp_path, "01_keras_prototype", bad)
    assert NEW not in (tmp_path / "polyglot_lab/probes/m01_keras_prototype.py").read_text()  # nothing written


def test_the_first_exercise_of_a_new_module_creates_its_files(tmp_path):
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "07_demo.toml").write_text(
        '[module]\nid = "07_demo"\ntitle = "A demo"\nchecks = "graders.checks.m07_demo"\n'
        'probes = "polyglot_lab.probes.m07_demo"\n')
    written = new_exercise(tmp_path, "07_demo", "first", title="The first one")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "exercises/07_demo.toml", "graders/checks/m07_demo.py", "polyglot_lab/checks/m07_demo.py",
        "polyglot_lab/probes/m07_demo.py", "solutions/07_demo.ipynb", "tests/test_mistakes_m07.py"]
    spec = load_module(tmp_path / "exercises" / "07_demo.toml")
    assert spec.exercise("first").title == "The first one"
    for path in written:
        if path.suffix == ".py":
            ast.parse(path.read_text())
    checks = (tmp_path / "graders/checks/m07_demo.py").read_text()
    assert 'registry = Registry("07_demo")' in checks
    assert "ctx.outputs(first)" in checks and "# <kernel>" in checks and "# <notebook>" in checks
    notebook = (tmp_path / "polyglot_lab/checks/m07_demo.py").read_text()
    assert 'registry = Registry("07_demo")' in notebook and "def first_shape(ctx" in notebook.replace(
        f"first_{authoring.FIRST_CHECK}", "first_shape")
    assert (tmp_path / "polyglot_lab/probes/m07_demo.py").read_text() == kernel_side_text(
        "07_demo", "graders/checks/m07_demo.py", checks)
    nb = nbformat.read(tmp_path / "solutions/07_demo.ipynb", as_version=4)
    nbformat.validate(nb)
    assert 'grader = polyglot_lab.Notebook("07_demo")' in nb.cells[1].source
    assert tags(nb)[3:6] == [[], ["solution:first"], ["check:first", "nbval-ignore-output"]]
    assert "### You will be able to" in nb.cells[0].source and "<!-- sizing -->" in nb.cells[0].source
    assert nb.cells[2].source == 'polyglot_lab.course.show_lifecycle("07_demo")'
    assert nb.cells[3].source.startswith("## Exercise 1 · The first one") and "**Why.**" in nb.cells[3].source
    assert nb.cells[-2].source == "grader.score()" and "## What to keep" in nb.cells[-1].source


def test_a_mistake_test_file_without_a_ctx_fixture_gets_one(tmp_path):
    files = copy_module(tmp_path, "01_keras_prototype")
    files.tests.write_text('"""Mistakes."""\n')
    new_exercise(tmp_path, "01_keras_prototype", NEW)
    tests = files.tests.read_text()
    assert {"ctx", "pytest", "CheckContext", "m01", "craft", "fails_with", f"test_{NEW}_mistake_is_named"} <= \
        authoring.top_level_names(tests)
    assert tests.index("def ctx(") < tests.index(f"def test_{NEW}_")


def test_new_exercise_on_the_command_line(tmp_path, capsys):
    from graders.cli import main

    copy_module(tmp_path, "01_keras_prototype")
    assert main(["new-exercise", "--root", str(tmp_path), "01_keras_prototype", NEW, "--title", "Normalise"]) == 0
    assert "wrote exercises/01_keras_prototype.toml" in capsys.readouterr().out
    assert load_module(tmp_path / "exercises/01_keras_prototype.toml").exercise(NEW).title == "Normalise"
    assert main(["new-exercise", "--root", str(tmp_path), "01_keras_prototype", NEW]) == 2
    assert "exists already" in capsys.readouterr().err


def test_import_lines_are_merged_or_placed_in_order():
    source = '"""Doc."""\nfrom __future__ import annotations\n\nimport numpy as np\n\nfrom graders.checks import (\n' \
             '    CheckContext,\n    Registry,\n)\nfrom polyglot_lab.data import digits\n\nregistry = 1\n'
    merged = authoring.ensure_import(source, "graders.checks", "CheckFailed")
    assert "from graders.checks import CheckContext, CheckFailed, Registry\n" in merged
    placed = authoring.ensure_import(merged, "polyglot_lab.probes", "m01_x", asname="probes")
    assert placed.index("from polyglot_lab.data") < placed.index("from polyglot_lab.probes import m01_x as probes")
    assert placed.index("as probes") < placed.index("registry = 1")
    assert authoring.ensure_import(placed, "graders.checks", "Registry") == placed
    bare = authoring.ensure_import('"""Doc."""\nfrom __future__ import annotations\n\nx = 1\n', "mistakes", "craft")
    assert bare.split("\n")[:3] == ['"""Doc."""', "from __future__ import annotations", "from mistakes import craft"]
    ast.parse(bare)


# -- lint_course ---------------------------------------------------------------------------------------------------
CATALOGUE = """[module]
id = "01_demo"
title = "Demo"
checks = "graders.checks.m01_demo"
probes = "polyglot_lab.probes.m01_demo"

[[exercise]]
id = "alpha"
title = "Alpha"
  [[exercise.check]]
  id = "right"
  title = "alpha is right"
  points = 1
  [[exercise.check]]
  id = "later"
  title = "alpha is right on the grader's own data"
  points = 1
  runs = "submission"
  [[exercise.check]]
  id = "outside"
  title = "alpha is right in the notebook"
  points = 1

[[exercise]]
id = "beta"
title = "Beta"
  [[exercise.check]]
  id = "right"
  points = 1
"""

CHECKS = '''# <notebook>
from polyglot_lab.checking import Registry

registry = Registry("01_demo")


@registry.check("alpha", "right")
def alpha_right(ctx):
    return "ok"


@registry.check("alpha", "later")
def alpha_later(ctx):
    return "ok"
# </notebook>


@registry.check("alpha", "outside")
def alpha_outside(ctx):
    return "ok"


@registry.check("ghost", "boo")
def ghost_boo(ctx):
    return "ok"
'''

PROBES = '''def declare(**outputs):
    def mark(fn):
        fn.outputs = outputs
        return fn
    return mark


@declare(result="array")
def alpha(ns, io):
    pass


def stray(ns, io):
    pass


def helper(inputs):
    """Not a probe: it does not take (ns, io)."""


def _private(ns, io):
    pass
'''

MISTAKES = '''def test_alpha(ctx):
    fails_with(m01.alpha_right, ctx, "words")
    fails_with(m01.alpha_later, ctx, "words")
    fails_with(m01.alpha_outside, ctx, "words")


def test_not_ghost_boo_itself():
    """test_ghost_boo_variant names a longer word: ghost_boo_variant."""
'''

ALTERNATIVES = '''def test_alpha_in_another_style(ctx):
    full_marks(ctx, m01.registry, "alpha")


def test_alpha_without_its_verdict(ctx):
    assert True
'''


def crafted_course(root: Path) -> Path:
    for path, text in {"exercises/01_demo.toml": CATALOGUE, "graders/checks/m01_demo.py": CHECKS,
                       "polyglot_lab/probes/m01_demo.py": PROBES, "tests/test_mistakes_m01.py": MISTAKES}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    nb = nbformat.v4.new_notebook()
    cells = [("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION", []),
             (f"def f():\n    {BEGIN}\n    return 1\n    {END}", ["solution:alpha"]),
             ("beta = 2", ["solution:beta"]),
             ('grader.check("gamma")', ["check:gamma"])]
    for source, cell_tags in cells:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": cell_tags}))
    (root / "solutions").mkdir()
    nbformat.write(nb, root / "solutions" / "01_demo.ipynb")
    (root / "tests/test_alternatives_m01.py").write_text(ALTERNATIVES)
    return root


def test_lint_finds_each_kind_of_problem(tmp_path):
    problems = lint_course(crafted_course(tmp_path), declarations=False)
    expected = [
        r"^solutions/01_demo.ipynb: cell 0 .* has solution markers .* but no solution:<id> tag",
        r"^solutions/01_demo.ipynb: cell 2 .* tagged solution:beta but has no ### BEGIN SOLUTION",
        r"^solutions/01_demo.ipynb: cell 3 .* tagged check:gamma, but exercises/01_demo.toml has no exercise 'gamma'",
        r"^exercises/01_demo.toml: check beta.right has no title: the one-line requirement it enforces",
        r"^exercises/01_demo.toml: check beta.right has no check registered in graders/checks/m01_demo.py",
        r"^graders/checks/m01_demo.py: check ghost.boo is registered but exercises/01_demo.toml has no such check",
        r"^graders/checks/m01_demo.py: check alpha.later is in a # <notebook> block, so it ships to learners, but "
        r"exercises/01_demo.toml says it runs only at submission",
        r"^exercises/01_demo.toml: check alpha.outside runs in the notebook, but graders/checks/m01_demo.py "
        r"registers it outside its # <notebook> blocks",
        r"^graders/checks/m01_demo.py: check ghost.boo \(ghost_boo\) has no mistake test: neither ghost_boo nor "
        r"'boo' is named in tests/test_mistakes_m01.py",
        r"^tests/test_alternatives_m01.py: 1 valid-alternative test\(s\) for module 01_demo, at least 5 wanted",
        r"^polyglot_lab/probes/m01_demo.py: probe stray matches no exercise of exercises/01_demo.toml",
    ]
    assert len(problems) == len(expected), "\n".join(problems)
    for pattern, problem in zip(expected, problems):
        assert re.search(pattern, problem), (pattern, problem)


def test_lint_asks_probes_to_declare_their_outputs(tmp_path):
    problems = lint_course(crafted_course(tmp_path), declarations=True)
    undeclared = [p for p in problems if "declares no outputs" in p]
    assert undeclared == [p for p in undeclared if "probe stray " in p] and len(undeclared) == 1
    assert "polyglot_lab/probes/m01_demo.py: probe stray declares no outputs" in undeclared[0]


def test_lint_reports_missing_and_broken_files(tmp_path):
    root = crafted_course(tmp_path)
    (root / "graders/checks/m01_demo.py").write_text("import no_such_module_here\n")
    (root / "polyglot_lab/probes/m01_demo.py").unlink()
    (root / "solutions/01_demo.ipynb").unlink()
    (root / "exercises/02_bad.toml").write_text("[module]\nid = '02_bad'\n")
    assert lint_course(root) == [
        "solutions/01_demo.ipynb: no master for module 01_demo",
        "graders/checks/m01_demo.py could not be imported: ModuleNotFoundError: No module named 'no_such_module_here'",
        "tests/test_alternatives_m01.py: 1 valid-alternative test(s) for module 01_demo, at least 5 wanted "
        "(test_* functions that end in full_marks(ctx, registry, exercise))",
        "exercises/01_demo.toml: its probes module polyglot_lab.probes.m01_demo has no file "
        "polyglot_lab/probes/m01_demo.py",
        "exercises/02_bad.toml: no [[exercise]] entries",
    ]
    assert lint_course(root, modules=["02_bad"]) == ["exercises/02_bad.toml: no [[exercise]] entries"]


def test_a_new_exercise_adds_no_lint_problem(tmp_path):
    for module in MODULES:
        copy_module(tmp_path, module)
        new_exercise(tmp_path, module, NEW)
    assert set(lint_course(tmp_path)) == set(lint_course(REPO)), "\n".join(
        set(lint_course(tmp_path)) ^ set(lint_course(REPO)))


def test_the_course_has_no_lint_problems():
    problems = lint_course(REPO)
    assert problems == [], f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_verify_prints_lint_problems_and_fails(monkeypatch, capsys):
    import graders.verify as verify

    asked = []
    monkeypatch.setattr(verify, "lint_course", lambda root, modules: asked.append(modules) or ["a problem"])
    monkeypatch.setattr(verify, "resolve_device", lambda device: "cpu")
    assert verify.verify([]) == 1
    assert asked == [[]]
    out = capsys.readouterr().out
    assert "FAIL course lint: 1 problem(s)" in out and "a problem" in out
    monkeypatch.setattr(verify, "lint_course", lambda root, modules: [])
    assert verify.verify([]) == 0


# -- the grader's version ------------------------------------------------------------------------------------------
def test_grader_version_starts_with_the_changelogs_latest_release():
    from graders.store import grader_version, release

    headings = re.findall(r"^## \[?([^\]\s]+)", (REPO / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert len(headings) >= 2 and release() == headings[0]
    version = grader_version()
    assert version.startswith(f"{headings[0]}+") and re.fullmatch(r"[0-9a-f]{12}", version.split("+", 1)[1])


def test_release_reads_the_first_heading(tmp_path):
    from graders.store import release

    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text("# Changelog\n\nIntro.\n\n## [0.3.0] - unreleased\n\n### Added\n\n## [0.2.0] - 2026-12-01\n")
    assert release(changelog) == "0.3.0"
    changelog.write_text("# Changelog\n\n## 1.0.0 (2027-01-01)\n")
    assert release(changelog) == "1.0.0"
    assert release(tmp_path / "missing.md") == "unreleased"
