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
