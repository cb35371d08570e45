"""Where a learner stands, as `rustlings list` shows it: every module and exercise of a workspace with its state.

grader.check records its last result per exercise in .polyglot/progress.json beside the notebook. That file is the
learner's own note for this listing: the grader never reads it (a grade comes from running the notebook again).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

PROGRESS_FILE = Path(".polyglot") / "progress.json"
STUB = "raise NotImplementedError("


def _read(workdir: Path) -> dict:
    try:
        return json.loads((workdir / PROGRESS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def record(workdir: Path, module_id: str, exercise_id: str, results: list) -> None:
    """Keep the score of the exercise's last check; a folder it cannot write costs only this note."""
    seen = _read(workdir)
    seen.setdefault(module_id, {})[exercise_id] = {
        "score": sum(r.score for r in results), "max_score": sum(r.counted_max for r in results),
        "checked_at": time.strftime("%Y-%m-%d %H:%M")}
    path = workdir / PROGRESS_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(seen, indent=1), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        pass


def solution_sources(notebook: Path) -> dict[str, str]:
    """{exercise id: the source of its `solution:<id>` cells, joined} of a notebook file (plain JSON: no nbformat)."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    sources: dict[str, str] = {}
    for cell in cells:
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(source)
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith("solution:"):
                exercise_id = tag.split(":", 1)[1]
                sources[exercise_id] = sources.get(exercise_id, "") + source
    return sources


def states(workdir: Path, spec) -> list[tuple[str, str]]:
    """(exercise id, state) for one module in a workspace: not started (the stub is still there), not checked yet,
    or the last check's score."""
    notebook = workdir / f"{spec.id}.ipynb"
    if not notebook.exists():
        return [(exercise.id, "no notebook") for exercise in spec.exercises]
    try:
        sources = solution_sources(notebook)
    except (OSError, ValueError) as exc:
        return [(exercise.id, f"unreadable notebook: {exc}") for exercise in spec.exercises]
    last = _read(workdir).get(spec.id, {})
    said = []
    for exercise in spec.exercises:
        seen = last.get(exercise.id)
        if STUB in sources.get(exercise.id, STUB):
            state = "not started"
        elif seen is None:
            state = "written, not checked yet"
        else:
            mark = "✔" if seen["score"] >= seen["max_score"] else "✘"
            state = f"{mark} {seen['score']:g}/{seen['max_score']:g} at the last check ({seen['checked_at']})"
        said.append((exercise.id, state))
    return said


def listing(workdir: Path, modules) -> str:
    lines = []
    for spec in modules:
        lines.append(f"{spec.id}: {spec.title}")
        lines += [f"  {exercise_id:<14} {state}" for exercise_id, state in states(workdir, spec)]
    lines.append("Scores are from grader.check (the checks that run in the notebook); your grade comes from "
                 "grading the whole notebook when you submit.")
    return "\n".join(lines)
