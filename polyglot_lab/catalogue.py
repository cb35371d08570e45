"""The exercise catalogue: exercises/NN_slug.toml, one file per module, read into plain dataclasses."""
from __future__ import annotations

from polyglot_lab.compat import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The course repository's catalogue; a learner release ships its own, stripped of hidden checks, inside the package.
_RELEASED = Path(__file__).resolve().parent / "exercises"
CATALOGUE_DIR = _RELEASED if _RELEASED.is_dir() else REPO / "exercises"


class CatalogueError(ValueError):
    """A catalogue file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class CheckSpec:
    id: str
    title: str
    points: float
    hidden: bool = False
    device: str = "any"  # "any" runs everywhere; "gpu" needs a CUDA device and is skipped without one
    # "notebook": grader.check() runs it while the learner works (its code ships, in polyglot_lab/checks/);
    # "submission": only the grader runs it (it needs reference code or grader-held data, or it is hidden)
    runs: str = "notebook"

    @property
    def in_notebook(self) -> bool:
        return self.runs == "notebook"


@dataclass(frozen=True)
class ExerciseSpec:
    id: str
    title: str
    asks: str
    checked: str
    hints: tuple[str, ...]
    checks: tuple[CheckSpec, ...]
    artifacts: tuple[str, ...] = ()
    hidden_removed: float = 0.0  # a learner release's catalogue: the points of the hidden checks it leaves out

    @property
    def points(self) -> float:
        """The points of the checks listed here (a learner release lists no hidden check: see hidden_points)."""
        return sum(c.points for c in self.checks)

    @property
    def hidden_points(self) -> float:
        return self.hidden_removed + sum(c.points for c in self.checks if c.hidden)


@dataclass(frozen=True)
class PartSpec:
    """A sitting inside a long module: some of its exercises, scored on their own (`grader.score("A")`)."""
    id: str
    title: str
    exercises: tuple[str, ...]


@dataclass(frozen=True)
class ModuleSpec:
    id: str
    title: str
    checks_module: str
    probes_module: str
    cell_timeout: float
    total_timeout: float
    exercises: tuple[ExerciseSpec, ...]
    path: Path = field(default=Path(), compare=False)
    parts: tuple[PartSpec, ...] = ()

    @property
    def notebook_checks_module(self) -> str:
        """The checks a learner runs in the notebook: polyglot_lab.checks.<the checks module's name>."""
        return "polyglot_lab.checks." + self.checks_module.rsplit(".", 1)[-1]

    @property
    def notebook_name(self) -> str:
        return f"{self.id}.ipynb"

    @property
    def points(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def artifact_names(self) -> frozenset[str]:
        """Every file an exercise of this module declares in `artifacts`: the only files its checks open."""
        return frozenset(name for e in self.exercises for name in e.artifacts)

    def exercise(self, exercise_id: str) -> ExerciseSpec:
        for exercise in self.exercises:
            if exercise.id == exercise_id:
                return exercise
        known = ", ".join(e.id for e in self.exercises)
        raise KeyError(f"module {self.id} has no exercise {exercise_id!r} (it has: {known})")

    def part(self, part_id: str) -> PartSpec:
        for part in self.parts:
            if part.id == part_id:
                return part
        known = ", ".join(p.id for p in self.parts) or "none: it is one sitting"
        raise KeyError(f"module {self.id} has no part {part_id!r} (its parts: {known})")


def _require(table: dict, key: str, path: Path, where: str):
    if key not in table:
        raise CatalogueError(f"{path}: {where} has no '{key}'")
    return table[key]


def load_module(path: Path) -> ModuleSpec:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogueError(f"{path}: no such catalogue file") from None
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{path}: not valid TOML: {exc}") from None
    module = _require(data, "module", path, "the file")
    exercises = []
    seen = set()
    for raw in data.get("exercise", []):
        ex_id = _require(raw, "id", path, "an [[exercise]]")
        if ex_id in seen:
            raise CatalogueError(f"{path}: exercise id {ex_id!r} appears twice")
        seen.add(ex_id)
        checks = []
        for raw_check in _require(raw, "check", path, f"exercise {ex_id!r}"):
            device = raw_check.get("device", "any")
            if device not in ("any", "gpu"):
                raise CatalogueError(f"{path}: check {ex_id}.{raw_check.get('id')} has device {device!r}; use 'any' or 'gpu'")
            hidden = bool(raw_check.get("hidden", False))
            runs = raw_check.get("runs", "submission" if hidden else "notebook")
            if runs not in ("notebook", "submission") or (hidden and runs == "notebook"):
                raise CatalogueError(f"{path}: check {ex_id}.{raw_check.get('id')} has runs = {runs!r}; use "
                                     "'notebook' or 'submission' (a hidden check runs only at submission)")
            checks.append(CheckSpec(
                id=_require(raw_check, "id", path, f"a check of {ex_id!r}"),
                title=raw_check.get("title", raw_check["id"]),
                points=float(_require(raw_check, "points", path, f"check {ex_id}.{raw_check['id']}")),
                hidden=hidden,
                device=device,
                runs=runs,
            ))
        exercises.append(ExerciseSpec(
            id=ex_id,
            title=_require(raw, "title", path, f"exercise {ex_id!r}"),
            asks=raw.get("asks", ""),
            checked=raw.get("checked", ""),
            hints=tuple(raw.get("hints", ())),
            checks=tuple(checks),
            artifacts=tuple(raw.get("artifacts", ())),
            hidden_removed=float(raw.get("hidden_points", 0)),
        ))
    if not exercises:
        raise CatalogueError(f"{path}: no [[exercise]] entries")
    parts = _parts(module.get("parts", []), [e.id for e in exercises], path)
    return ModuleSpec(
        id=_require(module, "id", path, "[module]"),
        title=_require(module, "title", path, "[module]"),
        checks_module=_require(module, "checks", path, "[module]"),
        probes_module=_require(module, "probes", path, "[module]"),
        cell_timeout=float(module.get("cell_timeout", 120)),
        total_timeout=float(module.get("total_timeout", 900)),
        exercises=tuple(exercises),
        path=path,
        parts=parts,
    )


def _parts(raw_parts: list, exercise_ids: list[str], path: Path) -> tuple[PartSpec, ...]:
    """[[module.parts]]: consecutive runs of exercises, in order, each exercise in exactly one part (or no parts)."""
    parts = tuple(PartSpec(id=str(_require(raw, "id", path, "a [[module.parts]]")),
                           title=_require(raw, "title", path, f"part {raw.get('id')!r}"),
                           exercises=tuple(_require(raw, "exercises", path, f"part {raw.get('id')!r}")))
                  for raw in raw_parts)
    listed = [e for part in parts for e in part.exercises]
    if parts and listed != exercise_ids:
        raise CatalogueError(f"{path}: [[module.parts]] must list every exercise once, in the catalogue's order "
                             f"({', '.join(exercise_ids)}); they list {', '.join(listed)}")
    if len({p.id for p in parts}) != len(parts):
        raise CatalogueError(f"{path}: two [[module.parts]] share an id")
    return parts


def load_catalogue(directory: Path = CATALOGUE_DIR) -> dict[str, ModuleSpec]:
    """All modules of a catalogue directory, in module order (the NN_ prefix)."""
    modules = {}
    for path in sorted(Path(directory).glob("*.toml")):
        spec = load_module(path)
        if spec.id != path.stem:
            raise CatalogueError(f"{path}: [module] id is {spec.id!r} but the file is named {path.stem!r}")
        modules[spec.id] = spec
    return modules
