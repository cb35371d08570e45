"""How long a module takes a learner: counted from the master notebook at a stated pace, and written into its
opening (the `<!-- sizing -->` block) by `make notebooks`, so the figure follows the text when either changes.

The counts are measured (words of teaching text, lines of given code to read, lines of solution code to write, and
which of those a learner carries over from an earlier module); the pace is stated (PACE) and said in the notebook.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from graders.generate import _REGION, BEGIN, END, GenerateError, tag_value

BLOCK = re.compile(r"<!-- sizing -->.*?<!-- /sizing -->", re.DOTALL)
SITTING_MINUTES = 180       # a notebook, or each part of a long one, in one sitting of 2-3 hours
EXERCISE_MINUTES = 30       # an exercise in about half an hour


@dataclass(frozen=True)
class Pace:
    """A learner's pace. Reading: technical prose with formulas is read at 100-200 words a minute (half the pace of
    plain prose); writing: a line of solution code includes looking up the API and getting it right once."""
    words_per_minute: float = 150
    given_lines_per_minute: float = 10      # reading the course's code before using it
    minutes_per_line: float = 1.0           # a new line of solution code
    minutes_per_carried_line: float = 0.1   # a line the learner brings from an earlier module's answer
    minutes_per_check: float = 3.0          # run the exercise, read the feedback, fix one thing

    def describe(self) -> str:
        return (f"reading {self.words_per_minute:g} words and {self.given_lines_per_minute:g} lines of given code a "
                f"minute, {self.minutes_per_line:g} minute per line of solution code you write "
                f"({self.minutes_per_carried_line:g} for a line you bring from an earlier module), and "
                f"{self.minutes_per_check:g} minutes per exercise to run its check and act on the feedback")


PACE = Pace()


@dataclass(frozen=True)
class ExerciseSize:
    id: str
    words: int
    given_lines: int
    new_lines: int
    carried_lines: int

    def minutes(self, pace: Pace = PACE) -> float:
        return (self.words / pace.words_per_minute + self.given_lines / pace.given_lines_per_minute
                + self.new_lines * pace.minutes_per_line + self.carried_lines * pace.minutes_per_carried_line
                + pace.minutes_per_check)


@dataclass(frozen=True)
class ModuleSize:
    module: str
    exercises: tuple[ExerciseSize, ...]
    framing_words: int        # the opening and the closing: read once
    framing_given_lines: int

    def minutes(self, pace: Pace = PACE) -> float:
        return (sum(e.minutes(pace) for e in self.exercises) + self.framing_words / pace.words_per_minute
                + self.framing_given_lines / pace.given_lines_per_minute)

    def exercise(self, exercise_id: str) -> ExerciseSize:
        return next(e for e in self.exercises if e.id == exercise_id)


def _code_lines(source: str) -> list[str]:
    """Lines that carry code: not blank, not a comment, not a cell magic."""
    return [line.strip() for line in source.split("\n")
            if line.strip() and not line.strip().startswith(("#", "%", "!"))]


def solution_lines(source: str) -> list[str]:
    """The code lines inside a cell's solution regions."""
    return [line for region in _REGION.finditer(source)
            for line in _code_lines(region.group(0)) if line not in (BEGIN, END)]


def given_lines(source: str) -> list[str]:
    """The code lines outside a cell's solution regions: what the course gives, to be read."""
    return _code_lines(_REGION.sub("", source))


def _words(cell) -> int:
    return len(BLOCK.sub("", cell.source).split())


def measure(master, earlier_solutions: set[str], module_id: str = "") -> ModuleSize:
    """Count a master notebook, exercise by exercise: everything from the end of the previous exercise (its check
    cell) to this exercise's check cell is this exercise's to read and write. A solution line counts as carried
    when an earlier module's solution holds it (and it is long enough to be more than boilerplate)."""
    exercises, words, given, new, carried = [], 0, 0, 0, 0
    for cell in master.cells:
        if cell.cell_type == "markdown":
            words += _words(cell)
            continue
        if cell.cell_type != "code":
            continue
        given += len(given_lines(cell.source))
        for line in solution_lines(cell.source):
            if len(line) >= 20 and line in earlier_solutions:
                carried += 1
            else:
                new += 1
        checked = tag_value(cell, "check:")
        if checked:
            exercises.append(ExerciseSize(checked, words, given, new, carried))
            words = given = new = carried = 0
    if not exercises:
        raise GenerateError(f"{module_id}: no check: cells, so no exercises to size")
    return ModuleSize(module_id, tuple(exercises), words, given)


