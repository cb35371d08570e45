"""Quiet TensorFlow: a learner sees what their code prints and real warnings, not the frameworks' start-up log.

TensorFlow 2.21 logs through absl before absl's logging is set up, and such lines ignore TF_CPP_MIN_LOG_LEVEL: each
of its two native libraries prints "All log messages before absl::InitializeLog() ..." and INFO lines on oneDNN and
a missing CUDA driver, straight to file descriptor 2, which Jupyter shows as a red block under the first cell that
imports TensorFlow or Keras. While TensorFlow is imported, descriptor 2 goes to a temporary file; what is left after
dropping the lines below the level TF_CPP_MIN_LOG_LEVEL asks for is written back. Python warnings are untouched.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

# What TensorFlow's own log level hides once it applies (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL): the course's default
# is 3, because a CPU machine otherwise gets "E0000 ... failed call to cuInit" under a learner's first Keras cell.
DEFAULT_LEVEL = "3"
KINETO_QUIET = "6"  # torch.profiler's Kineto prints profiler_start/stop lines to stderr below this level
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")
_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# cpu_feature_guard's INFO message runs on over a second line without a prefix of its own
_CONTINUATION = "To enable the following instructions:"


def quiet_environment() -> dict[str, str]:
    """The settings a course kernel starts with (the kernel spec `make setup` and `polyglot-lab lab` install)."""
    return {"TF_CPP_MIN_LOG_LEVEL": DEFAULT_LEVEL, "KERAS_BACKEND": "tensorflow", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
            "KINETO_LOG_LEVEL": KINETO_QUIET}


def kept_lines(text: str, level: int) -> str:
    """`text` without the start-up lines whose severity is below `level` (and without absl's banner)."""
    kept, dropping = [], False
    for line in text.splitlines(keepends=True):
        match = _ABSL_LINE.match(line)
        if match:
            dropping = _SEVERITY[match.group(1)] < level
        elif line.startswith(_BANNER):
            dropping = True
        elif not (dropping and line.startswith(_CONTINUATION)):
            dropping = False
        if not dropping:
            kept.append(line)
    return "".join(kept)


def _level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL))
    except ValueError:
        return 0


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):  # get_data, is_package, resource readers: the real loader's
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        _step_aside()
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                rest = kept_lines(caught.read().decode("utf-8", "replace"), _level())
                if rest:
                    os.write(2, rest.encode())


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Wraps the first import of tensorflow (Keras imports it too) and then steps aside: once TensorFlow's module
    runs, not when its spec is first asked for. A probe such as torch._dynamo's `importlib.util.find_spec("tensorflow")`
    (torch.compile, torch.export) would otherwise use the finder up and leave the real import unwrapped."""

    def __init__(self):
        self.busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self.busy:
            return None
        self.busy = True  # importlib.util.find_spec below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _step_aside() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]


# Framework messages about the frameworks themselves, not about the learner's code, each seen under course cells:
# torch.onnx's exporter lists every torchvision operator it skips when torchvision is not installed (20 lines under
# module 03's first export), and torch's pytree deprecates a name inside torch's own export code.
_FRAMEWORK_LOGGERS = ("torch.onnx._internal.exporter._registration",)
_FRAMEWORK_WARNINGS = ((FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),)


def install() -> None:
    """Set the course's default log level, wrap TensorFlow's import (once; nothing if it is imported already) and
    silence the framework messages above."""
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_LEVEL)
    os.environ.setdefault("KINETO_LOG_LEVEL", KINETO_QUIET)  # read when a profile starts: in time here
    for name in _FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for category, message in _FRAMEWORK_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
