"""The checker's refusals (polyglot_lab/checker/safety.py): unsafe .pt2 archives and SavedModels are refused before
anything opens them, and what the course's notebooks save is accepted.

The malicious artifacts are built the way an attacker would: a legitimate torch.export.save archive with one JSON field
or member changed, a SavedModel whose serving function does file or Python work. A subprocess shows that torch 2.13's
own torch.export.load runs the planted code (it only writes a marker file inside tmp_path), so the refusals guard
against something real."""
from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import pytest

from polyglot_lab.checker.safety import ALLOWED_OPS, UnsafeArtifact, refuse_unsafe_pt2, refuse_unsafe_savedmodel


# ------------------------------------------------------------------------------------------------------------------
# .pt2
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def legit_pt2(tmp_path_factory):
    """What module 02 saves: an exported convnet-ish nn.Module with parameters, buffers (batch norm, a registered
    buffer), a lifted tensor constant, and a dynamic batch dimension."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(64, 10)
            self.norm = nn.LayerNorm(10)
            self.register_buffer("scale", torch.tensor(2.0))

        def forward(self, x):
            x = x.reshape(-1, 1, 8, 8) * self.scale
            x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.norm(F.gelu(self.fc(x.flatten(1)))) + torch.tensor([0.5]).sum()

    torch.manual_seed(0)
    program = torch.export.export(Net().eval(), (torch.randn(2, 64),),
                                  dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    path = tmp_path_factory.mktemp("pt2") / "digits_custom.pt2"
    torch.export.save(program, path)
    return path


def tampered(source, target, edit):
    """A copy of the archive `source` at `target` whose members (names relative to the root folder) `edit` changes."""
    with zipfile.ZipFile(source) as archive:
        root = archive.namelist()[0].split("/")[0]
        members = {name.split("/", 1)[1]: archive.read(name) for name in archive.namelist()}
    edit(members)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{root}/{name}", data)
    return target


def edit_json(members, name, change):
    value = json.loads(members[name])
    change(value)
    members[name] = json.dumps(value).encode()


class Payload:
    """Unpickling this runs `code` (exec): what an attacker plants in a pickled weight."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def marker_code(marker):
    return f"__import__('pathlib').Path({str(marker)!r}).write_text('ran')"


def pickled_weight(members, code):
    def change(config):
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        members["data/weights/" + first["path_name"]] = pickle.dumps(Payload(code), protocol=2)
    edit_json(members, "data/weights/model_weights_config.json", change)


def sympy_shape(members, code):
    text = members["models/model.json"].decode()
    start = text.index('"expr_str": "') + len('"expr_str": "')
    end = text.index('"', start)
    members["models/model.json"] = (text[:start] + f"{text[start:end]} if {code} else 1" + text[end:]).encode()


def guard(members, code):
    edit_json(members, "models/model.json", lambda program: program.__setitem__("guards_code", [f"{code} == 3"]))


def test_legit_pt2_is_accepted(legit_pt2):
    with zipfile.ZipFile(legit_pt2) as archive:
        names = archive.namelist()
    assert any(n.endswith("data/constants/tensor_0") for n in names)  # the lifted constant travels as raw bytes
    refuse_unsafe_pt2(legit_pt2)
    refuse_unsafe_pt2(str(legit_pt2))


