"""Module 01 as a learner meets it: a fresh workspace (`polyglot-lab get`), JupyterLab in a real browser, the
solutions typed into the learner's cells through the editor, each `grader.check` run and read off the page, a known
mistake, two hints, then Kernel > Restart Kernel and Run All Cells.

The page is driven through JupyterLab's own model (`window.jupyterapp`, exposed by --LabApp.expose_app_in_browser):
waits are on the kernel's status and on the notebook's run promises, never on page timing, and cells are addressed
by their index in the notebook model because JupyterLab virtualises them (windowed list)."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from polyglot_lab.catalogue import REPO, load_module
from polyglot_lab.progress import solution_sources
from polyglot_lab.serving import free_port

MODULE = "01_keras_prototype"
NOTEBOOK = f"{MODULE}.ipynb"
MASTER = REPO / "solutions" / NOTEBOOK
SPEC = load_module(REPO / "exercises" / f"{MODULE}.toml")
# The course kernel, installed by `make setup` (`polyglot-lab kernel`) into the environment (sys.prefix).
KERNEL_JSON = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
ARTIFACTS = REPO / "build" / "test-browser"  # git ignores build/

CELL_TIMEOUT_S = 180  # one cell, or one wait on the page: generous, but a hang fails with a message
LAB_START_TIMEOUT_S = 90
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# TensorFlow's start-up log, which a learner must not see under a cell.
LOG_NOISE = ("I0000", "E0000", "absl::InitializeLog", "cuInit", "oneDNN")
SCORE_LINE = re.compile(r"(\S+): (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?) points")
TOTAL_LINE = re.compile(r"total\s+(\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)")

pytestmark = pytest.mark.slow


# -- JupyterLab, started and stopped by the test ---------------------------------------------------------------
def hermetic_env(tmp: Path) -> dict[str, str]:
    """The test's environment without the user's Jupyter, IPython and home settings, and without the frameworks'
    settings (conftest's TF_CPP_MIN_LOG_LEVEL and KERAS_BACKEND): the kernel gets those from the course's kernel
    spec, as a learner's does. JUPYTER_PATH stays unset: the venv's kernel spec is found through sys.prefix."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JUPYTER", "IPYTHON", "XDG_", "PYTHON", "MPL", "KERAS_", "POLYGLOT_", "TF_"))}
    home = tmp / "home"
    dirs = {"HOME": home, "JUPYTER_CONFIG_DIR": tmp / "jupyter-config", "JUPYTER_DATA_DIR": tmp / "jupyter-data",
            "JUPYTER_RUNTIME_DIR": tmp / "jupyter-runtime", "IPYTHONDIR": tmp / "ipython",
            "XDG_CONFIG_HOME": home / ".config", "XDG_DATA_HOME": home / ".local" / "share",
            "XDG_CACHE_HOME": home / ".cache", "MPLCONFIGDIR": tmp / "matplotlib"}
    for name, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    return env


