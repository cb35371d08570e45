"""Grade one notebook (grade_module) or a class of submissions (grade_class)."""
from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
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


def discover_learners(submissions: Path) -> list[str]:
    """The learner folders of a class by their names on disk (what finds <learner>/<NN_slug>.ipynb; reports show
    them in NFC). FileNotFoundError without a class folder; ValueError when two names collide under NFC."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"{submissions}: no such submissions folder (expected <dir>/<learner>/<NN_slug>.ipynb)")
    return _nfc_learners(p.name for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))


def _grade_task(task: tuple) -> ModuleResult:
    """One (learner, module) of a class, in a worker process; the executed notebook stays behind."""
    path, spec, learner, device, seed, limits, hide = task
    result = grade_module(path, spec, learner, device, seed=seed, limits=limits, hide=hide)
    result.notebook = None
    return result


def grade_class(submissions: Path, modules: Iterable[ModuleSpec], device: str,
                on_result: Callable[[ModuleResult], None] | None = None,
                on_learner: Callable[[LearnerResult], None] | None = None,
                jobs: int = 1, store=None, limits=None) -> list[LearnerResult]:
    """Grade every learner's notebooks. With a ResultStore, results graded before under the same submission and
    grader version are reused (a killed run resumes); `jobs` > 1 grades in that many worker processes.
    Seeds derive from the submission's content, so serial, parallel and resumed runs agree."""
    from graders.store import content_hash, derived_seed

    modules = list(modules)
    learners = discover_learners(submissions)
    hide = (submissions.resolve(), *([store.path.resolve().parent] if store else []))  # the class, the results
    done: dict[tuple[str, str], ModuleResult] = {}
    pending: list[tuple[tuple, str]] = []
    for learner in learners:
        for spec in modules:
            path = submissions / learner / spec.notebook_name
            digest = content_hash(path)
            cached = store.get(learner, spec.id, device, digest) if store else None
            if cached is not None:
                done[(learner, spec.id)] = cached
            else:
                task = (path if path.exists() else None, spec, learner, device, derived_seed(digest, spec.id), limits,
                        hide)
                pending.append((task, digest))

    reported: set[str] = set()

    def report(result: ModuleResult | None = None, digest: str | None = None) -> None:
        if result is not None:
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

    for cached in list(done.values()):
        if on_result:
            on_result(cached)
    report()
    if jobs <= 1:
        for task, digest in pending:
            report(_grade_task(task), digest)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent may hold TensorFlow/torch state that does not survive a fork
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_grade_task, task): digest for task, digest in pending}
            for future in as_completed(futures):
                report(future.result(), futures[future])
    return [LearnerResult(learner, [done[(learner, m.id)] for m in modules]) for learner in learners]
