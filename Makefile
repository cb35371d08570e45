# Polyglot Lab. Quick start on a fresh machine: `make grade`, then `make test`.
# Every target sets up its own environment: .venv, made from pyproject.toml, re-made when that changes.

PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.installed
SUBMISSIONS ?= examples/submissions
REPORTS    ?= reports
DEVICE     ?= auto
MODULES    ?= all
JOBS       ?= 1
SCHEDULER  ?=
PORT       ?= 8888
WORKSPACE  ?= workspace
SERVE_PORT ?= 8501
NAME       ?= digits

export TF_CPP_MIN_LOG_LEVEL := 3
export KERAS_BACKEND := tensorflow
export TF_FORCE_GPU_ALLOW_GROWTH := true
export PYTHONUNBUFFERED := 1

.PHONY: help setup grade test lint bench verify notebooks check-notebooks lab submit progress doctor masters serve gradescope release clean

# `make` alone lists the targets (tests/test_learner_tools.py checks that every target is listed here).
help:
	@echo "Polyglot Lab. Quick start: make grade (about 18 min on 2 cores), then make test (about 16 min)."
	@echo ""
	@echo "Learners"
	@echo "  make lab              JupyterLab on your workspace/ (a copy of notebooks/, never overwritten)"
	@echo "  make submit           grade workspace/ as make grade would; feedback in workspace/feedback/"
	@echo "  make progress         each exercise: not started, written, or its last check's score"
	@echo "Instructors"
	@echo "  make grade            grade SUBMISSIONS=<dir>/<learner>/<NN_slug>.ipynb into REPORTS (MODULES, JOBS, DEVICE, FRESH=1, SCHEDULER=tcp://host:8786)"
	@echo "  make gradescope       a Gradescope autograder zip for MODULES"
	@echo "  make release          the learner release (no answers) in build/release/dist"
	@echo "  make serve            a SavedModel behind TensorFlow Serving's REST API: MODEL=<dir>"
	@echo "  make bench            class-grading benchmark (serial, JOBS=2, a scheduler with two workers, kill and resume)"
	@echo "  make doctor           versions, devices and the kernels' protection, with a verdict per line"
	@echo "Course authors"
	@echo "  make notebooks        learner editions, examples, probes and notebook checks from the masters"
	@echo "  make check-notebooks  fail if any generated file drifted from its source"
	@echo "  make masters          re-execute the masters and store their outputs, then make notebooks"
	@echo "  make new-exercise     MODULE=NN_slug ID=id: the stubs of a new exercise in every piece"
	@echo "  make verify           static checks; every master full marks, every learner edition zero"
	@echo "Developers"
	@echo "  make setup            the virtual environment .venv (every target makes it when needed)"
	@echo "  make test             every test, on TEST_JOBS=2 pytest workers; make test-fast leaves out whole notebooks"
	@echo "  make lint             ruff and mypy"
	@echo "  make clean            remove reports and scratch files"

setup: $(STAMP)

# torch first, as a CPU build where one is at hand: pyproject.toml states a range, and on Linux PyPI's torch is a CUDA
# build of a few GB. TORCH=torch==2.13.0 is the CPU wheel among this machine's local wheels (Python 3.11); elsewhere
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes PyTorch's own CPU build (README, "Where you work").
TORCH       ?= torch==2.13.0
TORCH_INDEX ?=
$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)",)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m polyglot_lab kernel >/dev/null
	touch $@

grade: $(STAMP)
	$(PY) -m graders grade --submissions "$(SUBMISSIONS)" --reports "$(REPORTS)" --device "$(DEVICE)" --modules "$(MODULES)" --jobs "$(JOBS)" --scheduler "$(SCHEDULER)" $(if $(FRESH),--no-resume,)

