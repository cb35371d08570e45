"""What a probe hands over is declared once, by name and kind (polyglot_lab.probe.probe), and read back by that
declaration only: a name nobody declared fails loudly on both sides, and the kernel's files are read as plain data."""
import importlib
import inspect
import os
import re

import numpy as np
import pytest

from graders.checks import CheckContext, CheckFailed, load_registry
from polyglot_lab.probe import ARRAY, ARRAYS, FILE, VALUE, UndeclaredOutput, probe, probe_io, run


@probe(logits=ARRAY, state=ARRAYS, report=VALUE, **{"model.bin": FILE})
def example(ns, io):
    io.save(logits=np.arange(6.0).reshape(2, 3), state={"fc.weight": np.ones((2, 2)), "fc.bias": np.zeros(2)},
            report={"ratio": 0.5})
    io.output_path("model.bin").write_bytes(b"weights")


@probe(logits=ARRAY)
def saves_an_undeclared_name(ns, io):
    io.save(logits=np.zeros(2), extra=1)


@pytest.fixture
def ctx(tmp_path):
    return CheckContext(tmp_path, seed=1, device="cpu")


def run_probe(ctx, fn):
    module = inspect.getmodule(fn)
    return run(module.__name__, fn.__name__, {}, ctx.workdir)


def test_each_kind_comes_back_as_itself(ctx):
    assert run_probe(ctx, example)
    out = ctx.outputs(example)
    np.testing.assert_array_equal(out["logits"], np.arange(6.0).reshape(2, 3))
    assert sorted(out["state"]) == ["fc.bias", "fc.weight"] and out["state"]["fc.weight"].shape == (2, 2)
    assert out["report"] == {"ratio": 0.5}
    assert out["model.bin"].read_bytes() == b"weights"
    assert sorted(out) == ["logits", "model.bin", "report", "state"]


def test_a_check_reading_an_undeclared_name_is_the_authors_mistake(ctx):
    run_probe(ctx, example)
    out = ctx.outputs(example)
    for read in (lambda: out["loss"], lambda: out.get("loss"), lambda: "loss" in out):
        with pytest.raises(UndeclaredOutput, match="declares no output 'loss'"):
            read()


def test_a_probe_saving_an_undeclared_name_fails_as_a_probe_error(ctx):
    assert not run_probe(ctx, saves_an_undeclared_name)
    with pytest.raises(CheckFailed, match="UndeclaredOutput"):
        ctx.outputs(saves_an_undeclared_name)


@probe(logits=ARRAY)
def returns_what_the_learner_returned(ns, io):
    io.save(logits=ns["value"])


@pytest.mark.parametrize("value", [[np.zeros(3), None], {"a": 1}, [[1.0, 2.0], [3.0]]])
def test_a_value_that_is_not_an_array_of_numbers_is_named_in_the_kernel(ctx, value):
    """numpy would hold these as Python objects (needing pickle): the probe says which output and what it got."""
    assert not run(__name__, "returns_what_the_learner_returned", {"value": value}, ctx.workdir)
    with pytest.raises(CheckFailed) as failure:
        ctx.outputs(returns_what_the_learner_returned)
    assert "logits: expected an array of numbers" in failure.value.found


def test_an_object_array_written_behind_the_probes_back_fails_the_check_with_words(ctx):
    """A kernel may write any file where the probe's outputs go: an array of Python objects is not read (that needs
    pickle), and the check fails naming the output, rather than erroring."""
    io = probe_io("example", ctx.workdir, declared=example.outputs)
    io.save(report={"ratio": 0.5})
    np.save(io.outputs_dir / "logits.npy", np.array([None, 1], dtype=object), allow_pickle=True)
    io.mark_done()
    with pytest.raises(CheckFailed, match="output logits is not a plain array of numbers") as failure:
        ctx.outputs(example)["logits"]
    assert "pickle" in failure.value.found


