"""Grade one notebook (grade_module) or a class of submissions (grade_class)."""
from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from graders.checker import Checker
from graders.checks import CheckContext, load_registry, run_check
from graders.execute import ExecutionReport, execute_submission
from graders.results import (
    FAILED,
    NO_DEVICE,
    SKIPPED,
    CheckResult,
    LearnerResult,
    ModuleResult,
)
from polyglot_lab.catalogue import ModuleSpec
from polyglot_lab.probe import probe_io


def read_notebook(path: Path):
    """The notebook at path, or a ValueError that names the file and what is wrong with it."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path.name} could not be read: {exc.strerror or exc}") from None
    if not text.strip():
        raise ValueError(f"{path.name} is empty")
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not a notebook: it is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or "cells" not in raw and "worksheets" not in raw:
        raise ValueError(f"{path.name} is not a notebook: it has no cells")
    try:
        nb = nbformat.reads(text.decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - any malformation is reported the same way
        raise ValueError(f"{path.name} is not a valid notebook: {str(exc).splitlines()[0][:200]}") from None
    return nb


def _not_graded(spec: ModuleSpec, learner: str, reason: str, device: str, submitted: bool) -> ModuleResult:
    result = ModuleResult(learner=learner, module=spec.id, title=spec.title, submitted=submitted, problem=reason)
    for exercise in spec.exercises:
        for check in exercise.checks:
            skipped = check.device == "gpu" and device != "cuda"
            result.checks.append(CheckResult(
                module=spec.id, exercise=exercise.id, check=check.id, title=check.title, score=0.0,
                max_score=check.points, status=SKIPPED if skipped else FAILED,
                message=NO_DEVICE if skipped else reason, hidden=check.hidden, device=device))
    return result


def grade_module(path: Path | None, spec: ModuleSpec, learner: str = "learner", device: str = "cpu",
                 seed: int | None = None, keep_workdir: Path | None = None, limits=None,
                 hide: tuple[Path, ...] = ()) -> ModuleResult:
    """Execute one submitted notebook and run its module's checks in this process. The kernel sees a copy of the
    notebook, never the folder it was submitted in (nor the folders in `hide`).

    The steps: read the notebook, prepare the working folder, execute, check, record."""
    if path is None or not Path(path).exists():
        return _not_graded(spec, learner, f"not submitted: {spec.notebook_name} was not found", device, False)
    path = Path(path)
    try:
        nb = read_notebook(path)
    except ValueError as exc:
        return _not_graded(spec, learner, str(exc), device, True)

    seed = secrets.randbits(63) if seed is None else seed
    registry = load_registry(spec.checks_module)
    workdir = Path(tempfile.mkdtemp(prefix=f"polyglot-{spec.id}-"))
    hide = (path.resolve().parent, *hide)
    checker = Checker([workdir], device, hide=hide)  # started by the first check that opens an artifact
    try:
        ctx = _prepare_workdir(path, spec, registry, CheckContext(workdir, seed, device, checker=checker,
                                                                           artifacts=spec.artifact_names))
        report = execute_submission(nb, spec, workdir, device=device, limits=limits, hide=hide)
        drop_links_out_of(workdir)
        ctx.facts = report.facts
        started = time.monotonic()
        checks = _run_checks(registry, ctx, spec, device)
        return _record(spec, learner, seed, report, checks, time.monotonic() - started, checker.starts)
    finally:
        checker.close()
        if keep_workdir is not None:
            shutil.copytree(workdir, keep_workdir, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _prepare_workdir(path: Path, spec: ModuleSpec, registry, ctx: CheckContext) -> CheckContext:
    """The run's working folder: a copy of the notebook and the grader's inputs for the probes (drawn from the seed)."""
    shutil.copyfile(path, ctx.workdir / spec.notebook_name)
    for exercise_id, make_inputs in registry.input_makers.items():
        probe_io(exercise_id, ctx.workdir).write_inputs(**make_inputs(ctx))
    return ctx


def _run_checks(registry, ctx: CheckContext, spec: ModuleSpec, device: str) -> list[CheckResult]:
    """Every check of the module, in catalogue order, on what the run left in the working folder."""
    return [run_check(registry, ctx, spec, exercise, check, device)
            for exercise in spec.exercises for check in exercise.checks]


def _record(spec: ModuleSpec, learner: str, seed: int, report: ExecutionReport, checks: list[CheckResult],
            grading_s: float, checker_starts: int) -> ModuleResult:
    """The module's result: the run (executed notebook, cell errors, why it stopped, time, memory) and the checks."""
    result = ModuleResult(learner=learner, module=spec.id, title=spec.title, submitted=True,
                          stopped=report.stopped, execution_s=report.duration_s, seed=seed,
                          peak_memory_mb=report.peak_memory_mb, protection=report.protection)
    result.notebook = report.notebook
    result.cell_errors = report.cell_errors
    result.checks = checks
    result.grading_s = grading_s
    result.checker_starts = checker_starts
    result.worker_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return result


