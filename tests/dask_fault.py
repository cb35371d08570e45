"""A Dask worker preload for tests/test_dask.py (`dask worker --preload tests/dask_fault.py`): the worker kills itself
(SIGKILL) when it starts grading the learner named by POLYGLOT_TEST_KILL_WORKER_FOR, as a grading that takes its worker
down would (memory past the worker's limit, a crash in native code). Never loaded outside that test."""
import os
import signal

import graders.grade

VICTIM = os.environ.get("POLYGLOT_TEST_KILL_WORKER_FOR")
# Dask may import a preload twice in one worker: keep the real grade_module once, never wrap the wrapper.
_real_grade_module = getattr(graders.grade, "_unfaulted_grade_module", graders.grade.grade_module)
graders.grade._unfaulted_grade_module = _real_grade_module


def _grade_module(path, spec, learner="learner", *args, **kwargs):
    if VICTIM and learner == VICTIM:
        os.kill(os.getpid(), signal.SIGKILL)
    return _real_grade_module(path, spec, learner, *args, **kwargs)


graders.grade.grade_module = _grade_module
