"""Polyglot Lab's grading engine: executes submissions, opens what they produced in a sandboxed checker, decides every
verdict in the grader's process, reports."""

__version__ = "0.1.0"
