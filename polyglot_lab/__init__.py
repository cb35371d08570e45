"""Polyglot Lab's learner-facing package: the in-notebook grader and the course datasets.

    import polyglot_lab
    grader = polyglot_lab.Notebook("01_keras_prototype")
    ...
    grader.check("split")
"""
import importlib.util as _util
import sys as _sys


def _load_triton_first() -> None:
    """PyPI's Linux builds of torch come with triton (torch's GPU compiler). With TensorFlow 2.21, a process crashes
    (a segmentation fault) when triton's library loads after TensorFlow's, which torch does on demand (in
    torch.use_deterministic_algorithms, torch.compile); loaded first, both work. Notebooks import polyglot_lab
    before the frameworks for this, and so do the grader and the checker."""
    if "tensorflow" in _sys.modules or "triton" in _sys.modules:
        return
    try:
        if _util.find_spec("triton") is None:
            return
    except (ImportError, ValueError):
        return
    import triton  # noqa: F401


_load_triton_first()

from polyglot_lab import quiet as _quiet  # noqa: E402

_quiet.install()

from polyglot_lab import course  # noqa: E402 - the course diagram, polyglot_lab.course.show_lifecycle(...)
from polyglot_lab.notebook import Notebook  # noqa: E402 - after the triton guard

__all__ = ["Notebook", "course"]
__version__ = "0.1.0"
