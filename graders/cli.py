"""Command line: python -m graders {grade,verify,notebooks,new-exercise,doctor,...}. The Makefile's targets call these."""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from polyglot_lab.catalogue import REPO, CatalogueError, load_catalogue
from graders.generate import GenerateError


def _modules(selection: str | None):
    catalogue = load_catalogue()
    if not selection or selection == "all":
        return list(catalogue.values())
    wanted = [s.strip() for s in selection.split(",") if s.strip()]
    unknown = [w for w in wanted if w not in catalogue]
    if unknown:
        raise SystemExit(f"unknown module(s): {', '.join(unknown)}; known: {', '.join(catalogue)}")
    return [catalogue[w] for w in wanted]


def _one_line(text: str) -> str:
    """Text for one line of the console: a control character in a learner's folder name is shown escaped."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_reports_folder(reports: Path, submissions: Path, learners: Iterable[str] = ()) -> list[str]:
    """Why `reports` cannot take this run's reports, one line each (none: it can). Nothing is made or left behind:
    where the folder is missing, a file is made and removed in the nearest folder above it."""
    import tempfile

    from graders.reports import CLASS_FILES, display_name

    if reports.exists() and not reports.is_dir():
        return [f"REPORTS {reports} is a file, not a folder: give a folder (it is made when missing)"]
    if submissions.is_dir() and (reports.resolve() == submissions.resolve()
                                 or submissions.resolve() in reports.resolve().parents):
        return [f"REPORTS {reports} is inside SUBMISSIONS {submissions}: it would be taken for a learner's folder; "
                "give a folder outside it"]
    base = reports
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        return [f"REPORTS {reports}: {base} is a file, so no folder can be made under it"]
    try:
        handle, probe = tempfile.mkstemp(dir=base, prefix=".polyglot-write-test-")
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return [f"REPORTS {reports}: cannot write in {base} ({exc.strerror or exc})"]
    problems = [f"REPORTS {reports}: {reports / name} is a folder; the report of that name cannot replace it"
                for name in (*CLASS_FILES, "grades.sqlite") if (reports / name).is_dir()]
    problems += [f"REPORTS {reports}: {reports / display_name(learner)} is a file; {learner}'s reports go in a folder "
                 "of that name" for learner in learners if (reports / display_name(learner)).is_file()]
    return problems


def _protection_label(protection: str) -> str:
    """The short name of a kernel's protection for one console line ("sandbox", "no sandbox (...)")."""
    return protection.split(":")[0] if protection else "unknown"


def graded_line(result, index: int, total: int) -> str:
    """One plain line per graded notebook: learner, module, score, time, protection (or why it was not graded)."""
    from graders.reports import display_name, when
    from graders.results import format_points

    points = f"{format_points(result.score)}/{format_points(result.max_score)} points"
    if result.reused:
        how = when(result).removeprefix("in this run: ")
    elif not result.submitted:
        how = "not submitted"
    else:
        how = f"{result.execution_s + result.grading_s:.0f} s, {_protection_label(result.protection)}"
        trouble = result.problem or (f"stopped: {result.stopped}" if result.stopped else "")
        if trouble:
            how += f" (!) {trouble.splitlines()[0][:160]}"
    if result.note:
        how += "; see the note above"
    return _one_line(f"[{index}/{total}] {display_name(result.learner)}/{result.module}: {points}, {how}")


def summary_lines(results, module_ids: list[str], this_run: list[str]) -> list[str]:
    """The class summary as plain text, every cell whole (it is never cut to the terminal's width)."""
    from graders.reports import display_name
    from graders.results import format_points

    header = ["learner", *(m + ("*" if m in this_run else "") for m in module_ids), "total"]
    rows = []
    for learner in results:
        by_module = {m.module: m for m in learner.modules}
        cells = [_one_line(display_name(learner.learner))]
        for module_id in module_ids:
            m = by_module.get(module_id)
            cell = "" if m is None else f"{format_points(m.score)}/{format_points(m.max_score)}"
            if m is not None and not m.submitted:
                cell += " (missing)"
            elif m is not None and (m.problem or m.stopped):
                cell += " (!)"
            cells.append(cell)
        cells.append(f"{format_points(learner.score)}/{format_points(learner.max_score)}")
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            .rstrip() for row in [header, *rows]]


