"""Render results: gradebook.csv, <learner>/results.json (Gradescope), <learner>/feedback.html, junit.xml.

Every file is written atomically (a temporary file, then os.replace), so a killed run never
leaves a half-written report behind. Report files are mode 0644 and the folders made for them 0755, whatever
the umask: teaching assistants and web servers read them. Learner names are shown in Unicode NFC.
"""
from __future__ import annotations

import csv
import html
import io
import json
import os
import tempfile
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

from graders.results import FAILED, PASSED, SKIPPED, CheckResult, LearnerResult, format_points


FILE_MODE, FOLDER_MODE = 0o644, 0o755


def _make_folders(folder: Path) -> None:
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
    _make_folders(path.parent)
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


# -- results.json (Gradescope autograder schema) -----------------------------------------------
def gradescope_results(learner: LearnerResult) -> dict:
    tests = []
    for module in learner.modules:
        for check in module.checks:
            test = {
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
            if check.status == SKIPPED:
                test["status"] = "passed"  # Gradescope knows passed/failed only; 0/0 points, says "skipped"
            tests.append(test)
    summary = ", ".join(f"{m.module}: {format_points(m.score)}/{format_points(m.max_score)}"
                        + ("" if m.submitted else " (not submitted)") for m in learner.modules)
    total = f"{format_points(learner.score)}/{format_points(learner.max_score)}"
    return {
        "score": learner.score,
        "execution_time": round(learner.execution_s, 2),
        "output": f"{display_name(learner.learner)}: {total} ({summary})",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


# -- feedback.html ---------------------------------------------------------------------------
_STYLE = """
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.6rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;width:100%} td,th{padding:.35rem .5rem;border-bottom:1px solid #eee;
text-align:left;vertical-align:top} .passed{color:#137333} .failed{color:#b3261e} .skipped{color:#666}
pre{white-space:pre-wrap;margin:0;font-family:ui-monospace,monospace;font-size:.85rem}
.exercise td{background:#f6f8fa;padding-top:.6rem}
.note{background:#fff4e5;padding:.5rem .75rem;border-left:4px solid #f0a000}
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
    atomic_write(reports / "junit.xml", junit_xml(results))
