"""The check core, shared by the grader and the learner's notebook: what a check function receives (a CheckContext),
how it fails (CheckFailed), and how one check becomes a result (run_check).

A module's checks file holds one ``Registry``; each check is a function of the context,
registered under the (exercise, check) ids of the catalogue. It returns a short message on
success or raises ``CheckFailed`` with what was expected, what was found and a hint.

Nothing here imports the grader (graders/): the checks a learner can run in the notebook are written from
this core (polyglot_lab/checks/), and ship with the course.
"""
from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from polyglot_lab.catalogue import CatalogueError
from polyglot_lab.probe import ARRAY, ARRAYS, FILE, UndeclaredOutput, probe_io


class CheckFailed(Exception):
    """A check's verdict is 'failed'. The message names the mistake in words a learner understands."""

    def __init__(self, message: str, *, expected: str | None = None, found: str | None = None,
                 hint: str | None = None):
        super().__init__(message)
        self.message, self.expected, self.found, self.hint = message, expected, found, hint


class UndeclaredArtifact(LookupError):
    """A check opened a file its module's catalogue does not declare: a course author's mistake."""


class CheckSkipped(Exception):
    """The check cannot run on this machine (a GPU runtime is missing, say): it counts neither way."""


CheckFn = Callable[["CheckContext"], "str | None"]
InputsFn = Callable[["CheckContext"], dict]


class Registry:
    """The checks and input makers of one module, keyed by the catalogue's ids."""

    def __init__(self, module_id: str):
        self.module_id = module_id
        self.checks: dict[tuple[str, str], CheckFn] = {}
        self.input_makers: dict[str, InputsFn] = {}

    def artifacts(self, exercise_id: str) -> tuple[str, ...]:
        """The files the catalogue says an exercise's notebook writes (`artifacts = [...]`, in that order): the checks
        take their names from here, so each name is written once."""
        from polyglot_lab.catalogue import CATALOGUE_DIR, load_module

        names = load_module(CATALOGUE_DIR / f"{self.module_id}.toml").exercise(exercise_id).artifacts
        if not names:
            raise CatalogueError(f"exercises/{self.module_id}.toml: exercise {exercise_id!r} lists no artifacts")
        return names

    def check(self, exercise_id: str, check_id: str):
        def register(fn: CheckFn) -> CheckFn:
            self.checks[(exercise_id, check_id)] = fn
            return fn
        return register

    def inputs(self, exercise_id: str):
        def register(fn: InputsFn) -> InputsFn:
            self.input_makers[exercise_id] = fn
            return fn
        return register


def load_registry(dotted: str) -> Registry:
    registry = getattr(importlib.import_module(dotted), "registry", None)
    if not isinstance(registry, Registry):
        raise TypeError(f"{dotted} must define `registry = Registry(...)`")
    return registry


@dataclass
class ExecutionFacts:
    """What the executor learned about an exercise, so that failures can say why."""
    cell_error: str | None = None      # "NotImplementedError: ..." from the learner's own cell
    not_reached: str | None = None     # why the probe never ran (kernel died, time limit, ...)