def test_torch_export_load_runs_planted_code_which_the_check_refuses_first(legit_pt2, tmp_path):
    """torch 2.13's torch.export.load unpickles a weight whose config says use_pickle (torch.load with
    weights_only=False) and sympify-evals the program's symbolic shapes; ExportedProgram.module() exec()s its
    guards_code. Each planted payload only writes a marker file in tmp_path, and only in the subprocess."""
    attacks = {"pickle": pickled_weight, "sympy": sympy_shape, "guards": guard}
    archives = {}
    for name, plant in attacks.items():
        marker = tmp_path / f"{name}_ran"
        archives[name] = tampered(legit_pt2, tmp_path / f"{name}.pt2",
                                  lambda members, plant=plant, marker=marker: plant(members, marker_code(marker)))
        with pytest.raises(UnsafeArtifact):  # refused from the bytes alone: no marker appears
            refuse_unsafe_pt2(archives[name])
    assert not list(tmp_path.glob("*_ran"))

    load = textwrap.dedent("""
        import sys, torch
        for path in sys.argv[1:]:
            try:
                torch.export.load(path).module()(torch.randn(3, 64))
            except Exception as exc:
                print(path, type(exc).__name__, file=sys.stderr)
    """)
    run = subprocess.run([sys.executable, "-c", load, *map(str, archives.values())], cwd=tmp_path, timeout=300, check=False,
                         capture_output=True, text=True, env={**os.environ, "TORCH_FORCE_WEIGHTS_ONLY_LOAD": "0"})
    assert run.returncode == 0, run.stderr[-2000:]
    ran = sorted(p.name for p in tmp_path.glob("*_ran"))
    assert ran == ["guards_ran", "pickle_ran", "sympy_ran"], run.stderr[-2000:]


def opaque_constant(members):
    def change(config):
        config["config"]["obj"] = {"path_name": "custom_obj_0", "is_param": False, "use_pickle": True,
                                   "tensor_meta": None}
    edit_json(members, "data/constants/model_constants_config.json", change)
    members["data/constants/custom_obj_0"] = pickle.dumps(Payload("pass"))


def pickled_constant(members):
    def change(config):
        first = next(iter(config["config"].values()))
        first["use_pickle"] = True
        members["data/constants/" + first["path_name"]] = pickle.dumps(Payload("pass"), protocol=2)
    edit_json(members, "data/constants/model_constants_config.json", change)


def sample_inputs_pickle(members):
    inner = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(members["data/sample_inputs/model.pt"])) as original, \
            zipfile.ZipFile(inner, "w") as archive:
        for name in original.namelist():
            archive.writestr(name, pickle.dumps(Payload("pass"), protocol=2) if name.endswith("data.pkl")
                             else original.read(name))
    members["data/sample_inputs/model.pt"] = inner.getvalue()


def retarget(target):
    def change(program):
        program["graph_module"]["graph"]["nodes"][0]["target"] = target
    return lambda members: edit_json(members, "models/model.json", change)


def custom_object_values(members):
    edit_json(members, "models/model.json", lambda program: program["graph_module"]["graph"].__setitem__(
        "custom_obj_values", {"obj": {"name": "obj", "class_fqn": "__torch__.torch.classes.x.Y"}}))


@pytest.mark.parametrize("edit, words", [
    (lambda m: pickled_weight(m, "pass"), "asks torch to unpickle"),
    (pickled_constant, "asks torch to unpickle"),
    (opaque_constant, "opaque object"),
    (custom_object_values, "opaque objects"),
    (lambda m: m.__setitem__("data/weights/model.pt", pickle.dumps(Payload("pass"))), "legacy layout"),
    (lambda m: m.__setitem__("data/aotinductor/model/model.so", b"\x7fELF"), "native code"),
    (lambda m: m.__setitem__("extra_pickle.pkl", pickle.dumps(1)), "pickle file"),
    (lambda m: m.__setitem__("data/weights/weight_99", b"\x80\x02"), "does not write"),
    (sample_inputs_pickle, "pickle imports __builtin__.exec"),
    (lambda m: m.__setitem__("data/sample_inputs/model.pt", pickle.dumps(Payload("pass"))), "not a torch.save"),
    (lambda m: sympy_shape(m, "print(1)"), "symbolic shape"),
    (lambda m: guard(m, "print(1)"), "guard"),
    (retarget("torch.save"), "not a tensor operator"),
    (retarget("builtins.exec"), "not a tensor operator"),
    (retarget("torch.ops.aten.from_file.default"), "touches files"),
    (lambda m: m.__setitem__("archive_format", b"zip"), "archive_format"),
], ids=["pickled-weight", "pickled-constant", "custom-object", "custom-obj-values", "legacy-weights", "aotinductor",
        "pkl-member", "unreferenced-payload", "sample-inputs-global", "sample-inputs-bare-pickle", "sympy-expr",
        "guards-code", "target-torch-save", "target-builtin", "target-from-file", "archive-format"])
