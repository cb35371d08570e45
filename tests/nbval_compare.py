"""nbval's output comparison, applied to an execution the suite already has.

nbval executes a notebook itself; the suite instead executes each master once (for verify) and
compares that run's outputs with the stored ones through nbval's own `IPyNbCell.compare_outputs`,
with nbval's defaults (images skipped) and its cell tags (`nbval-ignore-output`, `nbval-skip`).
stderr is left out on both sides: it carries framework start-up logs with timestamps.
"""
from types import SimpleNamespace

from nbval.plugin import IPyNbCell, coalesce_streams, nocolors

from graders.generate import drop_stderr

SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")


class _Comparer:
    compare_outputs = IPyNbCell.compare_outputs
    sanitize = IPyNbCell.sanitize

    def __init__(self):
        self.parent = SimpleNamespace(skip_compare=SKIP_COMPARE, sanitize_patterns={})
        self.colors = nocolors
        self.comparison_traceback = []

    def format_output_compare(self, key, left, right):
        self.comparison_traceback.append(f"mismatch {key!r}: stored {left!r} != new {right!r}")


def _outputs(cell):
    return coalesce_streams(drop_stderr(cell.outputs))


def mismatched_cells(stored_nb, executed_nb) -> list[str]:
    problems = []
    executed = {cell.id: cell for cell in executed_nb.cells}
    for index, cell in enumerate(stored_nb.cells):
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "nbval-ignore-output" in tags or "nbval-skip" in tags:
            continue
        comparer = _Comparer()
        if not comparer.compare_outputs(_outputs(executed[cell.id]), _outputs(cell)):
            problems.append(f"cell {index}: " + " ".join(map(str, comparer.comparison_traceback))[:500])
    return problems