class CheckContext:
    """Everything a check may look at: the probe's outputs and the files of the graded run."""

    def __init__(self, workdir: Path, seed: int, device: str, facts: dict[str, ExecutionFacts] | None = None,
                 checker=None, artifacts: frozenset[str] | None = None):
        self.workdir = Path(workdir)
        self.artifacts = artifacts  # the files the module's catalogue declares; None: not known (a test's context)
        self.seed = seed
        self.device = device  # "cpu" or "cuda"
        self.facts = facts or {}
        self.cache: dict = {}  # shared by the checks of one module run (a loaded model, say)
        self._checker = checker
        self._owns_checker = False  # True once this context started a checker of its own

    @property
    def checker(self):
        """The process that opens and runs the run's artifacts, started on first use: the caller's (grade_module's
        sandboxed one, one per module), or one of this context's own (`new_checker`)."""
        if self._checker is None:
            self._checker, self._owns_checker = self.new_checker()
        return self._checker

    def new_checker(self) -> tuple[object, bool]:
        """(a checker for this context, whether the context owns it). In the notebook: a plain child process on the
        learner's own files; the grader's context starts one in the sandbox instead (graders.checks)."""
        from polyglot_lab.checker.client import LocalChecker
        return LocalChecker(self.device), True

    def close(self) -> None:
        """Stop the checker this context started itself (none when it was given one)."""
        if self._owns_checker:
            self._checker.close()

    def cached(self, key: str, load: Callable[[], object]):
        """load() once per module run (a loaded model, a measurement), shared by every check that asks for `key`.
        A load that fails with CheckFailed fails the same way for every later check, without loading again (a
        converter that does not import would otherwise cost the grader's exports once per check)."""
        if key not in self.cache:
            try:
                self.cache[key] = load()
            except CheckFailed as failure:
                self.cache[key] = failure
        value = self.cache[key]
        if isinstance(value, CheckFailed):
            raise CheckFailed(value.message, expected=value.expected, found=value.found, hint=value.hint)
        return value

    def run(self, op: str, failure: str, hint: str | None = None, **args) -> dict:
        """An operation of the checker on the run's artifacts (polyglot_lab/checker/ops.py); when it fails, a
        CheckFailed that starts with `failure` ("digits.keras does not load") and says why, bounded."""
        from polyglot_lab.checker.client import CheckerError
        try:
            return self.checker.call(op, **args)
        except CheckerError as exc:
            if exc.unsafe:
                raise CheckFailed(f"{failure}: it was refused before being opened. {exc.message}", hint=hint) from None
            raise CheckFailed(f"{failure}: {exc.kind}: {exc.message}", hint=hint) from None

    def sample_digits(self) -> tuple[np.ndarray, np.ndarray]:
        """Raw digit images and labels that checks run models on (parity, latency): in the notebook, the learner's
        own digits; when grading, the digits only the grader holds (graders.checks.CheckContext)."""
        from polyglot_lab.data import digits
        return digits()

    def rng(self, salt: str) -> np.random.Generator:
        """A generator for grade-time inputs: fresh each grading run, stable within it."""
        return np.random.default_rng([self.seed, *salt.encode()])

    def outputs(self, probe) -> Outputs:
        """What an exercise's probe (the probe function of its section, with its declaration) handed over, or a
        CheckFailed that says why there is nothing: read as plain data, and only the names the probe declares."""
        exercise_id = probe.__name__
        io = probe_io(exercise_id, self.workdir)
        facts = self.facts.get(exercise_id, ExecutionFacts())
        error = _bounded_error(io)
        if error:
            raise CheckFailed(_explain_probe_error(error, facts), found=f"{error['type']}: {error['message']}",
                              hint=_hint_for(error))
        if not io.done:
            reason = facts.not_reached or "the notebook stopped before this exercise was checked"
            raise CheckFailed(f"This exercise was not graded: {reason}.",
                              hint="Run the whole notebook top to bottom (Kernel → Restart Kernel and Run All Cells) "
                                   "to find the cell that stops it.")
        if folder_bytes(io.outputs_dir) > PROBE_OUTPUT_BYTES:
            raise CheckFailed(f"What your code returned for this exercise is over {PROBE_OUTPUT_BYTES // 2**20} MB: "
                              "the grader does not read it.", hint="Return the values the exercise asks for, no more.")
        return Outputs(self.workdir, io.outputs_dir, probe.outputs, exercise_id)

    def artifact(self, name: str, exercise_id: str | None = None, hint: str | None = None) -> Path:
        """A file the graded run must have written into its working directory; `hint` says how to write it."""
        if self.artifacts is not None and name not in self.artifacts:
            raise UndeclaredArtifact(f"{name} is opened by a check but no exercise of the catalogue lists it in "
                                     f"`artifacts` (it lists {sorted(self.artifacts)})")
        path = self.workdir / name
        if not path.exists():
            facts = self.facts.get(exercise_id, ExecutionFacts()) if exercise_id else ExecutionFacts()
            detail = f" Your cell raised {facts.cell_error}." if facts.cell_error else ""
            if facts.not_reached:
                detail += f" The run stopped early: {facts.not_reached}."
            raise CheckFailed(f"{name} was not found: the model was never saved by the notebook.{detail}",
                              expected=f"a file {name} written by the notebook", found="no such file",
                              hint=hint or f"Save it from the notebook, in its own folder: `.save('{name}')`.")
        return path