def test_unsafe_pt2_is_refused(legit_pt2, tmp_path, edit, words):
    path = tampered(legit_pt2, tmp_path / "digits_custom.pt2", edit)
    with pytest.raises(UnsafeArtifact, match="digits_custom.pt2") as refused:
        refuse_unsafe_pt2(path)
    assert words in str(refused.value)
    assert "\n" not in str(refused.value)


def test_pt2_archive_layout_tricks_are_refused(legit_pt2, tmp_path):
    with zipfile.ZipFile(legit_pt2) as archive:
        infos = [(info.filename, archive.read(info)) for info in archive.infolist()]
    twice = tmp_path / "twice.pt2"
    config = next((n, d) for n, d in infos if n.endswith("weights_config.json"))
    with zipfile.ZipFile(twice, "w") as archive:
        for name, data in infos:
            archive.writestr(name, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr(*config)
    with pytest.raises(UnsafeArtifact, match="twice"):
        refuse_unsafe_pt2(twice)

    outside = tmp_path / "outside.pt2"
    with zipfile.ZipFile(outside, "w") as archive:
        for name, data in infos:
            archive.writestr(name, data)
        archive.writestr("version", b"1")  # what torch.export.load's pre-2.8 fallback looks for
    with pytest.raises(UnsafeArtifact, match="outside the single folder"):
        refuse_unsafe_pt2(outside)


def test_not_a_zip_or_missing_pt2_is_refused(tmp_path):
    bare = tmp_path / "digits_custom.pt2"
    bare.write_bytes(pickle.dumps(Payload("pass")))
    with pytest.raises(UnsafeArtifact, match=r"digits_custom\.pt2 is not a zip archive"):
        refuse_unsafe_pt2(bare)
    with pytest.raises(UnsafeArtifact, match="missing"):
        refuse_unsafe_pt2(tmp_path / "absent.pt2")


# ------------------------------------------------------------------------------------------------------------------
# SavedModel
# ------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow

    return tensorflow


def module_savedmodel(tf, directory, extra=None):
    """A tf.Module like the course's: variables, a [None, 64] float32 'pixels' signature returning {'logits': ...}
    through conv2d (NHWC), max_pool2d, layer normalisation by moments, gather, gelu, erf, tanh, pad, concat, ..."""

    class Digits(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = tf.Variable(tf.random.normal([3, 3, 1, 4], seed=1))
            self.dense = tf.Variable(tf.random.normal([64, 10], seed=2))
            self.embedding = tf.Variable(tf.random.normal([16, 10], seed=3))
            self.bias = tf.constant(tf.zeros([10]))

        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])
        def serve(self, pixels):
            x = tf.nn.relu(tf.nn.conv2d(tf.reshape(pixels, [-1, 8, 8, 1]), self.kernel, 1, "SAME"))
            x = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 0]]), 2, 2, "VALID")
            x = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, 64])
            mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
            x = (x - mean) * tf.math.rsqrt(variance + 1e-5)
            y = tf.matmul(x, self.dense) + self.bias
            e = tf.gather(self.embedding, tf.range(3))
            y += tf.reduce_mean(tf.nn.gelu(e) + tf.math.erf(e) + tf.tanh(e) + tf.nn.gelu(e, approximate=True))
            y = tf.concat([y, tf.zeros([tf.shape(y)[0], 0])], 1)
            if extra is not None:
                y = extra(y)
            return {"logits": tf.nn.softmax(y)}

    module = Digits()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})
    return directory


def test_course_tf_module_savedmodel_is_accepted(tf, tmp_path):
    refuse_unsafe_savedmodel(module_savedmodel(tf, tmp_path / "digits_savedmodel"))