def cmd_grade(args) -> int:
    """`make grade`: every input is checked before the first notebook runs (one line each, exit 2); then one line
    per graded notebook and a summary. The reports show every module the store holds (graders.reports.ClassReports)."""
    from polyglot_lab.devices import DeviceError, resolve_device
    from graders.grade import quiet_frameworks, survey_class
    from graders.reports import ClassReports
    from graders.store import ResultStore, StoreError

    quiet_frameworks()
    plain = not sys.stdout.isatty()
    live: dict = {}  # "progress": the progress bar while one runs (lines are then printed above it)

    def say(line: str = "") -> None:
        progress = live.get("progress")
        if progress is not None:
            progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, flush=True)

    def refuse(problems: list[str]) -> int:
        for problem in problems:
            say(f"error: {_one_line(problem)}")
        return 2

    problems: list[str] = []
    device = "cpu"
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        problems.append(f"DEVICE={args.device}: {exc}")
    modules = []
    try:
        modules = _modules(args.modules)
    except SystemExit as exc:
        problems.append(f"MODULES={args.modules}: {exc}")
    scheduler = getattr(args, "scheduler", "") or ""
    if not scheduler and not 1 <= args.jobs <= _cpus():
        problems.append(f"JOBS={args.jobs}: give 1 to {_cpus()} worker processes (this machine has {_cpus()} CPUs; "
                        "each worker holds about 1.5 GB)")
    submissions, reports = Path(args.submissions), Path(args.reports)
    survey = None
    try:
        survey = survey_class(submissions, modules)
    except (OSError, ValueError) as exc:  # no class folder, not laid out as one, two names that collide
        problems.append(f"SUBMISSIONS: {exc}")
    problems += check_reports_folder(reports, submissions, survey.learners if survey else [])
    if problems or survey is None:
        return refuse(problems)
    kept_at = reports / "grades.sqlite"
    try:
        kept = ResultStore(kept_at).latest() if kept_at.exists() else {}
    except StoreError as exc:
        return refuse([f"REPORTS: {exc}"])
    module_ids = [m.id for m in modules]
    view = ClassReports(kept, module_ids, list(load_catalogue()))
    lost = view.dropped_from(reports / "gradebook.csv")
    if lost:
        examples = ", ".join(f"{module} of {learner}" for learner, module in lost[:3])
        return refuse([f"REPORTS: {reports / 'gradebook.csv'} shows {len(lost)} score(s) that {kept_at} does not "
                       f"hold ({examples}{', …' if len(lost) > 3 else ''}): these reports would lose them. Was the "
                       "store deleted or replaced? Give another REPORTS folder, or move gradebook.csv away"])
    try:
        store = ResultStore(kept_at)
    except StoreError as exc:
        return refuse([f"REPORTS: {exc}"])
    from graders.cluster import ClusterError, open_cluster

    started = time.monotonic()
    try:
        cluster = open_cluster(args.jobs, scheduler)
    except ClusterError as exc:
        return refuse([str(exc)])
    try:
        return _grade_on(cluster, args, say, live, survey, modules, device, store, view, reports, started, plain)
    except ClusterError as exc:  # the scheduler went away mid-run: what was stored is kept, a re-run resumes
        say(f"error: {_one_line(str(exc))}")
        return 1
    finally:
        cluster.close()


