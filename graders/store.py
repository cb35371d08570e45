"""Graded results kept in SQLite, keyed by the submission's content and the grader's version.

A `make grade` that was killed resumes where it stopped; an unchanged submission is not graded twice;
a change to the grader (checks, probes, catalogue, engine) grades everything again.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
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
            "protection": result.protection, "note": result.note,
            "cell_errors": {str(k): v for k, v in result.cell_errors.items()}}


class StoreError(ValueError):
    """The store cannot be used (not a database, not writable): said in one line before any grading."""


class ResultStore:
    """reports/grades.sqlite: one row per (learner, module, device), with the key it was graded under.

    Like the reports beside it, the file is mode 0644 and the folders made for it 0755, whatever the umask (who may
    read it is the reports folder's business: an existing folder keeps its mode)."""

    def __init__(self, path: Path):
        from graders.reports import FILE_MODE, make_folders

        make_folders(path.parent)
        self.path = path
        new = not path.exists()
        try:
            with self._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS results (learner TEXT, module TEXT, device TEXT, "
                           "submission TEXT, grader TEXT, result TEXT, graded_at REAL, "
                           "PRIMARY KEY (learner, module, device))")
                db.execute("SELECT learner, module, device, submission, grader, result, graded_at FROM results LIMIT 1")
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")  # takes the write lock: a read-only file or folder fails here
                db.rollback()
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: not a usable grades store ({exc})") from None
        if new:
            os.chmod(path, FILE_MODE)  # sqlite makes it 0666 & ~umask: 0600 under a umask of 077

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def _result(row) -> ModuleResult:
        result = module_result_from_dict(json.loads(row[0]))
        result.grader, result.graded_at = row[1], row[2] or 0.0
        return result

    def get(self, learner: str, module: str, device: str, submission: str) -> ModuleResult | None:
        with self._connect() as db:
            row = db.execute("SELECT result, grader, graded_at FROM results WHERE learner=? AND module=? AND device=? "
                             "AND submission=? AND grader=?",
                             (learner, module, device, submission, grader_version())).fetchone()
        return self._result(row) if row else None

    def put(self, result: ModuleResult, device: str, submission: str) -> None:
        result.grader, result.graded_at = grader_version(), time.time()
        with self._connect() as db:  # one transaction: a kill leaves the old row or the new one, never half
            db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (result.learner, result.module, device, submission, result.grader,
                        json.dumps(module_result_to_dict(result)), result.graded_at))

    def last(self, learner: str, module: str) -> ModuleResult | None:
        """The latest result for (learner, module), on any device and by any grader version."""
        with self._connect() as db:
            row = db.execute("SELECT result, grader, graded_at FROM results WHERE learner=? AND module=? "
                             "ORDER BY graded_at DESC LIMIT 1", (learner, module)).fetchone()
        return self._result(row) if row else None

    def latest(self) -> dict[str, dict[str, ModuleResult]]:
        """{learner: {module: result}}: every (learner, module) the store holds, graded last on whichever device and by
        whichever grader version (the reports show every module ever graded into them, not only this run's)."""
        kept: dict[str, dict[str, ModuleResult]] = {}
        with self._connect() as db:
            rows = db.execute("SELECT learner, module, result, grader, graded_at FROM results "
                              "ORDER BY graded_at").fetchall()
        for learner, module, *row in rows:
            kept.setdefault(learner, {})[module] = self._result(row)
        return kept