def test_onnx_converter_style_savedmodel_is_accepted(tf, tmp_path):
    """Modules 04 and 05 convert ONNX graphs into a tf.Module of tf.constant weights and handler ops."""

    class Converted(tf.Module):
        def __init__(self):
            super().__init__()
            self.weight = tf.constant(tf.random.normal([32, 2], seed=4))
            self.embedding = tf.constant(tf.random.normal([12, 32], seed=5))

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64, name="tokens")])
        def serve(self, tokens):
            mask = tf.logical_not(tf.equal(tokens, 0))
            size = tf.shape(self.embedding, out_type=tokens.dtype)[0]
            x = tf.gather(self.embedding, tf.where(tokens < 0, tokens + size, tokens), axis=0)
            shape = tf.shape(x, out_type=tf.int64)
            x = tf.reshape(x, tf.stack([tf.reduce_prod(shape[:1]), shape[1], -1]))
            x = tf.transpose(x, [0, 1, 2]) * tf.math.rsqrt(tf.reduce_mean(tf.square(x), -1, keepdims=True) + 1e-5)
            x = tf.nn.gelu(tf.squeeze(tf.expand_dims(x, 1), 1))
            weights = tf.cast(tf.expand_dims(mask, -1), tf.float32)
            pooled = tf.reduce_sum(x * weights, 1) / tf.maximum(tf.reduce_sum(weights, 1), 1.0)
            logits = tf.matmul(pooled, self.weight) + tf.cast(tf.truncatediv(tf.size(tokens), 7), tf.float32)
            return {"logits": tf.nn.softmax(logits, axis=-1)}

    module = Converted()
    tf.saved_model.save(module, str(tmp_path / "capstone_savedmodel"), signatures={"serving_default": module.serve})
    refuse_unsafe_savedmodel(tmp_path / "capstone_savedmodel")