def measure_course(masters: dict) -> dict[str, ModuleSize]:
    """Every module's size, in module order; carried lines are those of the modules before it."""
    sizes: dict[str, ModuleSize] = {}
    earlier: set[str] = set()
    for module_id in sorted(masters):
        sizes[module_id] = measure(masters[module_id], set(earlier), module_id)
        for cell in masters[module_id].cells:
            if cell.cell_type == "code":
                earlier.update(solution_lines(cell.source))
    return sizes


def fmt_minutes(minutes: float) -> str:
    """Rounded up to 5 minutes: '25 min', '2 h 05 min'."""
    rounded = 5 * math.ceil(minutes / 5)
    hours, rest = divmod(rounded, 60)
    return f"{hours} h {rest:02d} min" if hours else f"{rest} min"


def sizing_text(size: ModuleSize, parts=(), pace: Pace = PACE) -> str:
    """What the opening's Time section says."""
    longest = max(size.exercises, key=lambda e: e.minutes(pace))
    lines = [f"About **{fmt_minutes(size.minutes(pace))}** of work, {len(size.exercises)} exercises of "
             f"{fmt_minutes(min(e.minutes(pace) for e in size.exercises))} to {fmt_minutes(longest.minutes(pace))} "
             f"each (the longest: `{longest.id}`)."]
    if parts:
        each = ", ".join(f"{p.id} {fmt_minutes(sum(size.exercise(e).minutes(pace) for e in p.exercises))}"
                         for p in parts)
        lines.append(f"It comes in {len(parts)} parts, one sitting each ({each}), each with its own score: "
                     f"`grader.score(\"A\")`.")
    lines.append(f"*How this is measured:* counted from this notebook (its words, the lines of code it gives you to "
                 f"read, the lines of solution code you write) at a stated pace: {pace.describe()}. Running the "
                 f"cells adds a minute or two on a laptop.")
    return "\n".join(lines)


def with_sizing(master, text: str, module_id: str = ""):
    """The master with its opening's `<!-- sizing -->` block holding `text` (the first markdown cell)."""
    opening = next((c for c in master.cells if c.cell_type == "markdown"), None)
    if opening is None or not BLOCK.search(opening.source):
        raise GenerateError(f"solutions/{module_id}.ipynb: the opening cell has no <!-- sizing --><!-- /sizing --> block "
                         "(under '### Time')")
    opening.source = BLOCK.sub(lambda _: f"<!-- sizing -->\n{text}\n<!-- /sizing -->", opening.source, count=1)
    return master


# -- the README's table of times, a generated block ------------------------------------------------------------------
TABLE_BEGIN = "<!-- module times: written by `make notebooks` (graders/sizing.py); do not edit -->"
TABLE_END = "<!-- end of module times -->"


def times_table(sizes: dict[str, ModuleSize], catalogue: dict, pace: Pace = PACE) -> str:
    rows = ["| module | time | exercises | sittings |", "| --- | --- | --- | --- |"]
    for module_id, size in sizes.items():
        parts = catalogue[module_id].parts if module_id in catalogue else ()
        sittings = (", ".join(f"part {p.id} {fmt_minutes(sum(size.exercise(e).minutes(pace) for e in p.exercises))}"
                              for p in parts) if parts else "one")
        rows.append(f"| `{module_id}` | {fmt_minutes(size.minutes(pace))} | {len(size.exercises)} | {sittings} |")
    return "\n".join([TABLE_BEGIN, *rows, "", f"Times are counted from each master notebook at a stated pace: "
                      f"{pace.describe()} (`graders/sizing.py`).", TABLE_END])


def with_times_table(text: str, table: str, where: str) -> str:
    start, end = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if start < 0 or end < start:
        raise GenerateError(f"{where}: no module-times block (a line {TABLE_BEGIN!r}, then {TABLE_END!r})")
    return text[:start] + table + text[end + len(TABLE_END):]