def _grade_on(cluster, args, say, live, survey, modules, device, store, view, reports, started, plain) -> int:
    """cmd_grade once its inputs are checked and the cluster is open: check an external cluster's workers, grade,
    summarise."""
    from graders.cluster import check_workers
    from graders.grade import grade_class
    from graders.sandbox import protection

    warnings: list[str] = []
    if cluster.kind == "external":
        problems, warnings = check_workers(cluster)
        if problems:
            for problem in problems:
                say(f"error: {_one_line(problem)}")
            return 2
    if cluster.kind == "external" and args.jobs != 1:
        warnings.append(f"JOBS={args.jobs} is not used with SCHEDULER: the cluster's workers grade")
    module_ids = [m.id for m in modules]

    say(f"Grading {len(survey.learners)} learner(s) × {len(modules)} module(s) from {survey.folder} on {device}"
        + (", everything again (FRESH)" if args.no_resume else ""))
    if cluster.kind == "external":
        kinds = sorted({fact["protection"] for fact in cluster.worker_facts().values()}) or ["(no worker yet)"]
        say(f"Kernels: {'; '.join(kinds)}")
    else:
        say(f"Kernels: {protection()}")
    if cluster.kind != "inline":
        say(f"Workers: {cluster.describe()}")
    for warning in [*survey.warnings(), *warnings]:
        say(f"warning: {_one_line(warning)}")
    total = len(survey.learners) * len(modules)
    count = 0

    def on_result(result):
        nonlocal count
        count += 1
        result.this_run = True
        say(graded_line(result, count, total))
        progress = live.get("progress")
        if progress is not None:
            progress.update(task, advance=1, description=_one_line(f"{result.learner}/{result.module}"))

    def on_learner(learner_result):
        view.write_learner(reports, learner_result)
        view.write_class(reports)  # rewritten atomically after every learner

    if plain:
        grade_class(survey.folder, modules, device, on_result=on_result, on_learner=on_learner, jobs=args.jobs,
                    store=store, fresh=args.no_resume, cluster=cluster)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as progress:
            live["progress"] = progress
            task = progress.add_task("grading", total=total)
            try:
                grade_class(survey.folder, modules, device, on_result=on_result, on_learner=on_learner,
                            jobs=args.jobs, store=store, fresh=args.no_resume, cluster=cluster)
            finally:
                live.pop("progress", None)
    results, shown = view.results(), view.module_ids()
    earlier = [m for m in shown if m not in module_ids]
    say(f"Class summary ({time.monotonic() - started:.0f} s): {len(results)} learner(s); * = graded this run"
        + (f"; kept from earlier runs: {', '.join(earlier)}" if earlier else ""))
    for line in summary_lines(results, shown, module_ids):
        say(line)
    say("(missing) = not submitted; (!) = the notebook crashed, timed out or could not be read: see the learner's "
        "feedback.html")
    graded = [m for learner in results for m in learner.modules if m.this_run and m.peak_memory_mb]
    if graded:
        say(f"Peak memory: kernel {max(m.peak_memory_mb for m in graded):,.0f} MB, "
            f"grading process {max(m.worker_peak_mb for m in graded):,.0f} MB")
    if cluster.kind != "inline":
        say(cluster.stats.line())
    say(f"Reports: {reports}/gradebook.csv (gradebook-excel.csv for Excel), {reports}/junit.xml, "
        f"{reports}/<learner>/results.json and feedback.html")
    return 0


def cmd_submit(args) -> int:
    """A learner's self-check: their workspace graded exactly as `make grade` grades a class (a fresh kernel per
    notebook, every check, hidden ones counted but not named), with feedback in <workspace>/feedback/."""
    import getpass
    import shutil
    import tempfile

    workspace = Path(args.workspace)
    if not workspace.is_dir():
        print(f"error: {workspace} is not a folder: make it with `make lab` (or `polyglot-lab get {workspace}`)",
              file=sys.stderr)
        return 2
    present = {path.stem for path in workspace.glob("[0-9][0-9]_*.ipynb") if not path.stem.endswith(".new")}
    modules = [m for m in _modules(args.modules) if args.modules != "all" or m.id in present]
    if not modules:
        print(f"error: {workspace} holds none of the course's notebooks (NN_slug.ipynb)", file=sys.stderr)
        return 2
    learner = "".join(ch for ch in getpass.getuser() if ch.isalnum() or ch in "-_.") or "learner"
    with tempfile.TemporaryDirectory(prefix="polyglot-submit-") as scratch:
        folder = Path(scratch) / learner
        folder.mkdir()
        for module in modules:
            if (workspace / f"{module.id}.ipynb").exists():
                shutil.copyfile(workspace / f"{module.id}.ipynb", folder / f"{module.id}.ipynb")
        args.submissions, args.reports = scratch, str(workspace / "feedback")
        args.modules, args.jobs, args.no_resume = ",".join(m.id for m in modules), 1, False
        code = cmd_grade(args)
    if code == 0:
        print(f"Your feedback: {workspace / 'feedback' / learner / 'feedback.html'}")
    return code


