"""Command line: python -m graders {grade,verify,notebooks,new-exercise,doctor,...}. The Makefile's targets call these."""
from __future__ import annotations

import argparse
import os
import sys
import time
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


def cmd_grade(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from polyglot_lab.devices import DeviceError, resolve_device
    from graders.grade import discover_learners, grade_class
    from graders.sandbox import protection
    from graders.reports import write_class_reports, write_learner_reports
    from graders.results import format_points
    from graders.store import ResultStore

    console = Console(stderr=False)
    try:
        device = resolve_device(args.device)
    except DeviceError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    modules = _modules(args.modules)
    submissions, reports = Path(args.submissions), Path(args.reports)
    try:
        learners = discover_learners(submissions)
    except (FileNotFoundError, ValueError) as exc:  # no class folder; two learner names that collide
        # one line, not wrapped; a folder name is text, not rich markup ("[/]" in a name would raise MarkupError)
        console.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True)
        return 2
    console.print(f"Grading {len(learners)} learner(s) × {len(modules)} module(s) from {submissions} on {device}")
    console.print(f"Kernels: {protection()}")
    started = time.monotonic()
    done: list = []
    module_ids = [m.id for m in modules]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("grading", total=len(learners) * len(modules))

        def on_result(result):
            progress.advance(task)
            progress.update(task, description=f"{result.learner}/{result.module}")

        def on_learner(learner_result):
            done.append(learner_result)
            write_learner_reports(reports, learner_result)
            write_class_reports(reports, done, module_ids)  # rewritten atomically after every learner

        store = None if args.no_resume else ResultStore(reports / "grades.sqlite")
        results = grade_class(submissions, modules, device, on_result=on_result, on_learner=on_learner,
                              jobs=max(1, args.jobs), store=store)
    table = Table(title=f"Class summary ({time.monotonic() - started:.0f} s)")
    table.add_column("learner")
    for module in modules:
        table.add_column(module.id, justify="right")
    table.add_column("total", justify="right")
    for learner in results:
        cells = []
        for m in learner.modules:
            cell = f"{format_points(m.score)}/{format_points(m.max_score)}"
            if not m.submitted:
                cell += " (missing)"
            elif m.problem or m.stopped:
                cell += " (!)"
            cells.append(cell)
        table.add_row(learner.learner, *cells, f"{format_points(learner.score)}/{format_points(learner.max_score)}")
    console.print(table)
    console.print("(!) = the notebook crashed, timed out or could not be read: see the learner's feedback.html")
    graded = [m for learner in results for m in learner.modules if m.peak_memory_mb]
    if graded:
        console.print(f"Peak memory: kernel {max(m.peak_memory_mb for m in graded):,.0f} MB, "
                      f"grading process {max(m.worker_peak_mb for m in graded):,.0f} MB")
    console.print(f"Reports: {reports}/gradebook.csv, {reports}/junit.xml, {reports}/<learner>/results.json and feedback.html")
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
          "JOBS=1, JOBS=2, then JOBS=2 killed half-way and resumed")
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
    grade.add_argument("--jobs", type=int, default=1, help="grade this many notebooks at once (worker processes)")
    grade.add_argument("--no-resume", action="store_true",
                       help="grade everything again, ignoring results kept in <reports>/grades.sqlite")
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
    bench = sub.add_parser("bench", help="time a class of copies of one submission: JOBS=1, JOBS=2, kill+resume")
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