# Two pytest workers, whole files each (--dist loadfile): the course tests of one file share their graded notebooks,
# and a file's tests stay in one process. TEST_JOBS=1 runs them in this process, one after the other.
TEST_JOBS  ?= 2
PYTEST     := $(PY) -m pytest $(if $(filter-out 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile,)
test: $(STAMP)
	$(PYTEST)

# The tests without those marked slow (they execute whole course notebooks: tests/test_course.py, tests/test_corpus.py).
.PHONY: test-fast
test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# Static checks, configured in pyproject.toml: ruff over graders/, polyglot_lab/ and tests/, then mypy over graders/.
lint: $(STAMP)
	$(PY) -m ruff check graders polyglot_lab tests
	$(PY) -m mypy

# Serve a SavedModel with TensorFlow Serving's REST API on 127.0.0.1 (reference codec): make serve MODEL=<dir>
serve: $(STAMP)
	@test -n "$(MODEL)" || { echo "usage: make serve MODEL=<SavedModel dir> [NAME=digits] [SERVE_PORT=8501] [LABEL=stable]"; exit 2; }
	$(PY) -m polyglot_lab.serving "$(MODEL)" --codec graders/serving_codec.py --name "$(NAME)" --port "$(SERVE_PORT)" $(if $(LABEL),--label "$(LABEL)",)

# A Gradescope autograder zip for MODULES (build/gradescope/autograder.zip); see README.
gradescope: $(STAMP)
	$(PY) -m graders gradescope --modules "$(MODULES)"

# The learner release of MODULES (build/release/dist: a wheel and an sdist, no answers in them); RELEASE_URL is where
# it will be published, for the Colab/Kaggle install cell of its notebooks. See README, "Learner release".
RELEASE_URL ?=
release: $(STAMP)
	$(PY) -m graders release --out build/release --address "$(RELEASE_URL)" --modules "$(MODULES)"

# Class-grading benchmark: COPIES copies of LEARNER's example submission graded serially, with JOBS=2 (an embedded Dask
# cluster), on a `dask scheduler` with two `dask worker`s, and on it killed half-way and resumed (reports/bench.json)
COPIES     ?= 20
LEARNER    ?= ada
bench: $(STAMP)
	$(PY) -m graders bench --copies "$(COPIES)" --learner "$(LEARNER)" --modules "$(MODULES)"

verify: $(STAMP)
	$(PY) -m graders verify --modules "$(MODULES)"

notebooks: $(STAMP)
	$(PY) -m graders notebooks

check-notebooks: $(STAMP)
	$(PY) -m graders notebooks --check

# The learner's side in this repository: WORKSPACE (git ignores it) gets a copy of notebooks/ on first use and is
# never overwritten; a notebook the course changed later lands beside yours as NN_slug.new.ipynb.
lab: $(STAMP)
	$(PY) -m polyglot_lab lab "$(WORKSPACE)" --port $(PORT)

# Grade WORKSPACE as `make grade` grades a class (fresh kernel, every check, hidden ones counted but not named);
# feedback in WORKSPACE/feedback/
submit: $(STAMP)
	$(PY) -m graders submit --workspace "$(WORKSPACE)" --modules "$(MODULES)" --device "$(DEVICE)"

progress: $(STAMP)
	$(PY) -m graders progress --workspace "$(WORKSPACE)"

doctor: $(STAMP)
	$(PY) -m graders doctor

# Re-execute the masters (after editing one) and store their outputs, then regenerate the learner editions.
masters: $(STAMP)
	$(PY) -m graders masters
	$(PY) -m graders notebooks

# Append the stubs of a new exercise to every piece of a module (CONTRIBUTING.md): make new-exercise MODULE=01_keras_prototype ID=my_exercise
.PHONY: new-exercise
new-exercise: $(STAMP)
	@test -n "$(MODULE)" -a -n "$(ID)" || { echo "usage: make new-exercise MODULE=NN_slug ID=exercise_id [TITLE='...']"; exit 2; }
	$(PY) -m graders new-exercise "$(MODULE)" "$(ID)" $(if $(TITLE),--title "$(TITLE)",)

clean:
	rm -rf $(REPORTS) .pytest_cache solutions/.polyglot solutions/*.keras notebooks/.polyglot notebooks/*.keras
