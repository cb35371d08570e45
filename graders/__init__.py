"""Polyglot Lab's grading engine: executes submissions, runs checks in the grader's process, reports."""

__version__ = "0.1.0"
