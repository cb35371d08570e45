"""Render results: gradebook.csv (and gradebook-excel.csv), <learner>/results.json (Gradescope),
<learner>/feedback.html, junit.xml.

Every file is written atomically (a temporary file, then os.replace), so a killed run never
leaves a half-written report behind. Report files are mode 0644 and the folders made for them 0755, whatever
the umask: teaching assistants and web servers read them. Learner names are shown in Unicode NFC.

A reports folder shows every module its store (grades.sqlite) holds, not only the modules graded by the run that
writes it (ClassReports): grading one module a week never drops last week's column.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
import time
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

from graders.results import FAILED, PASSED, SKIPPED, CheckResult, LearnerResult, ModuleResult, format_points


FILE_MODE, FOLDER_MODE = 0o644, 0o755


def make_folders(folder: Path) -> None:
    """mkdir -p, with every folder made here chmod-ed to FOLDER_MODE (mkdir's mode is masked by the umask, and
    parents=True ignores it); folders that exist already keep the mode their owner gave them."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for made in reversed(missing):
        try:
            made.mkdir()
        except FileExistsError:  # made meanwhile by someone else: theirs
            continue
        os.chmod(made, FOLDER_MODE)


def atomic_write(path: Path, text: str) -> None:
    make_folders(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def display_name(learner: str) -> str:
    """A learner's name as reports show it: Unicode NFC, so that "José" typed on macOS (NFD) and on Linux (NFC)
    reads and sorts the same. graders.grade.discover_learners refuses two folders that collide under NFC."""
    return unicodedata.normalize("NFC", learner)


def learner_message(check: CheckResult) -> str:
    """What a learner may read about a check: hidden checks say only pass/fail and points."""
    if check.status == SKIPPED:
        return check.message
    if check.hidden:
        return "hidden check: passed" if check.status == PASSED else "hidden check: failed"
    lines = [check.message]
    if check.status != PASSED:
        lines += [f"{label}: {value}" for label, value in
                  (("expected", check.expected), ("found", check.found), ("hint", check.hint)) if value]
    return "\n".join(lines)


# -- gradebook.csv ---------------------------------------------------------------------------
# CSV (formula) injection: a spreadsheet opening gradebook.csv evaluates a cell that begins with one of these as a
# formula, so a learner folder named "=HYPERLINK(...)" or "@SUM(A1)" would run in the instructor's spreadsheet.
# OWASP's advice: prefix such a cell with a single quote, which spreadsheets read as "this is text".
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A text cell (a name, a module id) made inert for spreadsheets. Scores are not passed through this: the grader
    writes them itself as plain numbers (format_points), and a quote would turn them into text."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _csv_row(cells: list[str]) -> str:
    """One row ending in "\n". The csv module quotes a cell holding any character of its line terminator, so it is
    written with "\r\n" (then swapped for "\n"): with "\n" alone, a CR inside a name went out unquoted and split the
    row in two for every reader."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(cells)
    return out.getvalue()[:-2] + "\n"


def gradebook_csv(results: list[LearnerResult], module_ids: list[str]) -> str:
    rows = [_csv_row([csv_text(h) for h in ("learner", *module_ids, "total", "max_total")])]
    for learner in results:
        by_module = {m.module: m for m in learner.modules}
        rows.append(_csv_row([csv_text(display_name(learner.learner)),
                              *(format_points(by_module[m].score) if m in by_module else "" for m in module_ids),
                              format_points(learner.score), format_points(learner.max_score)]))
    return "".join(rows)


# Excel opens a .csv by double-click in the system's legacy code page (Windows-1252 in western Europe) unless the file
# starts with a byte order mark: "José" then reads "JosÃ©". gradebook.csv stays plain UTF-8 without one, for scripts,
# pandas and LMS imports (a BOM would become part of the first header, "\ufefflearner", for most readers);
# gradebook-excel.csv is the same table with the BOM, for Excel.
BOM = "\ufeff"


def gradebook_excel_csv(results: list[LearnerResult], module_ids: list[str]) -> str:
    return BOM + gradebook_csv(results, module_ids)


# -- results.json (Gradescope autograder schema) -----------------------------------------------
def when(module: ModuleResult) -> str:
    """Whether a module was graded by the run that wrote the reports, or kept from an earlier one (and when)."""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(module.graded_at)) if module.graded_at else ""
    if module.this_run and module.reused == "unchanged" and stamp:
        return f"in this run: unchanged since it was graded on {stamp}"
    if module.this_run and module.reused == "missing" and stamp:
        return f"in this run: the notebook was not found, so the result graded on {stamp} is kept"
    if module.this_run:
        return "graded this run"
    return f"kept from an earlier run: graded on {stamp}" if stamp else ""


SKIPPED_NOTE = "This check did not run here, so it counts neither for nor against your score."


def gradescope_results(learner: LearnerResult) -> dict:
    """Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications"). A test's
    "status" is optional, "passed" or "failed", and without it Gradescope marks a test passed when its score equals
    its max_score: a skipped check (no device) therefore has no status, score or max_score, and its output says why."""
    tests = []
    for module in learner.modules:
        for check in module.checks:
            test: dict = {
                "name": f"{check.exercise}: {check.title}",
                "name_format": "text",
                "number": f"{module.module}.{check.exercise}.{check.check}",
                "score": check.score,
                "max_score": check.counted_max,
                "status": "passed" if check.status == PASSED else "failed",
                "output": learner_message(check),
                "visibility": "hidden" if check.hidden else "visible",
                "tags": [module.module, check.exercise],
            }
            if check.status == SKIPPED:  # neither passed nor failed: 0/0 points would show as passed
                del test["score"], test["max_score"], test["status"]
                test["output"] = f"{learner_message(check)}. {SKIPPED_NOTE}"
                test["tags"].append("skipped")
            tests.append(test)

    def remark(m: ModuleResult) -> str:
        said = [] if m.submitted else ["not submitted"]
        said += [w for w in [when(m)] if w.startswith("kept")]
        return f" ({'; '.join(said)})" if said else ""

    summary = ", ".join(f"{m.module}: {format_points(m.score)}/{format_points(m.max_score)}{remark(m)}"
                        for m in learner.modules)
    total = f"{format_points(learner.score)}/{format_points(learner.max_score)}"
    payload = {
        "score": learner.score,
        "execution_time": round(learner.execution_s, 2),
        "output": f"{display_name(learner.learner)}: {total} ({summary})"
                  + "".join(f"\n{m.module}: {m.note}" for m in learner.modules if m.note),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if any(m.graded_at or m.this_run for m in learner.modules):
        payload["extra_data"] = {"modules": [
            {"module": m.module, "graded_this_run": m.this_run,
             "graded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(m.graded_at)) if m.graded_at else None,
             "grader": m.grader or None} for m in learner.modules]}
    return payload


# -- feedback.html ---------------------------------------------------------------------------
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:.35rem .5rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} .passed{color:#137333} .failed{color:#b3261e} .skipped{color:#666}
pre{white-space:pre-wrap;margin:0;font-family:ui-monospace,monospace;font-size:.85rem}
.exercise td{background:#f6f8fa;padding-top:.6rem}
.note{background:#fff4e5;padding:.5rem .75rem;border-left:4px solid #f0a000} .when{color:#666;font-size:.9rem}
"""


def feedback_html(learner: LearnerResult, catalogue: dict | None = None) -> str:
    """One learner's feedback: per module, each exercise as the catalogue states it (what it asks, how it is
    checked), then its checks with what was expected, what was found and a hint."""
    esc = html.escape
    if catalogue is None:
        from polyglot_lab.catalogue import load_catalogue
        catalogue = load_catalogue()
    name = esc(display_name(learner.learner))
    parts = [f"<!doctype html><html lang='en'><meta charset='utf-8'><title>Feedback for {name}</title>",
             f"<style>{_STYLE}</style><body><h1>Feedback for {name}</h1>",
             f"<p><strong>Total: {format_points(learner.score)} / {format_points(learner.max_score)}</strong></p>"]
    protections = sorted({m.protection for m in learner.modules if m.protection})
    if protections:
        parts.append(f"<p>Your notebooks ran in a fresh kernel ({esc('; '.join(protections))}).</p>")
    for module in learner.modules:
        parts.append(f"<h2>{esc(module.module)}: {esc(module.title)} "
                     f"({format_points(module.score)} / {format_points(module.max_score)})</h2>")
        if when(module):
            parts.append(f"<p class='when'>{esc(when(module)[:1].upper() + when(module)[1:])}.</p>")
        if module.note:
            parts.append(f"<p class='note'>{esc(module.note)}</p>")
        if module.problem:
            parts.append(f"<p class='note'>{esc(module.problem)}</p>")
        if module.stopped:
            parts.append(f"<p class='note'>The notebook stopped early: {esc(module.stopped)}.</p>")
        parts.append("<table><tr><th>exercise</th><th>check</th><th>points</th><th>feedback</th></tr>")
        spec, shown = catalogue.get(module.module), set()
        failed = {check.exercise for check in module.checks if check.status == FAILED}
        for check in module.checks:
            if spec is not None and check.exercise not in shown:
                shown.add(check.exercise)
                parts.append(exercise_row(spec, check.exercise, check.exercise in failed))
            points = "—" if check.status == SKIPPED else f"{format_points(check.score)} / {format_points(check.max_score)}"
            title = "hidden check" if check.hidden else check.title
            parts.append(f"<tr class='{check.status}'><td>{esc(check.exercise)}</td><td>{esc(title)}</td>"
                         f"<td class='{check.status}'>{points}</td><td><pre>{esc(learner_message(check))}</pre></td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def exercise_row(spec, exercise_id: str, failed: bool = False) -> str:
    """The catalogue's statement of an exercise: its title, what it asks and how it is checked, and where a check
    failed, the exercise's first hint (once, above its checks)."""
    try:
        exercise = spec.exercise(exercise_id)
    except KeyError:
        return ""
    lines = [f"<strong>{html.escape(exercise.title)}</strong> ({html.escape(exercise.id)})"]
    lines += [f"{label}: {html.escape(text)}" for label, text in (("Asks", exercise.asks), ("Checked", exercise.checked))
              if text]
    if failed and exercise.hints:
        lines.append(f"Hint: {html.escape(exercise.hints[0])}")
    return f"<tr class='exercise'><td colspan='4'>{'<br>'.join(lines)}</td></tr>"


# -- junit.xml -------------------------------------------------------------------------------
def junit_xml(results: list[LearnerResult]) -> str:
    suites = ET.Element("testsuites", name="polyglot-lab grading")
    for learner in results:
        name = display_name(learner.learner)
        for module in learner.modules:
            checks = module.checks
            suite = ET.SubElement(
                suites, "testsuite", name=f"{name}.{module.module}", tests=str(len(checks)),
                failures=str(sum(c.status not in (PASSED, SKIPPED) for c in checks)),
                skipped=str(sum(c.status == SKIPPED for c in checks)),
                time=f"{module.execution_s + module.grading_s:.3f}")
            for check in checks:
                case = ET.SubElement(suite, "testcase", classname=f"{name}.{module.module}.{check.exercise}",
                                     name=check.check, time=f"{check.duration_s:.3f}")
                if check.status == SKIPPED:
                    ET.SubElement(case, "skipped", message=check.message)
                elif check.status != PASSED:
                    failure = ET.SubElement(case, "failure", message=check.message.splitlines()[0][:300] if check.message else "failed")
                    failure.text = learner_message(check) if not check.hidden else "hidden check: failed"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def write_learner_reports(reports: Path, learner: LearnerResult) -> None:
    folder = reports / display_name(learner.learner)  # NFC names are unique: discover_learners checks it
    atomic_write(folder / "results.json", json.dumps(gradescope_results(learner), indent=2))
    atomic_write(folder / "feedback.html", feedback_html(learner))


def write_class_reports(reports: Path, results: list[LearnerResult], module_ids: list[str]) -> None:
    atomic_write(reports / "gradebook.csv", gradebook_csv(results, module_ids))
    atomic_write(reports / "gradebook-excel.csv", gradebook_excel_csv(results, module_ids))
    atomic_write(reports / "junit.xml", junit_xml(results))


CLASS_FILES = ("gradebook.csv", "gradebook-excel.csv", "junit.xml")
LEARNER_FILES = ("results.json", "feedback.html")


class ClassReports:
    """What a reports folder shows: every (learner, module) its store holds, with this run's results over them.

    `kept` is the store's {learner: {module: result}} (ResultStore.latest) before the run; `add` puts a learner's
    results of this run over theirs and marks them `this_run`. Learners are keyed by their NFC name, as the reports
    show them; a learner the store holds whose folder is not in this run's class keeps their row. Modules are ordered
    as `order` (the catalogue) has them, others (no longer in the catalogue) after, by name."""

    def __init__(self, kept: dict[str, dict[str, ModuleResult]], this_run: list[str], order: list[str]):
        self.this_run, self.order = list(this_run), list(order)
        self.modules: dict[str, dict[str, ModuleResult]] = {}  # NFC name -> module -> result
        self.names: dict[str, str] = {}                         # NFC name -> the name on disk
        for learner, results in kept.items():
            key = display_name(learner)
            mine = self.modules.setdefault(key, {})
            for module, result in results.items():
                if module not in mine or result.graded_at >= mine[module].graded_at:
                    mine[module] = result
            self.names.setdefault(key, learner)

    def module_ids(self) -> list[str]:
        present = {m for results in self.modules.values() for m in results} | set(self.this_run)
        known = [m for m in self.order if m in present]
        return known + sorted(present - set(known))

    def add(self, learner: LearnerResult) -> LearnerResult:
        """This run's results for a learner, over what the store kept: what their reports show."""
        key = display_name(learner.learner)
        mine = self.modules.setdefault(key, {})
        for result in learner.modules:
            result.this_run = True
            mine[result.module] = result
        self.names[key] = learner.learner
        return self.learner(key)

    def learner(self, key: str) -> LearnerResult:
        mine = self.modules[key]
        return LearnerResult(self.names[key], [mine[m] for m in self.module_ids() if m in mine])

    def results(self) -> list[LearnerResult]:
        return [self.learner(key) for key in sorted(self.modules)]

    def write_learner(self, reports: Path, learner: LearnerResult) -> LearnerResult:
        merged = self.add(learner)
        write_learner_reports(reports, merged)
        return merged

    def write_class(self, reports: Path) -> None:
        write_class_reports(reports, self.results(), self.module_ids())

    def dropped_from(self, gradebook: Path) -> list[tuple[str, str]]:
        """(learner, module) scores an existing gradebook.csv shows that these reports would not: what writing them
        would lose (the store was deleted or replaced, say). Read before any grading."""
        try:
            with gradebook.open(newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.reader(handle))
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError, csv.Error):
            return [("?", f"{gradebook.name} could not be read")]
        if not rows:
            return []
        header, modules = rows[0], rows[0][1:-2] if rows[0][-2:] == ["total", "max_total"] else rows[0][1:]
        shown = {csv_text(key): set(results) for key, results in self.modules.items()}
        lost = []
        for row in rows[1:]:
            if not row:
                continue
            have = shown.get(row[0], set())
            lost += [(row[0], module) for module, cell in zip(modules, row[1:len(header)]) if cell.strip()
                     and module not in have]
        return lost
