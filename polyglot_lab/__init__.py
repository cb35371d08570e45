"""Polyglot Lab's learner-facing package: the in-notebook grader and the course datasets.

    import polyglot_lab
    grader = polyglot_lab.Notebook("01_keras_prototype")
    ...
    grader.check("split")
"""
from polyglot_lab.notebook import Notebook

__all__ = ["Notebook"]
__version__ = "0.1.0"
