"""Kernel-side probes, one module per course module, one function per exercise id.

A probe takes the notebook's namespace and a ProbeIO, calls the learner's code on the inputs the
grader wrote, and saves plain data it declares (``@probe(name=KIND)``). It decides nothing.

These files are written by ``make notebooks`` from the ``# <kernel>`` blocks of graders/checks/mNN_*.py,
where each probe sits in its exercise's section beside the inputs maker and the checks: edit it there.
"""