def cmd_progress(args) -> int:
    from polyglot_lab.__main__ import main as learner_command
    return learner_command(["progress", args.workspace])


def cmd_verify(args) -> int:
    from graders.verify import verify
    return verify(_modules(args.modules))


def cmd_notebooks(args) -> int:
    from graders.generate import generate
    changed = generate(check=args.check)
    if args.check:
        if changed:
            print("Generated files differ from their sources (run `make notebooks`):")
            for path in changed:
                print(f"  {path.relative_to(REPO)}")
            return 1
        print("notebooks/, examples/submissions/ and polyglot_lab/probes/ match their sources")
        return 0
    for path in changed:
        print(f"wrote {path.relative_to(REPO)}")
    print(f"{len(changed)} file(s) changed")
    return 0


def cmd_masters(args) -> int:
    from graders.generate import refresh_masters
    for path in refresh_masters([m.id for m in _modules(args.modules)]):
        print(f"executed {path.relative_to(REPO)}")
    return 0


def cmd_gradescope(args) -> int:
    from graders.gradescope import build_bundle
    path = build_bundle(_modules(args.modules), Path(args.out))
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB): upload it as the assignment's autograder")
    return 0


def cmd_release(args) -> int:
    from graders.release import ReleaseError, build, carried_forward
    try:
        built = build(Path(args.out), args.address, [m.id for m in _modules(args.modules)])
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in built:
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")
    notes = carried_forward(built[0])
    for line in notes:
        print(f"note: {line}")
    print("searched both for solutions, hidden checks, the grader's code and data: none found"
          + (" but the earlier answers noted above" if notes else "") + ". Learners install the wheel "
          "(docs/learners.md is its README).")
    return 0


def cmd_gradescope_run(args) -> int:
    from graders.gradescope import error_results, run
    if args.error:
        error_results(Path(args.error), "The autograder failed before it could grade this submission; "
                                        "your instructor has been told. Your files were received.")
        return 1
    payload = run(Path(args.submission), Path(args.results), _modules(args.modules))
    print(payload["output"])
    return 0


def cmd_bench(args) -> int:
    from graders.bench import bench
    modules = _modules(args.modules)
    print(f"Grading {args.copies} copies of {args.learner}'s submission ({len(modules)} module(s)): "
          "serially, JOBS=2, on a Dask scheduler with two workers, then on it killed half-way and resumed")
    figures = bench(args.learner, args.copies, modules, Path(args.out))
    for key, value in figures.items():
        print(f"  {key}: {value}")
    print(f"wrote {args.out}")
    return 0 if figures["gradebooks_identical"] and figures["check_verdicts_identical"] else 1


def cmd_new_exercise(args) -> int:
    from graders.authoring import AuthoringError, new_exercise
    root = Path(args.root)
    try:
        written = new_exercise(root, args.module, args.exercise, title=args.title)
    except AuthoringError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path}")
    print(f"Next: fill in every TODO of {args.exercise} (CONTRIBUTING.md), then `make masters`, `make verify`, "
          "`make test-fast`.")
    return 0


