"""The course itself: every master scores full marks, every learner edition zero (make verify),
the masters' stored outputs still hold (nbval's comparison, on the run shared with verify),
and a tampered learner edition gains nothing."""
import pytest

from conftest import MODULES
from graders.results import PASSED, SKIPPED
from graders.verify import verify_problems
from nbval_compare import mismatched_cells

pytestmark = pytest.mark.slow  # executes every master and every learner edition: `make test-fast` leaves it out


@pytest.mark.parametrize("module", MODULES)
def test_master_full_marks_and_learner_edition_zero(module, graded_masters, graded_learner_editions):
    master, learner = graded_masters[module], graded_learner_editions[module]
    assert verify_problems(master, learner) == []
    assert master.score == master.max_score > 0
    assert all(c.status in (PASSED, SKIPPED) for c in master.checks)
    assert learner.score == 0 and learner.problem is None


@pytest.mark.parametrize("module", MODULES)
def test_learner_edition_failures_say_not_done(module, graded_learner_editions):
    for check in graded_learner_editions[module].checks:
        if check.status != SKIPPED:
            assert check.message, check


@pytest.mark.parametrize("module", MODULES)
def test_master_outputs_validate_like_nbval(module, graded_masters):
    from polyglot_lab.catalogue import REPO
    import nbformat
    stored = nbformat.read(REPO / "solutions" / f"{module}.ipynb", as_version=4)
    assert mismatched_cells(stored, graded_masters[module].notebook) == []


@pytest.mark.parametrize("module", MODULES)
def test_master_cells_run_without_errors(module, graded_masters):
    result = graded_masters[module]
    assert result.cell_errors == {}, (module, result.cell_errors)
    assert result.stopped is None
