"""The checks a learner runs in the notebook, one file per module, written by `make notebooks` from the
`# <notebook>` blocks of graders/checks/mNN_slug.py."""