class Outputs(Mapping):
    """A probe's outputs, by the names and kinds it declares (polyglot_lab.probe): ARRAY an array, ARRAYS a dict of
    arrays, VALUE plain JSON data, FILE a path. The kernel wrote them, so no symlink is followed and no pickle read;
    asking for a name the probe does not declare is the author's mistake (UndeclaredOutput), not a missing value."""

    def __init__(self, workdir: Path, directory: Path, declared: dict[str, str], exercise: str):
        self.workdir, self.dir, self.declared, self.exercise = Path(workdir), Path(directory), declared, exercise
        self._values: dict | None = None

    def kind(self, name: str) -> str:
        if name not in self.declared:
            raise UndeclaredOutput(f"the {self.exercise} probe declares no output {name!r} "
                                   f"(it declares {sorted(self.declared)})")
        return self.declared[name]

    def __getitem__(self, name: str):
        kind = self.kind(name)
        if kind == ARRAY:
            return self._array(self._plain(self.dir / f"{name}.npy", name), name)
        if kind == ARRAYS:
            folder = self._plain(self.dir / name, name)
            return {p.stem: self._array(self._plain(p, name), f"{name}[{p.stem!r}]") for p in sorted(folder.glob("*.npy"))}
        if kind == FILE:
            return self._plain(self.dir / name, name)
        if self._values is None:
            path = self.dir / "values.json"
            self._values = json.loads(_read_bytes(self._plain(path, name))) if os.path.lexists(path) else {}
            if not isinstance(self._values, dict):
                self._values = {}
        return self._values[name]

    def get(self, name: str, default=None):
        self.kind(name)
        try:
            return self[name]
        except KeyError:
            return default

    def __contains__(self, name) -> bool:
        self.kind(name)
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in self.declared if name in self])

    def __len__(self) -> int:
        return len(list(iter(self)))

    def _array(self, path: Path, name: str) -> np.ndarray:
        """A plain array, or a verdict that names the output: the kernel wrote it, so it may hold Python objects
        (which are not read: that needs pickle) or not be an .npy file at all."""
        try:
            return _read_npy(path)
        except (ValueError, OSError) as exc:
            raise CheckFailed(f"The {self.exercise} probe's output {name} is not a plain array of numbers, so it "
                              "could not be checked.", found=str(exc)[:LEARNER_TEXT],
                              hint="Return numbers (a NumPy array, a tensor, a list of numbers), not None, "
                                   "dicts or lists of different lengths.") from None

    def _plain(self, path: Path, name: str) -> Path:
        """`path`, when it exists and neither it nor a folder between it and the working folder is a link."""
        if not os.path.lexists(path):
            raise KeyError(name)
        for part in [path, *path.relative_to(self.workdir).parents[:-1]]:  # [:-1]: not the working folder
            if (self.workdir / part).is_symlink():
                raise KeyError(name)
        return path


def _read_bytes(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return file.read(PROBE_OUTPUT_BYTES + 1)


def _read_npy(path: Path) -> np.ndarray:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as file:
        return np.load(file, allow_pickle=False)


PROBE_OUTPUT_BYTES = 256 * 2**20  # one exercise's probe outputs (the kernel wrote them: the grader bounds what it reads)
LEARNER_TEXT = 400               # characters of an error message learner code controls that reach feedback


def _bounded_error(io) -> dict | None:
    """The probe's error record (written by the kernel, so by learner code), as strings of bounded length."""
    path = io.dir / "error.json"
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_bytes()[:64 * 1024]) if path.stat().st_size <= 64 * 1024 else {}
    except (OSError, ValueError):
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    return {"type": str(raw.get("type") or "Error")[:80], "message": str(raw.get("message") or "")[:LEARNER_TEXT],
            "where": str(raw.get("where") or "")[:200]}


