"""Graded results kept in SQLite, keyed by the submission's content and the grader's version.

A `make grade` that was killed resumes where it stopped; an unchanged submission is not graded twice;
a change to the grader (checks, probes, catalogue, engine) grades everything again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
import sqlite3
import time
from pathlib import Path

from polyglot_lab.catalogue import REPO
from graders.results import CheckResult, ModuleResult

MISSING = "missing"


def content_hash(path: Path | None) -> str:
    """sha256 of the submitted notebook's bytes ('missing' when there is none)."""
    if path is None or not Path(path).is_file():
        return MISSING
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


CHANGELOG = REPO / "CHANGELOG.md"
_RELEASE_HEADING = re.compile(r"^## \[?([^\]\s]+)\]?", re.MULTILINE)


def release(changelog: Path = CHANGELOG) -> str:
    """The release the grader belongs to: the first `## ` heading of CHANGELOG.md (`## [0.2.0] - ...` -> 0.2.0);
    "unreleased" where there is no changelog (an installed copy without the repository)."""
    try:
        match = _RELEASE_HEADING.search(changelog.read_text(encoding="utf-8"))
    except OSError:
        return "unreleased"
    return match.group(1) if match else "unreleased"


@functools.lru_cache(maxsize=1)
def grader_version() -> str:
    """`<release>+<hash>`: the CHANGELOG's latest release (why the version changed: read its entry), and 12 hex
    digits of sha256 over the grader's own sources (the engine, checks, probes, learner package and catalogue), so
    that any change to them grades everything again, released or not."""
    digest = hashlib.sha256()
    for folder, pattern in (("graders", "**/*.py"), ("polyglot_lab", "**/*.py"), ("exercises", "*.toml")):
        for path in sorted((REPO / folder).glob(pattern)):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return f"{release()}+{digest.hexdigest()[:12]}"


def derived_seed(submission_hash: str, module: str) -> int:
    """The grade-time seed of a submission: fresh for every new submission or grader, the same on a re-run,
    so that a resumed or parallel run gives the results a serial one would."""
    material = f"{submission_hash}:{module}:{grader_version()}".encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") >> 1


def module_result_from_dict(data: dict) -> ModuleResult:
    checks = [CheckResult(**c) for c in data.pop("checks")]
    data.pop("notebook", None)
    return ModuleResult(**data, checks=checks)


def module_result_to_dict(result: ModuleResult) -> dict:
    return {"learner": result.learner, "module": result.module, "title": result.title, "submitted": result.submitted,
            "checks": [c.to_dict() for c in result.checks], "stopped": result.stopped, "problem": result.problem,
            "execution_s": result.execution_s, "grading_s": result.grading_s, "seed": result.seed,
            "peak_memory_mb": result.peak_memory_mb, "worker_peak_mb": result.worker_peak_mb,
            "protection": result.protection,
            "cell_errors": {str(k): v for k, v in result.cell_errors.items()}}


class ResultStore:
    """reports/grades.sqlite: one row per (learner, module, device), with the key it was graded under."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS results (learner TEXT, module TEXT, device TEXT, "
                       "submission TEXT, grader TEXT, result TEXT, graded_at REAL, "
                       "PRIMARY KEY (learner, module, device))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, learner: str, module: str, device: str, submission: str) -> ModuleResult | None:
        with self._connect() as db:
            row = db.execute("SELECT result FROM results WHERE learner=? AND module=? AND device=? AND submission=? "
                             "AND grader=?", (learner, module, device, submission, grader_version())).fetchone()
        return module_result_from_dict(json.loads(row[0])) if row else None

    def put(self, result: ModuleResult, device: str, submission: str) -> None:
        with self._connect() as db:  # one transaction: a kill leaves the old row or the new one, never half
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (result.learner, result.module, device, submission, grader_version(),
                        json.dumps(module_result_to_dict(result)), time.time()))