def test_keras_export_savedmodels_are_accepted(tf, tmp_path):
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(0)
    convnet = keras.Sequential([  # module 01's digits model
        keras.Input(shape=(64,)), layers.Normalization(mean=[0.0] * 64, variance=[1.0] * 64),
        layers.Reshape((8, 8, 1)), layers.Conv2D(4, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
        layers.Flatten(), layers.Dense(8, activation="relu"), layers.Dropout(0.2), layers.Dense(10, activation="softmax")])
    convnet.export(str(tmp_path / "keras_digits"), verbose=False)
    refuse_unsafe_savedmodel(tmp_path / "keras_digits")

    tokens = keras.Input((None,), dtype="int32", name="tokens")  # module 05's transformer, small
    mask = ops.not_equal(tokens, 0)
    positions = ops.cumsum(ops.ones_like(tokens), axis=1) - 1
    x = layers.Embedding(12, 8)(tokens) + layers.Embedding(16, 8)(positions)
    x = layers.LayerNormalization(epsilon=1e-5)(x + layers.MultiHeadAttention(2, 4)(
        x, x, attention_mask=ops.expand_dims(mask, 1)))
    x = layers.LayerNormalization(epsilon=1e-5)(x + layers.Dense(8)(layers.Dense(16, activation="gelu")(x)))
    weights = ops.expand_dims(ops.cast(mask, "float32"), -1)
    transformer = keras.Model(tokens, layers.Dense(2)(ops.sum(x * weights, axis=1) / ops.sum(weights, axis=1)))
    transformer.export(str(tmp_path / "keras_transformer"), verbose=False)
    refuse_unsafe_savedmodel(tmp_path / "keras_transformer")


@pytest.mark.parametrize("name, side_effect, op, words", [
    ("write_file", lambda tf, out: lambda y: (tf.io.write_file(str(out), tf.strings.as_string(y[0, 0])), y)[1],
     "WriteFile", "reads or writes files"),
    ("read_file", lambda tf, out: lambda y: y + tf.cast(tf.strings.length(tf.io.read_file(str(out))), tf.float32),
     "ReadFile", "reads or writes files"),
    ("py_function", lambda tf, out: lambda y: tf.py_function(lambda t: t, [y], tf.float32),
     "EagerPyFunc", "runs Python code"),
    ("numpy_function", lambda tf, out: lambda y: tf.numpy_function(lambda t: t, [y], tf.float32),
     "PyFunc", "runs Python code"),
    ("print", lambda tf, out: lambda y: (tf.print(y, output_stream=f"file://{out}"), y)[1],
     "PrintV2", "reads or writes files"),
], ids=["write_file", "read_file", "py_function", "numpy_function", "print-to-file"])
def test_savedmodel_with_side_effects_is_refused(tf, tmp_path, name, side_effect, op, words):
    directory = module_savedmodel(tf, tmp_path / "digits_savedmodel", side_effect(tf, tmp_path / "leak.txt"))
    with pytest.raises(UnsafeArtifact) as refused:
        refuse_unsafe_savedmodel(directory)
    message = str(refused.value)
    assert message.startswith("digits_savedmodel ") and f"uses {op} " in message and words in message, message
    assert "serving_default" in message and "\n" not in message
    assert not (tmp_path / "leak.txt").exists()


def test_savedmodel_whose_signature_calls_the_save_function_is_refused(tf, tmp_path):
    """The saver's SaveV2 is admitted only in the function saver_def names, called only by the saver's own node."""
    from tensorflow.core.protobuf import saved_model_pb2

    directory = module_savedmodel(tf, tmp_path / "digits_savedmodel")
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((directory / "saved_model.pb").read_bytes())
    graph = saved_model.meta_graphs[0].graph_def
    saver = saved_model.meta_graphs[0].saver_def
    save_function = next(n for n in graph.node if n.name == saver.save_tensor_name.split(":")[0]).attr["f"].func.name
    serve = next(f for f in graph.library.function if "signature_wrapper" not in f.signature.name
                 and "traced" not in f.signature.name)
    call = serve.node_def.add(name="sneaky", op="StatefulPartitionedCall")
    call.attr["f"].func.name = save_function
    (directory / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    with pytest.raises(UnsafeArtifact, match="calls the save function"):
        refuse_unsafe_savedmodel(directory)

    # and SaveV2 moved out of the saver into the serving function is refused by name
    saved_model.ParseFromString((directory / "saved_model.pb").read_bytes())
    serve = next(f for f in saved_model.meta_graphs[0].graph_def.library.function
                 if f.signature.name == serve.signature.name)
    del serve.node_def[-1]
    serve.node_def.add(name="save", op="SaveV2")
    (directory / "saved_model.pb").write_bytes(saved_model.SerializeToString())
    with pytest.raises(UnsafeArtifact, match="uses SaveV2 .*reads or writes files"):
        refuse_unsafe_savedmodel(directory)


def test_missing_or_broken_savedmodel_is_refused(tmp_path):
    (tmp_path / "empty_savedmodel").mkdir()
    with pytest.raises(UnsafeArtifact, match="empty_savedmodel has no saved_model.pb"):
        refuse_unsafe_savedmodel(tmp_path / "empty_savedmodel")
    (tmp_path / "broken_savedmodel").mkdir()
    (tmp_path / "broken_savedmodel" / "saved_model.pb").write_bytes(b"\xff\xff\xff not a protocol buffer")
    with pytest.raises(UnsafeArtifact, match="cannot be parsed"):
        refuse_unsafe_savedmodel(tmp_path / "broken_savedmodel")
    with pytest.raises(UnsafeArtifact, match="not a folder"):
        refuse_unsafe_savedmodel(tmp_path / "absent")


def test_allow_list_is_math_only():
    side_effects = {"ReadFile", "WriteFile", "PyFunc", "PyFuncStateless", "EagerPyFunc", "MatchingFiles",
                    "PrintV2", "Print", "SaveV2", "RestoreV2", "MergeV2Checkpoints", "TFRecordDataset",
                    "TextLineDataset", "FixedLengthRecordDataset", "ImmutableConst", "InitializeTableFromTextFileV2",
                    "DebugIdentityV2", "WriteSummary", "DecodeProtoV2", "Send", "Recv", "StringJoin"}
    assert not side_effects & ALLOWED_OPS
    assert {"MatMul", "Conv2D", "MaxPool", "Softmax", "Erf", "ResourceGather", "StatefulPartitionedCall"} <= ALLOWED_OPS
