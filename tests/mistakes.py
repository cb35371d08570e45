"""Helpers of the mistake tests: craft a probe's outputs, and expect a check to fail with given words."""
import pytest

from graders.checks import CheckFailed
from polyglot_lab import probe
from polyglot_lab.probe import probe_io


def craft(ctx, probe_fn, **values):
    """Write an exercise's probe outputs as if the learner's kernel had produced them (only names and kinds the
    probe function declares, as the real probe would)."""
    io = probe_io(probe_fn.__name__, ctx.workdir, declared=probe_fn.outputs)
    io.reset_outputs()
    io.save(**values)
    io.mark_done()


def fails_with(check, ctx, *words):
    """The check fails, and its message contains each of `words`: it names the mistake."""
    with pytest.raises(CheckFailed) as failure:
        check(ctx)
    for word in words:
        assert word in failure.value.message, failure.value.message
    return failure.value


def run_probe(ctx, registry, probes: str, exercise: str, **namespace):
    """Run an exercise's real probe on `namespace`, as if it were the learner's notebook, with the grader's
    inputs for this context; the checks then read what it saved."""
    ctx.cache.clear()
    maker = registry.input_makers.get(exercise)
    if maker:
        probe_io(exercise, ctx.workdir).write_inputs(**maker(ctx))
    probe.run(probes, exercise, namespace, ctx.workdir)
    return ctx


def verdicts(ctx, registry, exercise: str, device: str = "cpu") -> dict:
    """Every check of an exercise, run as grading runs it (an unexpected exception costs that check only), on what
    ctx's working folder holds: {check id: CheckResult}."""
    from graders.checks import run_check
    from polyglot_lab.catalogue import CATALOGUE_DIR, load_module

    spec = load_module(CATALOGUE_DIR / f"{registry.module_id}.toml")
    exercise_spec = spec.exercise(exercise)
    return {check.id: run_check(registry, ctx, spec, exercise_spec, check, device) for check in exercise_spec.checks}


def costs_only(ctx, registry, exercise: str, failing, *words):
    """A mutant: the exercise's checks in `failing` (a check id, or several) fail, each message naming the mistake
    with every one of `words`; every other check of the exercise passes, so the mistake costs only its points."""
    failing = {failing} if isinstance(failing, str) else set(failing)
    results = verdicts(ctx, registry, exercise)
    unknown = failing - set(results)
    assert not unknown, f"{exercise} has no checks {sorted(unknown)} (it has {sorted(results)})"
    for check_id, result in results.items():
        if check_id in failing:
            assert result.status == "failed", f"{exercise}.{check_id} should fail but {result.status}: {result.message}"
            assert not result.message.startswith("The grader could not check this"), result.message
            for word in words:
                assert word in result.message, f"{exercise}.{check_id}: {word!r} not in {result.message!r}"
        else:
            assert result.status != "failed", f"{exercise}.{check_id} should not cost points: {result.message}"
    return results


def full_marks(ctx, registry, exercise: str):
    """A valid alternative: every check of the exercise passes (a GPU check may skip on a machine without one)."""
    results = verdicts(ctx, registry, exercise)
    for check_id, result in results.items():
        assert result.status != "failed", f"{exercise}.{check_id} failed a valid answer: {result.message}"
    return results