@contextlib.contextmanager
def start_lab(workspace: Path, tmp: Path):
    """JupyterLab on 127.0.0.1:<free port> in `workspace`, without token or password; yields (base url, log path).
    Stopped by its own process id (terminate, then kill), with the kernels it started."""
    import psutil

    settings = tmp / "lab-settings"  # overrides.json: no news or update pop-up on a first start
    settings.mkdir()
    (settings / "overrides.json").write_text(json.dumps({
        "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
        # each cell's execution times in its metadata: the learner timings of every check in one Run All
        "@jupyterlab/notebook-extension:tracker": {"recordTiming": True}}))
    port = free_port()
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               "--ServerApp.port_retries=0", f"--ServerApp.root_dir={workspace}",
               "--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password=",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.app_settings_dir={settings}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = tmp / "jupyterlab.log"
    with open(log, "wb") as out:
        lab = subprocess.Popen(command, cwd=workspace, env=hermetic_env(tmp), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LAB_START_TIMEOUT_S
        while True:  # ready when the REST API answers
            if lab.poll() is not None:
                pytest.fail(f"JupyterLab exited with {lab.returncode}:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {url}/api/status within {LAB_START_TIMEOUT_S}s:\n{tail(log)}")
            time.sleep(0.5)
        yield url, log
    finally:
        try:  # its kernels (and their children) are ours too: remember them before JupyterLab goes
            started = psutil.Process(lab.pid).children(recursive=True)
        except psutil.Error:
            started = []
        lab.terminate()
        try:
            lab.wait(timeout=20)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait(timeout=20)
        for process in started:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(started, timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


# -- the page: JupyterLab's model, through window.jupyterapp ---------------------------------------------------
# One small library in the page; each helper below is one call into it. `panel` is found by path, so a second
# notebook tab (hidden tabs stay in the DOM) can never be read by mistake.
PAGE_LIBRARY = """
window.__test = {
  runs: [],
  panel(path) {
    for (const widget of window.jupyterapp.shell.widgets('main')) {
      if (widget.context && widget.context.path === path) return widget;
    }
    throw new Error('no open notebook ' + path);
  },
  async show(path, index) {  // the cell in view and rendered: its editor and outputs exist
    const notebook = this.panel(path).content;
    await notebook.scrollToItem(index, 'center');
    const cell = notebook.widgets[index];
    await cell.ready;
    return cell;
  },
};
"""


def open_notebook(page, url: str, path: str) -> float:
    """Open `path` in JupyterLab; returns the seconds from the request to an idle, connected kernel. A dialog (no
    such kernel: "Select Kernel") ends the wait at once rather than after the timeout."""
    started = time.monotonic()
    page.goto(f"{url}/lab/tree/{path}")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell", timeout=CELL_TIMEOUT_S * 1000)
    page.evaluate(PAGE_LIBRARY)
    state = page.wait_for_function("""path => {
        if (document.querySelector('.jp-Dialog')) return 'dialog';
        const widget = window.jupyterapp.shell.currentWidget;
        if (!widget || !widget.context || widget.context.path !== path || !widget.context.isReady) return false;
        const session = widget.sessionContext, kernel = session.session && session.session.kernel;
        const idle = session.isReady && !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
        return idle && 'idle';
    }""", arg=path, timeout=CELL_TIMEOUT_S * 1000).json_value()
    assert state == "idle", f"a dialog opened with the notebook: {page.locator('.jp-Dialog').first.inner_text()}"
    return time.monotonic() - started


def kernel_info(page, path: str) -> dict:
    return page.evaluate("""path => {
        const session = __test.panel(path).sessionContext;
        return {name: session.session.kernel.name, display_name: session.kernelDisplayName,
                status: session.session.kernel.status};
    }""", path)


def notebook_cells(page, path: str) -> list[dict]:
    """[{type, tags, source}] of every cell, from the notebook model."""
    return page.evaluate("""path => {
        const cells = __test.panel(path).content.model.cells;
        const out = [];
        for (let i = 0; i < cells.length; i++) {
            const model = cells.get(i);
            out.push({type: model.type, tags: model.getMetadata('tags') || [], source: model.sharedModel.getSource()});
        }
        return out;
    }""", path)


def set_cell_source(page, path: str, index: int, source: str) -> None:
    """Replace cell `index`'s text through its CodeMirror 6 editor (as typing or pasting would), not the model."""
    written = page.evaluate("""async ([path, index, source]) => {
        const cell = await __test.show(path, index);
        const view = cell.editor.editor;  // the CodeMirror EditorView
        view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: source}});
        return cell.model.sharedModel.getSource();
    }""", [path, index, source])
    assert written == source, f"cell {index}: the editor's text did not reach the notebook model"


def run_cell(page, path: str, index: int) -> float:
    """Run cell `index` (Run > Run Selected Cell, on that cell alone) and wait for the notebook's run to finish;
    returns the seconds it took. A cell that raises is reported with its error."""
    started = time.monotonic()
    run = page.evaluate("""([path, index]) => {
        const panel = __test.panel(path), notebook = panel.content;
        window.jupyterapp.shell.activateById(panel.id);
        notebook.activeCellIndex = index;
        notebook.deselectAll();
        const run = {done: false, ok: null, error: null};
        __test.runs.push(run);
        window.jupyterapp.commands.execute('notebook:run-cell').then(
            ok => { run.ok = ok; run.done = true; }, error => { run.error = String(error); run.done = true; });
        return __test.runs.length - 1;
    }""", [path, index])
    page.wait_for_function("run => __test.runs[run].done", arg=run, timeout=CELL_TIMEOUT_S * 1000)
    seconds = time.monotonic() - started
    result = page.evaluate("""([path, index, run]) => {
        const model = __test.panel(path).content.model.cells.get(index);
        return {...__test.runs[run], count: model.executionCount, outputs: model.outputs.toJSON()};
    }""", [path, index, run])
    assert result["ok"] and result["count"] is not None, (
        f"cell {index} did not run cleanly ({result['error'] or 'it raised'}):\n{outputs_text(result['outputs'])}")
    return seconds


def output_text(page, path: str, index: int) -> str:
    """What the learner reads under cell `index`: the rendered output area's text."""
    page.evaluate("async ([path, index]) => { await __test.show(path, index); }", [path, index])
    return page.wait_for_function("""([path, index]) => {
        const cell = __test.panel(path).content.widgets[index];
        const text = cell.outputArea.node.innerText;
        return cell.model.outputs.length > 0 && text.trim() ? text : false;
    }""", arg=[path, index], timeout=CELL_TIMEOUT_S * 1000).json_value()


def insert_cell_below(page, path: str, index: int) -> int:
    """A new code cell below `index` (Notebook > Insert Cell Below); returns its index."""
    return page.evaluate("""async ([path, index]) => {
        const notebook = __test.panel(path).content;
        notebook.activeCellIndex = index;
        notebook.deselectAll();
        await window.jupyterapp.commands.execute('notebook:insert-cell-below');
        return notebook.activeCellIndex;
    }""", [path, index])


def delete_cell(page, path: str, index: int) -> None:
    page.evaluate("""async ([path, index]) => {
        const notebook = __test.panel(path).content;
        notebook.activeCellIndex = index;
        notebook.deselectAll();
        await window.jupyterapp.commands.execute('notebook:delete-cell');
    }""", [path, index])


def restart_and_run_all(page, path: str, timeout_s: float) -> float:
    """Kernel > Restart Kernel and Run All Cells, its dialog accepted as a learner would; waits for the command's
    run of every cell (its promise), then an idle kernel. Returns the seconds from the click on Restart."""
    run = page.evaluate("""path => {
        window.jupyterapp.shell.activateById(__test.panel(path).id);
        const run = {done: false, ok: null, error: null};
        __test.runs.push(run);
        window.jupyterapp.commands.execute('notebook:restart-run-all').then(
            ok => { run.ok = ok; run.done = true; }, error => { run.error = String(error); run.done = true; });
        return __test.runs.length - 1;
    }""", path)
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    accept.wait_for(timeout=CELL_TIMEOUT_S * 1000)
    started = time.monotonic()
    accept.click()
    page.wait_for_function("run => __test.runs[run].done", arg=run, timeout=timeout_s * 1000)
    page.wait_for_function("path => __test.panel(path).sessionContext.session.kernel.status === 'idle'",
                           arg=path, timeout=CELL_TIMEOUT_S * 1000)
    seconds = time.monotonic() - started
    result = page.evaluate("run => __test.runs[run]", run)
    assert result["ok"], f"Restart Kernel and Run All Cells did not finish cleanly: {result}"
    return seconds


def execution_seconds(page, path: str, index: int) -> float:
    """How long cell `index` ran in the kernel, from the timing JupyterLab records in its metadata (recordTiming)."""
    timing = page.evaluate("([path, index]) => __test.panel(path).content.model.cells.get(index).getMetadata('execution')",
                           [path, index])
    assert timing and "iopub.execute_input" in timing and "shell.execute_reply" in timing, timing
    started, ended = (datetime.fromisoformat(timing[k].replace("Z", "+00:00"))
                      for k in ("iopub.execute_input", "shell.execute_reply"))
    return round((ended - started).total_seconds(), 2)


def model_outputs(page, path: str) -> list[dict]:
    """[{index, count, outputs}] of every code cell, from the notebook model."""
    return page.evaluate("""path => {
        const cells = __test.panel(path).content.model.cells, out = [];
        for (let i = 0; i < cells.length; i++) {
            const model = cells.get(i);
            if (model.type === 'code') out.push({index: i, count: model.executionCount, outputs: model.outputs.toJSON()});
        }
        return out;
    }""", path)


def outputs_text(outputs: list[dict]) -> str:
    """The text of nbformat outputs: streams, text and HTML data, tracebacks."""
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream":
            parts.append(_joined(output.get("text", "")))
        elif output.get("output_type") == "error":
            parts.append("\n".join([f"{output.get('ename')}: {output.get('evalue')}", *output.get("traceback", [])]))
        else:
            data = output.get("data", {})
            parts += [_joined(data[kind]) for kind in ("text/plain", "text/html") if kind in data]
    return "\n".join(parts)


def _joined(text) -> str:
    return "".join(text) if isinstance(text, list) else str(text)


def points(text: str, exercise: str) -> tuple[float, float]:
    """(score, max) from a check's first line, `<id>: <score>/<max> points — <title>`."""
    match = next((m for m in SCORE_LINE.finditer(text) if m.group(1) == exercise), None)
    assert match, f"no '{exercise}: <score>/<max> points' line in the check's output:\n{text}"
    return float(match.group(2)), float(match.group(3))


def full_points(text: str, exercise: str) -> None:
    score, top = points(text, exercise)
    assert top > 0 and score == top, f"{exercise}: {score:g}/{top:g} points, expected full points:\n{text}"


# -- the test --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def screenshot_on_failure(page, name: str, log: Path):
    """A failing test keeps a screenshot of the page (build/test-browser/<test>.png) and shows JupyterLab's log."""
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{name}.png"
        with contextlib.suppress(Exception):  # the page may be gone; the failure itself matters more
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the failing page: {shot}")
        print(f"\nJupyterLab's log (last lines):\n{tail(log)}")
        raise


def fit_on_test(source: str) -> str:
    """The known mistake: the scaler fit on the test rows (its statistics leak into training)."""
    assert source.count(".fit(X_train)") == 1, "the master's split no longer fits its scaler with .fit(X_train)"
    return source.replace(".fit(X_train)", ".fit(X_test)")


def test_module_01_in_jupyterlab(tmp_path, request):
    if shutil.which("chromium") is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    assert KERNEL_JSON.exists(), f"no course kernel spec at {KERNEL_JSON}: run `make setup`"
    kernel_display_name = json.loads(KERNEL_JSON.read_text())["display_name"]
    solutions = solution_sources(MASTER)  # one cell per exercise in module 01
    timings: dict = {"check_s": {}}

    workspace = tmp_path / "workspace"
    subprocess.run([sys.executable, "-m", "polyglot_lab", "get", str(workspace)], check=True, cwd=tmp_path,
                   capture_output=True)
    assert (workspace / NOTEBOOK).exists()

    with start_lab(workspace, tmp_path) as (url, log), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            with screenshot_on_failure(page, request.node.name, log):
                run_module(page, url, kernel_display_name, solutions, timings)
        finally:
            browser.close()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
            print(f"\nlearner timings (s), also in {ARTIFACTS / 'timings.json'}:\n{json.dumps(timings, indent=2)}")


def run_module(page, url: str, kernel_display_name: str, solutions: dict[str, str], timings: dict) -> None:
    path = NOTEBOOK
    timings["open_to_idle_kernel_s"] = round(open_notebook(page, url, path), 2)
    kernel = kernel_info(page, path)
    assert kernel["name"] == "python3" and kernel["display_name"] == kernel_display_name, kernel
    assert page.locator(".jp-Dialog").count() == 0, "a dialog opened with the notebook"

    cells = notebook_cells(page, path)
    code = [i for i, cell in enumerate(cells) if cell["type"] == "code"]
    solution_at = {t.split(":", 1)[1]: i for i, c in enumerate(cells) for t in c["tags"] if t.startswith("solution:")}
    check_at = {t.split(":", 1)[1]: i for i, c in enumerate(cells) for t in c["tags"] if t.startswith("check:")}
    score_at = max(i for i in code if "grader.score()" in cells[i]["source"])
    # The learner edition marks the same exercises as the master, and each is checked after its cell.
    assert set(solution_at) == set(solutions) == {e.id for e in SPEC.exercises}
    assert all(solution_at[e] < check_at[e] for e in solution_at)

    def run_code_cells(first: int, last: int) -> None:
        """Run the code cells from index `first` to `last` (both included), in order, as they are."""
        for index in code:
            if first <= index <= last:
                run_cell(page, path, index)

    # A known mistake first: the scaler fit on the test rows. The check says what it expected and what it found.
    # (Module 01 has no hidden check; that hidden checks show only their points is tested on the report itself:
    # tests/test_release.py, test_the_notebook_names_what_is_checked_only_when_you_submit.)
    split, split_check = solution_at["split"], check_at["split"]
    run_code_cells(0, split - 1)
    set_cell_source(page, path, split, fit_on_test(solutions["split"]))
    run_code_cells(split, split_check)
    text = output_text(page, path, split_check)
    score, top = points(text, "split")
    assert score < top and "✘" in text and "expected" in text, f"the mistake's feedback:\n{text}"
    assert "found" in text, f"the check says what it expected, not what it found:\n{text}"
    assert 'grader.hint("split")' in text and not any(hint in text for hint in SPEC.exercise("split").hints), (
        f"the first failure must say how to get a hint, and print none:\n{text}")
    ask_for_hints(page, path, split_check)
    assert [c["tags"] for c in notebook_cells(page, path)] == [c["tags"] for c in cells], "the hint cell was left"

    # Every exercise's solution typed into its cell through the editor, then Kernel > Restart Kernel and Run All
    # Cells: the finished notebook runs top to bottom in a fresh kernel, and each check prints full points.
    for exercise in sorted(solution_at, key=solution_at.get):
        set_cell_source(page, path, solution_at[exercise], solutions[exercise])
    timings["restart_and_run_all_s"] = round(restart_and_run_all(page, path, SPEC.total_timeout), 2)
    for exercise in sorted(solution_at, key=solution_at.get):
        full_points(output_text(page, path, check_at[exercise]), exercise)
        timings["check_s"][exercise] = execution_seconds(page, path, check_at[exercise])
    outputs = model_outputs(page, path)
    unrun = [o["index"] for o in outputs if o["count"] is None]
    assert not unrun, f"cells without an execution count after Run All: {unrun}"
    errors = {o["index"]: outputs_text(o["outputs"]) for o in outputs
              if any(out.get("output_type") == "error" for out in o["outputs"])}
    assert not errors, f"error outputs after Run All: {errors}"
    noisy = {o["index"]: [n for n in LOG_NOISE if n in outputs_text(o["outputs"])] for o in outputs}
    noisy = {index: found for index, found in noisy.items() if found}
    assert not noisy, f"TensorFlow's log shows under cells (cell: what): {noisy}"
    full_total(output_text(page, path, score_at))
    assert page.locator(".jp-Dialog").count() == 0, "a dialog is still open"


def full_total(text: str) -> None:
    """grader.score()'s `total X/Y` line: every public point."""
    total = TOTAL_LINE.search(text)
    assert total and float(total.group(1)) == float(total.group(2)) > 0, f"grader.score():\n{text}"


def ask_for_hints(page, path: str, below: int) -> None:
    """grader.hint("split") twice in a new cell: one more hint each call, never the next one early."""
    hints = SPEC.exercise("split").hints  # the catalogue's
    assert len(hints) >= 2
    index = insert_cell_below(page, path, below)
    assert index == below + 1
    set_cell_source(page, path, index, 'grader.hint("split")')
    run_cell(page, path, index)
    first = output_text(page, path, index)
    run_cell(page, path, index)
    second = output_text(page, path, index)
    # N counts the catalogue's hints and those of the failing checks; the catalogue's come first.
    count = re.search(r"hint 1 of (\d+)", first)
    assert count and int(count.group(1)) >= len(hints) and hints[0] in first, first
    assert hints[1] not in first, f"the first hint gives away the second:\n{first}"
    assert f"hint 2 of {count.group(1)}" in second and hints[1] in second, second
    delete_cell(page, path, index)