def _explain_probe_error(error: dict, facts: ExecutionFacts) -> str:
    kind, message = error["type"], error["message"]
    if kind == "NotImplementedError":
        text = "Not done yet: your code still raises NotImplementedError."
    elif kind == "KeyboardInterrupt":
        text = (f"Your code was stopped: {facts.not_reached or 'it ran past the time limit'} "
                "(an endless loop, or far too much work?)")
    elif kind == "NameError":
        text = f"{message}. Run the cell that defines it, and make sure that cell finishes without an error."
    else:
        text = f"Your code raised {kind}: {message}"
        if error.get("where"):
            text += f" (at {error['where']})"
    if facts.cell_error and kind != "NotImplementedError":
        text += f" Earlier, the exercise's cell raised {facts.cell_error}."
    return text


def _hint_for(error: dict) -> str | None:
    if error["type"] == "NotImplementedError":
        return "Replace `raise NotImplementedError()` with your solution."
    if error["type"] == "KeyboardInterrupt":
        return "Look for a loop that never ends; each cell has a time limit when graded."
    return None


def describe_array(a) -> str:
    a = np.asarray(a)
    return f"array of shape {a.shape}, dtype {a.dtype}"


def folder_bytes(folder) -> int:
    """Bytes of the regular files under folder (links not followed)."""
    total, stack = 0, [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            pass
    return total


# -- results -------------------------------------------------------------------------------------------------------
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
NO_DEVICE = "skipped: no device"


@dataclass
class CheckResult:
    module: str
    exercise: str
    check: str
    title: str
    score: float
    max_score: float
    status: str                  # passed | failed | skipped
    message: str = ""
    expected: str | None = None
    found: str | None = None
    hint: str | None = None
    hidden: bool = False
    device: str = "cpu"
    duration_s: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.module} / {self.exercise} / {self.check}"

    @property
    def counted_max(self) -> float:
        """Skipped checks (no device) count neither for nor against the learner."""
        return 0.0 if self.status == SKIPPED else self.max_score

    def to_dict(self) -> dict:
        return asdict(self)


def run_check(registry: Registry, ctx: CheckContext, spec, exercise, check, device: str) -> CheckResult:
    """One check of the catalogue, run on `ctx`: its verdict, message and points. A check that raises anything else
    than CheckFailed or CheckSkipped (odd learner data) fails with the error named, and costs this check only."""
    result = CheckResult(module=spec.id, exercise=exercise.id, check=check.id, title=check.title, score=0.0,
                         max_score=check.points, status=FAILED, hidden=check.hidden, device=device)
    if check.device == "gpu" and device != "cuda":
        result.status, result.message = SKIPPED, NO_DEVICE
        return result
    fn = registry.checks.get((exercise.id, check.id))
    started = time.monotonic()
    try:
        if fn is None:
            raise CheckFailed(f"the grader has no implementation of {exercise.id}.{check.id}")
        message = fn(ctx)
        result.status, result.score, result.message = PASSED, check.points, message or "passed"
    except CheckSkipped as skip:
        result.status, result.message = SKIPPED, f"skipped: {skip}"
    except CheckFailed as failure:
        result.message, result.expected, result.found = failure.message, failure.expected, failure.found
        result.hint = failure.hint  # the exercise's own hints are shown once per exercise, not under each check
    except Exception as exc:  # noqa: BLE001 - odd learner data must cost this check only
        result.message = f"The grader could not check this: {type(exc).__name__}: {str(exc)[:LEARNER_TEXT]}"
    for name in ("message", "expected", "found"):  # they may quote learner data: bounded whatever the check did
        value = getattr(result, name)
        if isinstance(value, str) and len(value) > 2000:
            setattr(result, name, value[:2000] + " …")
    result.duration_s = time.monotonic() - started
    return result