def cmd_doctor(args) -> int:
    from graders.doctor import doctor
    return doctor()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m graders", description="Polyglot Lab's grader")
    sub = parser.add_subparsers(dest="command", required=True)
    grade = sub.add_parser("grade", help="grade <submissions>/<learner>/<NN_slug>.ipynb for every learner")
    grade.add_argument("--submissions", default=str(REPO / "examples" / "submissions"))
    grade.add_argument("--reports", default="reports")
    grade.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    grade.add_argument("--modules", default="all", help="comma-separated module ids, or all")
    grade.add_argument("--jobs", type=int, default=1, help="grade this many notebooks at once: worker processes of "
                       "an embedded Dask cluster (1: one worker in this process)")
    grade.add_argument("--scheduler", default="", help="grade on an existing Dask cluster: its scheduler's address "
                       "(tcp://host:8786); workers started with `dask worker ADDRESS --nthreads 1` in this environment")
    grade.add_argument("--no-resume", action="store_true",
                       help="grade the selected modules again without reusing the results kept in "
                       "<reports>/grades.sqlite (the new ones are kept; the reports keep the other modules)")
    grade.set_defaults(fn=cmd_grade)
    submit = sub.add_parser("submit", help="grade your workspace as the instructor would (feedback in "
                            "<workspace>/feedback/)")
    submit.add_argument("--workspace", default="workspace")
    submit.add_argument("--modules", default="all", help="comma-separated module ids, or all (the workspace's)")
    submit.add_argument("--device", default="auto", help="auto (default), cpu or cuda")
    submit.set_defaults(fn=cmd_submit)
    progress = sub.add_parser("progress", help="every module and exercise of your workspace with its state")
    progress.add_argument("--workspace", default="workspace")
    progress.set_defaults(fn=cmd_progress)
    verify = sub.add_parser("verify", help="every master scores full marks, every learner edition zero")
    verify.add_argument("--modules", default="all")
    verify.set_defaults(fn=cmd_verify)
    notebooks = sub.add_parser("notebooks", help="generate notebooks/ and examples/submissions/ from solutions/, probes from the checks files")
    notebooks.add_argument("--check", action="store_true", help="only report drift; exit 1 if any")
    notebooks.set_defaults(fn=cmd_notebooks)
    masters = sub.add_parser("masters", help="re-execute the masters in solutions/ in place")
    masters.add_argument("--modules", default="all")
    masters.set_defaults(fn=cmd_masters)
    bundle = sub.add_parser("gradescope", help="build a Gradescope autograder zip for some modules")
    bundle.add_argument("--modules", default="all")
    bundle.add_argument("--out", default="build/gradescope/autograder.zip")
    bundle.set_defaults(fn=cmd_gradescope)
    release = sub.add_parser("release", help="build the learner release: notebooks and public checks, no answers")
    release.add_argument("--out", default="build/release")
    release.add_argument("--modules", default="all", help="the modules to release (default all): each module ships "
                         "with the models of earlier modules it starts from")
    release.add_argument("--address", default="", help="where the release is published (for the Colab install cell)")
    release.set_defaults(fn=cmd_release)
    inside = sub.add_parser("gradescope-run", help="(inside Gradescope) grade /autograder/submission")
    inside.add_argument("--submission")
    inside.add_argument("--results")
    inside.add_argument("--modules", default="all")
    inside.add_argument("--error", help="write a results.json that reports an autograder failure")
    inside.set_defaults(fn=cmd_gradescope_run)
    bench = sub.add_parser("bench", help="time a class of copies of one submission: serial, JOBS=2, a Dask "
                           "scheduler with two workers, kill+resume")
    bench.add_argument("--learner", default="ada")
    bench.add_argument("--copies", type=int, default=20)
    bench.add_argument("--modules", default="all")
    bench.add_argument("--out", default="reports/bench.json")
    bench.set_defaults(fn=cmd_bench)
    new = sub.add_parser("new-exercise", help="append the stubs of a new exercise to every piece of a module")
    new.add_argument("module", help="the module id, NN_slug (its exercises/NN_slug.toml must exist)")
    new.add_argument("exercise", help="the new exercise's id: a lower-case Python name")
    new.add_argument("--title", help="the exercise's title (default: a TODO)")
    new.add_argument("--root", default=str(REPO), help="the course's folder (default: this repository)")
    new.set_defaults(fn=cmd_new_exercise)
    doctor = sub.add_parser("doctor", help="versions, devices, providers and the kernels' protection, a verdict per line")
    doctor.set_defaults(fn=cmd_doctor)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except (CatalogueError, GenerateError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
