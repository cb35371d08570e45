"""What grader.check shows: rich HTML in JupyterLab (colour, ✔/✘, expected and found, details that fold), and the
same report as plain text in a console or a log. The first failure names the problem and says how to get a hint;
hints themselves come one at a time from grader.hint, so a learner is not handed the answer before trying.
"""
from __future__ import annotations

import html

MARKS = {"passed": "✔", "failed": "✘", "skipped": "–"}
_COLOURS = {"passed": "#137333", "failed": "#b3261e", "skipped": "#666"}


def fmt_points(value: float) -> str:
    return f"{value:g}"


class CheckReport:
    """One exercise's check results. Jupyter shows `_repr_html_`; consoles and logs show `text()`."""

    def __init__(self, exercise, results: list, hints: int):
        self.exercise, self.results, self.hints = exercise, results, hints
        self.score = sum(r.score for r in results)
        self.max_score = sum(r.counted_max for r in results)
        self.later = [c for c in exercise.checks if not c.in_notebook and not c.hidden]
        self.failed = any(r.status == "failed" for r in results)

    # -- what every rendering says -----------------------------------------------------------------------------
    def _headline(self) -> str:
        return f"{self.exercise.id}: {fmt_points(self.score)}/{fmt_points(self.max_score)} points — {self.exercise.title}"

    @staticmethod
    def _points(result) -> str:
        return "skipped" if result.status == "skipped" else f"{fmt_points(result.score)}/{fmt_points(result.max_score)}"

    @staticmethod
    def _details(result) -> list[tuple[str, str]]:
        """(label, text) under a check that did not pass: the problem, then what was expected and what was found."""
        if result.status == "passed":
            return []
        details = [("", result.message)]
        if result.status == "failed":
            details += [(label, value) for label, value in (("expected", result.expected), ("found", result.found))
                        if value]
        return details

    def _submission_lines(self) -> list[str]:
        lines = [f"{c.title} ({fmt_points(c.points)} pt): checked when you submit" for c in self.later]
        if self.exercise.hidden_points:
            lines.append(f"hidden checks ({fmt_points(self.exercise.hidden_points)} pt): checked when you submit")
        return lines

    def _stuck(self) -> str | None:
        if not (self.failed and self.hints):
            return None
        return (f'Stuck? grader.hint("{self.exercise.id}") gives a hint, one more each call '
                f"({self.hints} in all: the idea first, then closer to the code).")

    # -- plain text ---------------------------------------------------------------------------------------------
    def text(self) -> str:
        lines = [self._headline()]
        for r in self.results:
            lines.append(f"  {MARKS[r.status]} {r.title} ({self._points(r)})")
            lines += [f"      {label + ': ' if label else ''}{text}" for label, text in self._details(r)]
        lines += [f"  • {line}" for line in self._submission_lines()]
        stuck = self._stuck()
        if stuck:
            lines.append(stuck)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer, cycle) -> None:  # IPython's console
        printer.text(self.text())

    # -- HTML ---------------------------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        esc = html.escape
        state = "failed" if self.failed else "passed" if self.results else "skipped"
        parts = [f"<div class='polyglot-check' style='font-family:var(--jp-ui-font-family,sans-serif);"
                 f"border-left:4px solid {_COLOURS[state]};padding:.3em .8em'>",
                 f"<div style='font-weight:600;color:{_COLOURS[state]}'>{esc(self._headline())}</div>"]
        for r in self.results:
            colour = _COLOURS[r.status]
            summary = (f"<span style='color:{colour};font-weight:700'>{MARKS[r.status]}</span> {esc(r.title)} "
                       f"<span style='color:{colour}'>({esc(self._points(r))})</span>")
            details = self._details(r)
            if not details:
                parts.append(f"<div style='margin:.15em 0 .15em 1em'>{summary}</div>")
                continue
            rows = "".join(
                f"<tr><th style='text-align:left;padding-right:.8em;vertical-align:top'>{esc(label)}</th>"
                f"<td style='text-align:left'><code style='white-space:pre-wrap'>{esc(text)}</code></td></tr>"
                if label else f"<tr><td colspan='2' style='text-align:left'>{esc(text)}</td></tr>"
                for label, text in details)
            opened = " open" if r.status == "failed" else ""
            parts.append(f"<details{opened} style='margin:.15em 0 .15em 1em'><summary>{summary}</summary>"
                         f"<table style='margin:.2em 0 .4em 1.2em'>{rows}</table></details>")
        later = self._submission_lines()
        if later:
            items = "".join(f"<li>{esc(line)}</li>" for line in later)
            parts.append(f"<details style='margin:.15em 0 .15em 1em;color:#555'><summary>• {len(later)} more "
                         f"checked when you submit</summary><ul>{items}</ul></details>")
        stuck = self._stuck()
        if stuck:
            parts.append(f"<div style='margin-top:.3em'>{esc(stuck)}</div>")
        parts.append("</div>")
        return "".join(parts)


def show(report: CheckReport) -> None:
    """Rich output where IPython displays it (JupyterLab, Colab), the text twin anywhere else."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(report.text())
        return
    if get_ipython() is not None:
        display(report)
    else:
        print(report.text())