def test_a_declared_value_that_was_not_saved_is_missing_not_undeclared(ctx):
    io = probe_io("example", ctx.workdir, declared=example.outputs)
    io.save(logits=np.zeros(3))
    io.mark_done()
    out = ctx.outputs(example)
    assert out.get("report") is None and "state" not in out
    with pytest.raises(KeyError):
        out["report"]


def test_links_planted_by_the_kernel_are_not_followed(ctx, tmp_path_factory):
    secret = tmp_path_factory.mktemp("grader") / "answers.npy"
    np.save(secret, np.array([42.0]))
    io = probe_io("example", ctx.workdir, declared=example.outputs)
    io.outputs_dir.mkdir(parents=True)
    os.symlink(secret, io.outputs_dir / "logits.npy")
    (io.outputs_dir / "state").symlink_to(secret.parent)
    io.mark_done()
    out = ctx.outputs(example)
    assert out.get("logits") is None and out.get("state") is None


def test_the_graders_inputs_travel_as_files_and_folders(tmp_path):
    io = probe_io("example", tmp_path)
    io.write_inputs(X=np.ones((2, 2), np.float32), net={"w": np.zeros(3)}, threads=2, **{"model.onnx": b"\x08\x01"})
    given = io.inputs
    assert given["X"].dtype == np.float32 and given["threads"] == 2
    np.testing.assert_array_equal(given["net"]["w"], np.zeros(3))
    assert io.input_file("model.onnx").read_bytes() == b"\x08\x01"
    with pytest.raises(ValueError):
        io.input_file("../escape")


def test_kinds_are_checked_when_declared():
    with pytest.raises(ValueError, match="not one of"):
        probe(x="tensor")


MODULES = ["00_setup", "01_keras_prototype", "02_pytorch_eager", "03_onnx_export", "04_tensorflow_serving",
           "05_capstone"]


@pytest.mark.parametrize("module", MODULES)
def test_every_probe_declares_its_outputs_and_every_declared_output_is_read(module, catalogue):
    """Each exercise's probe has a declaration, and each name it declares is read by the module's checks
    (an output nobody reads is a check that was never written)."""
    spec = catalogue[module]
    probes = importlib.import_module(spec.probes_module)
    # the grader's side of the checks file: without its kernel blocks, which hold the declarations themselves
    checks_source = re.sub(r"^# <kernel>.*?^# </kernel>$", "", inspect.getsource(importlib.import_module(
        spec.checks_module)), flags=re.S | re.M)
    registry = load_registry(spec.checks_module)
    for exercise in spec.exercises:
        fn = getattr(probes, exercise.id, None)
        if fn is None:
            continue  # graded on artifacts alone
        assert hasattr(fn, "outputs"), f"{spec.probes_module}.{exercise.id} has no @probe(...) declaration"
        assert any(key[0] == exercise.id for key in registry.checks), exercise.id
        for name in fn.outputs:
            # read as out["name"], found["name"], out.get("name"), or through an f-string pattern of declared names
            literal = re.escape(name)
            assert re.search(rf"[\"']{literal}[\"']", checks_source) or _read_by_pattern(name, checks_source), (
                f"{spec.probes_module}.{exercise.id} declares {name!r}, and no check of {spec.checks_module} reads it")


def _read_by_pattern(name: str, source: str) -> bool:
    """`out[f"state_{case}"]` reads state_a and state_b."""
    for pattern in re.findall(r"f[\"']([a-z_]*)\{[a-z_]+\}([a-z_.]*)[\"']", source):
        prefix, suffix = pattern
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
            return True
    return False


@pytest.mark.parametrize("module", MODULES)
def test_the_kernel_side_imports_nothing_of_the_grader(module, catalogue):
    """The probes file is all that runs in the learner's kernel (and ships to learners): no grader module in it."""
    import ast

    from graders.generate import module_path
    from polyglot_lab.catalogue import REPO

    tree = ast.parse(module_path(REPO, catalogue[module].probes_module).read_text(encoding="utf-8"))
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert imported and not [name for name in imported if name.split(".")[0] == "graders"], imported
