"""Kernel-side probes, one module per course module, one function per exercise id.

A probe takes the notebook's namespace and a ProbeIO, calls the learner's code on the inputs the
grader wrote, and saves plain data. It decides nothing: the verdicts live in graders/checks/.
"""