def drop_links_out_of(workdir: Path) -> None:
    """Remove symbolic links that lead out of the working directory: the checks run with the grader's rights and
    must read only what the graded run wrote (a link to the solutions or /etc is then simply not there)."""
    root = workdir.resolve()
    for path in list(workdir.rglob("*")):
        if path.is_symlink() and root not in Path(os.path.realpath(path)).parents:
            path.unlink()


def _nfc_learners(names: Iterable[str]) -> list[str]:
    """Learner folder names, sorted by their Unicode NFC form, which reports show (graders.reports.display_name) and
    key their folders by. Two folders whose names differ only in normalisation ("José" typed in NFC, and in NFD as
    macOS writes it) would be merged or doubled there: refuse them, naming both, before anything is graded."""
    import unicodedata

    def form(name: str) -> str:
        return next((f for f in ("NFC", "NFD") if unicodedata.is_normalized(f, name)), "mixed")

    seen: dict[str, str] = {}
    for name in sorted(names):
        other = seen.setdefault(unicodedata.normalize("NFC", name), name)
        if other != name:
            raise ValueError(
                "two learner folders have the same name after Unicode normalisation: "
                f"{other!r} ({form(other)}, {ascii(other)}) and {name!r} ({form(name)}, {ascii(name)}); rename one")
    return [seen[key] for key in sorted(seen)]


LAYOUT = "<dir>/<learner>/<NN_slug>.ipynb"


def _shown(name: str) -> str:
    """A file name as one line of a message: as it is, or escaped where it holds a control character."""
    return name if name.isprintable() else ascii(name)


def _listed(names: list[str], most: int = 4) -> str:
    shown = ", ".join(_shown(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def notebook_key(name: str) -> str:
    """A notebook's name as near matching compares it: without `.ipynb`, case-folded, every run of spaces, dashes,
    dots, underscores and brackets one `_`, and a leading "Copy of " dropped. "00_Setup (1).ipynb" -> "00_setup_1"."""
    stem = name[:-len(".ipynb")] if name.lower().endswith(".ipynb") else name
    key = re.sub(r"[\s\-_.()\[\]]+", "_", stem.casefold()).strip("_")
    return key[len("copy_of_"):] if key.startswith("copy_of_") else key


def _is_candidate(path: Path) -> bool:
    """A notebook a learner may have meant as a submission: not Jupyter's checkpoint, not the course's own update
    that `polyglot-lab get` puts beside the learner's work (NN_slug.new.ipynb)."""
    name = path.name.lower()
    return name.endswith(".ipynb") and not name.endswith((".new.ipynb", "-checkpoint.ipynb"))


def learner_notebooks(folder: Path) -> list[Path]:
    """The notebooks in a learner's folder and in its subfolders one level down (a repository's notebooks/, say),
    hidden folders and .ipynb_checkpoints left out."""
    def listing(where: Path) -> list[Path]:
        try:
            return sorted(p for p in where.iterdir() if not p.name.startswith("."))
        except OSError:  # unreadable: nothing found there (grading an exact name says why it cannot be read)
            return []

    found = []
    for entry in listing(folder):
        if entry.is_dir():
            found += [p for p in listing(entry) if p.is_file() and _is_candidate(p)]
        elif entry.is_file() and _is_candidate(entry):
            found.append(entry)
    return found


def find_notebook(folder: Path, spec: ModuleSpec, modules: Iterable[ModuleSpec] = ()) -> tuple[Path | None, str | None]:
    """(the notebook to grade for `spec` in a learner's folder, a note for the learner's feedback or None).

    The exact name wins. Otherwise a near match is taken when it is the only one: a notebook whose name, compared as
    notebook_key does, is the module's or starts with it ("00_Setup (1).ipynb", "Copy of 00_setup.ipynb",
    "notebooks/00_setup.ipynb"), and that is no other module's near match (`modules`: the modules being graded).
    Two or more near matches: none is graded, and the note names them."""
    wanted = spec.notebook_name
    exact = folder / wanted
    others = [m for m in modules if m.id != spec.id]
    exact_names = {wanted, *(m.notebook_name for m in others)}

    def near(path: Path, module: ModuleSpec) -> bool:
        key, target = notebook_key(path.name), notebook_key(module.notebook_name)
        return key == target or key.startswith(target + "_")

    close = [p for p in learner_notebooks(folder) if not (p.parent == folder and p.name in exact_names)
             and near(p, spec) and not any(near(p, m) for m in others)]
    names = [p.relative_to(folder).as_posix() for p in close]
    if exact.exists():  # a folder or an unreadable file of that name too: grade_module says what is wrong with it
        return exact, (f"Graded {wanted}; also found {_listed(names)}, not graded." if close else None)
    if len(close) == 1:
        return close[0], (f"{wanted} was not found: graded {_shown(names[0])} instead, the only notebook whose name is "
                          f"close to it. Name it {wanted} next time.")
    if close:
        return None, (f"{wanted} was not found, and {len(close)} notebooks have names close to it ({_listed(names)}): "
                      f"none was graded, as it is not clear which one is the submission. Rename that one {wanted}.")
    return None, None


class ClassLayoutError(ValueError):
    """The submissions folder is not laid out as <dir>/<learner>/<NN_slug>.ipynb: said before any grading."""


@dataclass
class ClassSurvey:
    """What a submissions folder holds: the learners (folder names on disk, sorted by their NFC form), the files at
    its top that are not learner folders (ignored, and said), and each (learner, module)'s notebook with its note."""
    folder: Path
    learners: list[str]
    stray: list[str] = field(default_factory=list)
    found: dict[tuple[str, str], tuple[Path | None, str | None]] = field(default_factory=dict)

    def warnings(self) -> list[str]:
        said = []
        if self.stray:
            notebooks = [n for n in self.stray if n.lower().endswith(".ipynb")]
            said.append(f"ignored {len(self.stray)} file(s) at the top of {self.folder}, which holds one folder per "
                        f"learner: {_listed(self.stray)}"
                        + (" (a notebook there belongs in its learner's folder)" if notebooks else ""))
        for (learner, module), (_path, note) in self.found.items():
            if note:
                said.append(f"{_shown(learner)}/{module}: {note}")
        return said


def survey_class(submissions: Path, modules: Iterable[ModuleSpec] = ()) -> ClassSurvey:
    """The class in `submissions`, or an error that says what the folder holds and what was expected (LAYOUT):
    FileNotFoundError without a folder; ClassLayoutError for a folder with no learner folders, one learner's own
    folder (course notebooks at its top and no notebook below), or learner folders none of which holds a notebook;
    ValueError when two learner names collide under NFC."""
    modules = list(modules)
    if not submissions.is_dir():
        what = "a file, not a folder" if submissions.exists() else "no such submissions folder"
        raise FileNotFoundError(f"{submissions}: {what} (expected {LAYOUT})")
    entries = [e for e in sorted(submissions.iterdir()) if not e.name.startswith(".")]
    folders = [e.name for e in entries if e.is_dir()]
    files = [e.name for e in entries if not e.is_dir()]
    course = re.compile(r"^\d\d_")
    top_notebooks = [n for n in files if _is_candidate(Path(n)) and (course.match(notebook_key(n)) or any(
        notebook_key(n).startswith(notebook_key(m.notebook_name)) for m in modules))]
    holding = [f for f in folders if learner_notebooks(submissions / f)]
    if top_notebooks and not holding:
        below = f" and its {len(folders)} subfolder(s) ({_listed(folders)}) hold no notebook" if folders else ""
        raise ClassLayoutError(
            f"{submissions} looks like one learner's folder: it holds {_listed(top_notebooks)} itself{below}; pass the "
            f"folder that holds one folder per learner (expected {LAYOUT})")
    if not folders:
        held = f"only {len(files)} file(s): {_listed(files)}" if files else "nothing"
        raise ClassLayoutError(f"{submissions} holds no learner folders ({held}); expected {LAYOUT}")
    if not holding:
        raise ClassLayoutError(f"none of the {len(folders)} learner folder(s) in {submissions} ({_listed(folders)}) "
                               f"holds a notebook (.ipynb); expected {LAYOUT}")
    learners = _nfc_learners(folders)
    found = {(learner, spec.id): find_notebook(submissions / learner, spec, modules)
             for learner in learners for spec in modules}
    return ClassSurvey(submissions, learners, files, found)


def discover_learners(submissions: Path) -> list[str]:
    """The learner folders of a class by their names on disk (what finds <learner>/<NN_slug>.ipynb; reports show
    them in NFC). FileNotFoundError without a class folder; ValueError (ClassLayoutError) when the folder is not laid
    out as a class or two names collide under NFC (survey_class)."""
    return survey_class(submissions).learners


# What the grading process's own framework calls print about the frameworks themselves (the grader builds reference
# models, exports and runs them): TensorFlow's Python logger ("5 out of the last 5 calls to <function> triggered
# tf.function retracing"), absl's, and framework warnings. The learner's code never runs here (kernel and checker are
# processes of their own, their output captured), so nothing a learner needs to see is dropped.
FRAMEWORK_LOGGERS = ("tensorflow", "absl", "keras", "jax", "torch", "onnx", "onnxruntime", "onnxscript", "h5py")
FRAMEWORK_MODULES = r"(tensorflow|tf_keras|keras|absl|jax|torch|torchvision|onnx|onnxruntime|onnxscript|onnx_ir|" \
                    r"tf2onnx|h5py|google\.protobuf|ai_edge_litert|numpy|sklearn|ml_dtypes)(\.|$)"


def quiet_frameworks() -> None:
    """No framework noise in the grader's console (`make grade`, and each grading worker process)."""
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=FRAMEWORK_MODULES)


def _grade_task(task: tuple) -> ModuleResult:
    """One (learner, module) of a class, on a Dask worker: `task` is (notebook, spec, learner, device, seed, limits,
    hide), where notebook is (file name, bytes) or None (not submitted). The bytes are written to a folder of this
    worker's own (a cluster need not share a file system with the client); the executed notebook stays behind."""
    notebook, spec, learner, device, seed, limits, hide = task
    hide = tuple(p for p in hide if Path(p).exists())  # the client's class and store folders, where they are here
    if notebook is None:
        result = grade_module(None, spec, learner, device, seed=seed, limits=limits, hide=hide)
    else:
        name, data = notebook
        folder = Path(tempfile.mkdtemp(prefix="polyglot-submission-"))
        try:
            path = folder / name
            path.write_bytes(data)
            result = grade_module(path, spec, learner, device, seed=seed, limits=limits, hide=hide)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    result.notebook = None
    return result


def run_task(task: tuple) -> tuple[ModuleResult, dict]:
    """What a Dask worker runs for one task: _grade_task (looked up when it runs, so a test's stand-in is honoured by
    the in-process worker), with what the client needs besides the result: the grader version this worker grades
    with, the seconds the task took here and the pickled result's size."""
    import pickle

    from graders.store import grader_version

    started = time.monotonic()
    quiet_frameworks()
    result = _grade_task(task)
    info = {"grader": grader_version(), "task_s": time.monotonic() - started}
    info["result_bytes"] = len(pickle.dumps(result))
    return result, info


def task_deadline_s(spec: ModuleSpec) -> float:
    """How long the client waits for one task's result before it gives the task up (its row then says so): three
    times the module's execution limit and ten minutes for the checks. A task is bounded by its kernel's limits; this
    catches what they cannot (a wedged worker, a result that never arrives)."""
    return 3 * spec.total_timeout + 600


UNREADABLE = "unreadable"
NOT_GRADED = "not-graded:"  # the store's submission key of a row that could not be graded: never reused


def _digest(path: Path | None) -> str:
    """content_hash, or UNREADABLE for a file that cannot be read (its row then says why)."""
    from graders.store import content_hash

    try:
        return content_hash(path)
    except OSError:
        return UNREADABLE


def could_not_grade(spec: ModuleSpec, learner: str, reason: str, device: str) -> ModuleResult:
    """The row of a task that no worker could finish: every check failed with the reason, the reason as its problem."""
    return _not_graded(spec, learner, f"could not be graded: {reason}", device, True)


def _failure(exc: BaseException) -> str:
    """Why a task failed on the cluster, in one line for the learner's row."""
    from distributed import KilledWorker

    if isinstance(exc, KilledWorker):
        last = getattr(getattr(exc, "last_worker", None), "address", None) or "a worker"
        tries = getattr(exc, "allowed_failures", 3) + 1
        return (f"its worker died while grading it, on each of the {tries} worker(s) it was tried on (the last: "
                f"{last}): a grading that takes its worker down (memory past the worker's limit, a crash) is not "
                "tried again")
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"the grader failed on the worker: {type(exc).__name__}: {text}".rstrip(": ")


def grade_class(submissions: Path, modules: Iterable[ModuleSpec], device: str,
                on_result: Callable[[ModuleResult], None] | None = None,
                on_learner: Callable[[LearnerResult], None] | None = None,
                jobs: int = 1, store=None, limits=None, fresh: bool = False,
                scheduler: str | None = None, cluster=None) -> list[LearnerResult]:
    """Grade every learner's notebooks, each (learner, module) a task on Dask (graders.cluster): with `cluster`, on
    it; else on one opened for this call (`scheduler`: an existing cluster's address; otherwise `jobs` worker
    processes of an embedded cluster, one worker in this process for jobs=1) and closed at the end.

    This process keeps the truth: with a ResultStore, results graded before under the same submission and grader
    version are reused (a killed run resumes; `fresh`: nothing is reused, everything is graded and stored again), and
    each result is stored as it arrives. A worker receives the notebook's bytes and returns the result. A task that
    no worker could finish (its workers died, or the grader raised) becomes a "could not be graded: ..." row, stored
    so that the reports show it but never reused. A notebook found by a near match (find_notebook) is graded, and
    its result carries the note. Seeds derive from the submission's content, so serial, parallel, clustered and
    resumed runs agree."""
    from graders.store import derived_seed

    if jobs < 1:
        raise ValueError(f"jobs must be 1 or more, not {jobs}")
    modules = list(modules)
    survey = survey_class(submissions, modules)
    learners = survey.learners
    hide = (submissions.resolve(), *([store.path.resolve().parent] if store else []))  # the class, the results
    done: dict[tuple[str, str], ModuleResult] = {}
    notes: dict[tuple[str, str], str | None] = {}
    pending: list[tuple[str, ModuleSpec, Path | None]] = []
    for learner in learners:
        for spec in modules:
            path, notes[(learner, spec.id)] = survey.found[(learner, spec.id)]
            digest = _digest(path)
            cached = store.get(learner, spec.id, device, digest) if store and not fresh else None
            if cached is not None:
                cached.reused, cached.note = "unchanged", notes[(learner, spec.id)]
                done[(learner, spec.id)] = cached
                continue
            graded = store.last(learner, spec.id) if store and path is None else None
            if graded is not None and graded.submitted:  # a notebook no longer there never replaces its result
                graded.reused, graded.note = "missing", notes[(learner, spec.id)]
                done[(learner, spec.id)] = graded
            else:
                pending.append((learner, spec, path))

    reported: set[str] = set()

    def report(result: ModuleResult | None = None, digest: str | None = None) -> None:
        if result is not None:
            result.note = notes[(result.learner, result.module)]
            done[(result.learner, result.module)] = result
            if store:
                store.put(result, device, digest)
            if on_result:
                on_result(result)
        for learner in learners:
            if learner not in reported and all((learner, m.id) in done for m in modules):
                reported.add(learner)
                if on_learner:
                    on_learner(LearnerResult(learner, [done[(learner, m.id)] for m in modules]))

    def task_of(learner: str, spec: ModuleSpec, path: Path | None) -> tuple[tuple, str] | ModuleResult:
        """(the task, the submission's hash), from the notebook's bytes read now (one read: the hash is the bytes'
        that are graded); a notebook that cannot be read is its row at once."""
        import hashlib

        from graders.store import MISSING

        if path is None:
            data, digest = None, MISSING
        else:
            try:
                data = path.read_bytes()
            except OSError as exc:
                return _not_graded(spec, learner, f"{path.name} could not be read: {exc.strerror or exc}", device, True)
            digest = hashlib.sha256(data).hexdigest()
        notebook = None if data is None or path is None else (path.name, data)
        return (notebook, spec, learner, device, derived_seed(digest, spec.id), limits, hide), digest

    for cached in list(done.values()):
        if on_result:
            on_result(cached)
    report()
    if not pending:
        return [LearnerResult(learner, [done[(learner, m.id)] for m in modules]) for learner in learners]
    own = cluster is None
    if own:
        from graders.cluster import open_cluster
        cluster = open_cluster(jobs, scheduler)
    try:
        try:
            cluster.warm()
        except Exception:  # noqa: BLE001 - a worker that cannot import the grader says so in its task's row
            pass
        _run_on(cluster, pending, task_of, report, device)
    finally:
        if own:
            cluster.close()
    return [LearnerResult(learner, [done[(learner, m.id)] for m in modules]) for learner in learners]


def _run_on(cluster, pending: list, task_of: Callable, report: Callable, device: str) -> None:
    """Every pending (learner, module) through the cluster, one task per worker thread in flight; each result reported
    (stored, shown) as it arrives, before the next task is sent."""
    import pickle
    from collections import deque

    from graders.store import grader_version

    queue = deque(pending)
    in_flight: dict = {}  # future -> (learner, spec, digest, payload bytes, sent at)
    ours = grader_version()
    while queue or in_flight:
        room = cluster.capacity() - len(in_flight)
        while room > 0 and queue:
            learner, spec, path = queue.popleft()
            built = task_of(learner, spec, path)
            if isinstance(built, ModuleResult):  # unreadable: its row, without a task
                report(built, UNREADABLE)
                continue
            task, digest = built
            key = f"grade-{spec.id}-{ascii(learner)[1:-1]}-{secrets.token_hex(4)}"
            future = cluster.submit(run_task, task, key=key)
            in_flight[future] = (learner, spec, digest, len(pickle.dumps(task)), time.monotonic())
            room -= 1
        if not in_flight:
            continue
        finished = cluster.wait_some(list(in_flight), timeout=cluster.poll_s())
        for future, (learner, spec, digest, _payload, sent) in list(in_flight.items()):
            late = time.monotonic() - sent
            if future not in finished and late > task_deadline_s(spec):
                del in_flight[future]
                future.cancel()
                reason = f"no result from the cluster after {late:.0f} s (the limit for {spec.id}); it was cancelled"
                report(could_not_grade(spec, learner, reason, device), NOT_GRADED + digest)
        for future in finished:
            learner, spec, digest, payload, sent = in_flight.pop(future)
            try:
                result, info = future.result()
            except Exception as exc:  # whatever stopped the task (KilledWorker, the grader's error): a row says why
                if cluster.client.status not in ("running", "connecting"):  # the scheduler is gone: stop, resume later
                    from graders.cluster import ClusterError
                    raise ClusterError(f"lost the Dask scheduler at {cluster.address} ({type(exc).__name__}); what "
                                       "was graded is kept: run again to resume") from exc
                report(could_not_grade(spec, learner, _failure(exc), device), NOT_GRADED + digest)
                continue
            cluster.stats.add(time.monotonic() - sent, info["task_s"], payload, info["result_bytes"])
            if info["grader"] != ours:
                reason = (f"the worker runs grader {info['grader']}, this run is {ours}: start every worker from the "
                          "same checkout and environment")
                report(could_not_grade(spec, learner, reason, device), NOT_GRADED + digest)
                continue
            report(result, digest)
