"""What the checker refuses before it opens anything: pickle or opaque objects in a .pt2, side effects in a SavedModel.

Both checks read the artifact as data only (zip members and JSON for a .pt2, protocol buffers for a SavedModel); they
never call torch.export.load, pickle, torch.load or tf.saved_model.load. Each refusal is an UnsafeArtifact whose
message is one line that names the file, what is wrong and how to save it instead.

.pt2 (torch.export.save, torch 2.13). The archive is a zip with one top folder <root>/ holding
    archive_format ("pt2"), archive_version, byteorder, .data/version, .data/serialization_id
    models/<model>.json                             the program: graph, signature, symbolic shapes (JSON)
    data/weights/<model>_weights_config.json        {"config": {fqn: {"path_name", "is_param", "use_pickle",
    data/constants/<model>_constants_config.json                       "tensor_meta"}}}
    data/weights/weight_<i>, data/constants/tensor_<i>  raw tensor bytes (never unpickled)
    data/sample_inputs/<model>.pt                   the example inputs, a torch.save archive (data.pkl inside)
torch.export.load in 2.13 runs code from such an archive in these places, each of which is refused here:
  - a payload whose config says "use_pickle": true is read with torch.load(weights_only=False); so are constants
    named custom_obj_<i> (TorchScript pickler) and opaque_obj_<i> (pickle.loads): "opaque objects";
  - data/weights/<model>.pt and data/constants/<model>.pt (the legacy layout) and data/sample_inputs/<model>.pt go
    through torch.load(weights_only=True) and, when that fails, torch.load(weights_only=False): the legacy files
    are refused, the sample inputs' pickle may name only tensor-rebuilding globals;
  - every "expr_str" of the program (a symbolic shape) is parsed with sympy.sympify, which evals the string;
  - every "guards_code" string is pasted into Python source that ExportedProgram.module() exec()s;
  - a node's "target" is looked up as any attribute under torch., math. or _operator. and called when the
    program runs (torch.ops.aten.save and from_file write and read files);
  - data/aotinductor/ holds compiled native code that load_pt2 dlopens.

SavedModel. Every op type of every meta graph's graph_def and of every function in its function library is checked
against ALLOWED_OPS (math, tensor, control-flow and variable ops). The save/restore functions that
tf.saved_model.save adds need file ops (SaveV2, RestoreV2, MergeV2Checkpoints) and their filename plumbing; see
_saver_functions for the rule that admits them there and nowhere else.
"""
from __future__ import annotations

import ast
import io
import json
import pickletools
import posixpath
import re
import zipfile
from pathlib import Path

__all__ = ["ALLOWED_OPS", "UnsafeArtifact", "refuse_unsafe_pt2", "refuse_unsafe_savedmodel"]


class UnsafeArtifact(Exception):
    """An artifact the checker will not open; the message is one line a learner can act on."""


HOW_TO_SAVE_PT2 = "save with torch.export.save of an exported nn.Module whose weights and constants are tensors"
HOW_TO_SAVE_SAVEDMODEL = ("build the signature from math and tensor operations only (no tf.io, tf.py_function, "
                          "tf.numpy_function, tf.print or tf.data) and save with tf.saved_model.save")


# ================================================================================================================
# .pt2
# ================================================================================================================
# The layout torch 2.13 writes (torch/export/pt2_archive/constants.py mirrors torch/csrc/export/
# pt2_archive_constants.h); spelled out here so that the check does not import torch.
_WEIGHTS_DIR = "data/weights/"
_CONSTANTS_DIR = "data/constants/"
_SAMPLE_INPUTS_DIR = "data/sample_inputs/"
_MODELS_DIR = "models/"
_EXTRA_DIR = "extra/"
_TENSOR_CONSTANT_PREFIX = "tensor_"
_OPAQUE_PREFIXES = ("custom_obj_", "opaque_obj_")  # ScriptObject (torchbind pickler) / any Python object (pickle)
_METADATA_MEMBERS = frozenset({"archive_format", "archive_version", "byteorder", "version", ".format_version",
                               ".storage_alignment", ".data/version", ".data/serialization_id"})
_JSON_LIMIT = 256 * 2**20  # a config or program larger than this is not read (and not accepted)

# Globals the example inputs' pickle may name: what torch.save writes for tuples and dicts of tensors.
_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat",
             "ComplexDouble", "Untyped")
_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
           "complex64", "complex128", "float", "double", "half", "long", "int", "short")
SAFE_PICKLE_GLOBALS = frozenset(
    {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
     ("torch._utils", "_rebuild_parameter"), ("collections", "OrderedDict"), ("torch", "Size"), ("torch", "device"),
     ("torch.storage", "UntypedStorage"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice")}
    | {("torch", f"{kind}Storage") for kind in _STORAGES} | {("torch", dtype) for dtype in _DTYPES})
_REFUSED_PICKLE_OPCODES = frozenset({"INST", "OBJ", "EXT1", "EXT2", "EXT4", "PERSID"})  # PERSID: protocol-0 ids

# Graph node targets. What torch.export.export writes for an ordinary model: torch.ops.aten.*.<overload> (and prims),
# the symbolic-shape helpers of torch/_export/serde/serialize.py's _SYM_OPS, getitem, and a few control-flow
# higher-order ops (their subgraphs are checked like the main graph).
_SYM_TARGETS = frozenset(
    {f"_operator.{name}" for name in ("getitem", "eq", "ne", "le", "ge", "lt", "gt", "neg", "pos", "mul", "add",
                                      "sub", "floordiv", "mod", "pow", "truediv", "and_", "or_", "lshift", "rshift")}
    | {f"torch.{name}" for name in ("sym_not", "sym_int", "sym_float", "sym_ite", "sym_max", "sym_min", "sym_sqrt",
                                    "sym_sum")}
    | {"math.trunc", "math.floor", "math.ceil", "math.sqrt"})
_HIGHER_ORDER_TARGETS = frozenset(
    f"torch.ops.higher_order.{name}" for name in ("cond", "while_loop", "map_impl", "scan", "associative_scan",
                                                  "wrap_with_set_grad_enabled", "wrap_with_autocast"))
# aten operators that touch files or the outside world; an ordinary model never calls them.
_REFUSED_ATEN = frozenset({"save", "from_file", "_print", "warn", "set_", "set_data", "record_stream",
                           "_cufft_set_plan_cache_max_size", "_cufft_clear_plan_cache", "_nested_view_from_buffer",
                           "_nested_view_from_buffer_copy"})
_ATEN_TARGET = re.compile(r"torch\.ops\.(aten|prims)\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)")

# Symbolic shapes: torch writes them with sympy.srepr, e.g. "Mul(Integer(4), Symbol('s27', positive=True,
# integer=True))"; the deserializer gives them to sympy.sympify (an eval). Only calls of these names, numbers,
# identifier-like strings and keyword flags are accepted.
_SYMPY_CALLABLES = frozenset({
    "Symbol", "Dummy", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Max", "Min", "Abs", "Mod", "floor",
    "ceiling", "sqrt", "exp", "log", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "Equality", "Unequality", "StrictLessThan",
    "StrictGreaterThan", "LessThan", "GreaterThan", "And", "Or", "Not", "Xor", "Piecewise", "ExprCondPair",
    "Tuple", "Integers", "Interval",
    # torch/utils/_sympy/functions.py, the deserializer's sympy_functions
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity"})
_SYMPY_OPAQUE = re.compile(r"(OpaqueUnaryFn|BitwiseFn)_[a-z0-9_]+")
_SYMPY_CONSTANTS = frozenset({"oo", "zoo", "nan", "true", "false", "pi", "E", "I", "True", "False", "None"})
_SYMBOL_NAME = re.compile(r"[a-z]+[0-9]+")  # s27, u0, ...: becomes a Symbol
# Symbol('s27'), Float('1.5', precision=53): a name or a number, nothing sympify could read as an expression
_PLAIN_STRING = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")

# Guards: torch writes them like "L['x'].size()[0] == 3" (torch/export/_unlift.py turns them into code it exec()s).
_GUARD_ATTRIBUTES = frozenset({"size", "stride", "storage_offset", "dim", "numel", "shape", "isnan", "inf"})


def refuse_unsafe_pt2(path) -> None:
    """Raise UnsafeArtifact unless `path` is a .pt2 archive that torch.export.load can open without running code.

    Accepts what torch.export.save writes for an ordinary model (parameters, buffers, tensor constants)."""
    path = Path(path)
    name = path.name

    def refuse(why: str):
        raise UnsafeArtifact(f"{name} {why}: {HOW_TO_SAVE_PT2}")

    if not path.is_file():
        raise UnsafeArtifact(f"{name} is missing or not a file: {HOW_TO_SAVE_PT2}")
    if not zipfile.is_zipfile(path):
        refuse("is not a zip archive, so it is not what torch.export.save writes (an older torch.save file is a "
               "pickle, which can run any code)")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        refuse(f"is not a readable zip archive ({exc})")
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if not names:
            refuse("is an empty zip archive")
        if len(set(names)) != len(names):
            duplicate = min({n for n in names if names.count(n) > 1})
            refuse(f"holds {duplicate} twice (a reader could take either copy)")
        root = names[0].split("/", 1)[0]
        members: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            head, _, rest = info.filename.partition("/")
            if head != root or not rest or rest.startswith("/") or ".." in rest.split("/") or "\\" in rest:
                refuse(f"holds {info.filename}, outside the single folder torch.export.save writes")
            members[rest] = info

        def read(member: str, limit: int = _JSON_LIMIT) -> bytes:
            info = members[member]
            if info.file_size > limit:
                refuse(f"holds {root}/{member}, {info.file_size:,} bytes, too large to check")
            return archive.read(info)

        def read_json(member: str):
            try:
                return json.loads(read(member).decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                refuse(f"holds {root}/{member}, which is not valid JSON ({exc})")

        if "archive_format" not in members or read("archive_format", 64) != b"pt2":
            refuse("has no archive_format saying pt2, so it is not an archive torch.export.save wrote")

        models = [m[len(_MODELS_DIR):-len(".json")] for m in members if m.startswith(_MODELS_DIR) and m.endswith(".json")]
        if not models:
            refuse(f"holds no {_MODELS_DIR}<name>.json program")
        allowed = set()
        for model in models:
            weights_config = f"{_WEIGHTS_DIR}{model}_weights_config.json"
            constants_config = f"{_CONSTANTS_DIR}{model}_constants_config.json"
            sample_inputs = f"{_SAMPLE_INPUTS_DIR}{model}.pt"
            for legacy in (f"{_WEIGHTS_DIR}{model}.pt", f"{_CONSTANTS_DIR}{model}.pt"):
                if legacy in members:
                    refuse(f"holds {root}/{legacy}, the legacy layout that torch.export.load unpickles "
                           f"(pickle can run any code)")
            for config_name, base_dir, kind in ((weights_config, _WEIGHTS_DIR, "weight"),
                                                (constants_config, _CONSTANTS_DIR, "constant")):
                if config_name not in members:
                    refuse(f"has no {root}/{config_name}")
                allowed.add(config_name)
                allowed |= {base_dir + p for p in _payloads(read_json(config_name), root, config_name, kind, refuse)}
            allowed.add(f"{_MODELS_DIR}{model}.json")
            _check_program(read_json(f"{_MODELS_DIR}{model}.json"), f"{root}/{_MODELS_DIR}{model}.json", refuse)
            if sample_inputs in members:
                allowed.add(sample_inputs)
                _check_torch_save(read(sample_inputs), f"{root}/{sample_inputs}", refuse)

        for member in members:
            if member in allowed or member in _METADATA_MEMBERS or member.startswith(_EXTRA_DIR):
                continue
            if member.startswith("data/aotinductor/"):
                refuse(f"holds {root}/{member}, compiled native code (AOTInductor) that loading would run")
            base = posixpath.basename(member)
            if base.startswith(_OPAQUE_PREFIXES):
                refuse(f"holds {root}/{member}, an opaque object (custom class or Python object) that torch "
                       f"unpickles (pickle can run any code)")
            if member.endswith((".pkl", ".pt", ".pth", ".pickle")):
                refuse(f"holds {root}/{member}, a pickle file (pickle can run any code)")
            refuse(f"holds {root}/{member}, which torch.export.save does not write for a program")


def _payloads(config, root: str, config_name: str, kind: str, refuse) -> set[str]:
    """The raw payload files a weights/constants config names; refuses pickled entries and opaque objects."""
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        refuse(f"holds {root}/{config_name} without a config mapping")
    payloads = set()
    for fqn, meta in entries.items():
        if not isinstance(meta, dict) or not isinstance(meta.get("path_name"), str):
            refuse(f"holds {root}/{config_name} whose entry {fqn!r} is malformed")
        member = meta["path_name"]
        where = f"{root}/{(_WEIGHTS_DIR if kind == 'weight' else _CONSTANTS_DIR)}{member}"
        if member.startswith(_OPAQUE_PREFIXES):
            refuse(f"carries the opaque object {fqn!r} ({where}): torch would unpickle it (pickle can run any code)")
        if meta.get("use_pickle") is not False:
            refuse(f"asks torch to unpickle {where} for the {kind} {fqn!r} ({config_name} says use_pickle; "
                   f"pickle can run any code)")
        if kind == "constant" and not member.startswith(_TENSOR_CONSTANT_PREFIX):
            refuse(f"has the constant {fqn!r} stored as {where}, which is not a tensor")
        if not isinstance(meta.get("tensor_meta"), dict) or "/" in member or member in ("", ".", ".."):
            refuse(f"holds {root}/{config_name} whose entry {fqn!r} is malformed")
        payloads.add(member)
    return payloads


def _check_program(program, where: str, refuse) -> None:
    """The serialized ExportedProgram: node targets, symbolic-shape expressions, guards, custom objects."""
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        refuse(f"holds {where}, which is not an exported program")
    guards = program.get("guards_code") or []
    if not isinstance(guards, list):
        refuse(f"holds {where} whose guards_code is malformed")
    for guard in guards:
        if not isinstance(guard, str) or not _is_safe_guard(guard):
            refuse(f"holds a guard in {where} that is not a shape check ({str(guard)[:80]!r}): torch would run it "
                   f"as Python code")

    def walk(value, key=None):
        if isinstance(value, dict):
            if isinstance(value.get("target"), str) and "inputs" in value:
                _check_target(value["target"], where, refuse)
            for k, v in value.items():
                # Field names as torch/_export/serde/schema.py spells them; a tensor that happens to bear one of these
                # names is a key of tensor_values whose value is a dict, and is walked like any other value.
                if k == "expr_str" and isinstance(v, str):
                    if not _is_safe_sympy(v):
                        refuse(f"holds a symbolic shape in {where} that is not a sympy expression ({v[:80]!r}): "
                               f"torch would evaluate it as Python code")
                elif k == "as_operator" and isinstance(v, str):
                    _check_target(v, where, refuse)
                elif (k == "as_custom_obj" and v) or (k == "custom_obj" and isinstance(v, dict)
                                                      and "custom_obj_name" in v):
                    refuse(f"carries an opaque object in {where} (a custom class constant that torch unpickles; "
                           f"pickle can run any code)")
                elif k == "custom_obj_values" and "nodes" in value and v:
                    refuse(f"carries opaque objects in {where} ({', '.join(sorted(map(str, v))[:3])}): torch "
                           f"unpickles them (pickle can run any code)")
                else:
                    walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)

    walk(program)


def _check_target(target: str, where: str, refuse) -> None:
    match = _ATEN_TARGET.fullmatch(target)
    if match:
        if match.group(2) in _REFUSED_ATEN or re.search(r"file|save|load|print|pickle", match.group(2)):
            refuse(f"calls {target} in {where}, an operator that touches files or the console, not a tensor "
                   f"computation")
        return
    if target in _SYM_TARGETS or target in _HIGHER_ORDER_TARGETS:
        return
    refuse(f"calls {target} in {where}, which is not a tensor operator (torch.ops.aten); torch.export.load would "
           f"call whatever that name points to")


def _names_ok(tree, name_ok, call_ok) -> bool:
    allowed = (ast.Expression, ast.Call, ast.Name, ast.Constant, ast.keyword, ast.Load, ast.UnaryOp, ast.USub,
               ast.UAdd, ast.Tuple, ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not call_ok(node) or any(isinstance(a, ast.Starred) for a in node.args):
                return False
        elif isinstance(node, ast.Name):
            if not name_ok(node.id):
                return False
        elif isinstance(node, ast.keyword):
            if node.arg is None:
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not _PLAIN_STRING.fullmatch(node.value):
                return False
            if not isinstance(node.value, (str, int, float, bool, type(None))):
                return False
        elif not isinstance(node, allowed):
            return False
    return True


def _is_safe_sympy(text: str) -> bool:
    if len(text) > 100_000 or "__" in text:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False

    def callable_name(identifier: str) -> bool:
        return identifier in _SYMPY_CALLABLES or bool(_SYMPY_OPAQUE.fullmatch(identifier))

    def name_ok(identifier: str) -> bool:
        return callable_name(identifier) or identifier in _SYMPY_CONSTANTS or bool(_SYMBOL_NAME.fullmatch(identifier))

    def call_ok(call: ast.Call) -> bool:
        return isinstance(call.func, ast.Name) and callable_name(call.func.id)

    return _names_ok(tree, name_ok, call_ok)


def _is_safe_guard(text: str) -> bool:
    # The guard lands inside generated source, once as code and once inside a "..." message: no quotes of that kind,
    # no line breaks, no backslashes, one expression made of comparisons of sizes and numbers.
    if len(text) > 10_000 or any(c in text for c in '"#\\\n\r') or "__" in text:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in ("L", "math", "inf", "True", "False"):
                return False
        elif isinstance(node, ast.Attribute):
            if node.attr not in _GUARD_ATTRIBUTES:
                return False
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Attribute) or node.keywords:
                return False
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, str) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", node.value):
                return False
        elif not isinstance(node, (ast.Expression, ast.Compare, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Subscript,
                                   ast.Slice, ast.Load, ast.cmpop, ast.boolop, ast.operator, ast.unaryop, ast.Tuple)):
            return False
    return True


def _check_torch_save(data: bytes, where: str, refuse) -> None:
    """A torch.save archive (zip with <root>/data.pkl) whose pickle names only tensor-rebuilding globals."""
    if not data:
        return
    if not data.startswith(b"PK\x03\x04"):
        refuse(f"holds {where}, which is not a torch.save archive (a bare pickle can run any code)")
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
        names = inner.namelist()
    except (zipfile.BadZipFile, ValueError) as exc:
        refuse(f"holds {where}, which is not a readable torch.save archive ({exc})")
    if len(set(names)) != len(names):
        refuse(f"holds {where}, a torch.save archive with a member stored twice")
    root = names[0].split("/", 1)[0] if names else ""
    pickles = [n for n in names if not re.fullmatch(re.escape(root) + r"/(data/[0-9]+|byteorder|version|"
                                                    r"\.format_version|\.storage_alignment|\.data/[A-Za-z_]+)", n)]
    if pickles != [f"{root}/data.pkl"]:
        refuse(f"holds {where}, a torch.save archive with unexpected members ({', '.join(pickles[:3])})")
    problem = _pickle_problem(inner.read(pickles[0]))
    if problem:
        refuse(f"holds {where}, whose pickle {problem} (torch.export.load falls back to full unpickling, which can "
               f"run any code)")


def _pickle_problem(stream: bytes) -> str | None:
    """Why this pickle could do more than rebuild tensors, tuples and dicts; None if it cannot. Nothing is loaded."""
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            name = opcode.name
            if name in _REFUSED_PICKLE_OPCODES:
                return f"uses the {name} opcode"
            if name == "GLOBAL":
                module, _, attribute = str(arg).partition(" ")
                if (module, attribute) not in SAFE_PICKLE_GLOBALS:
                    return f"imports {module}.{attribute}"
            elif name == "STACK_GLOBAL" and (len(strings) < 2 or (strings[-2], strings[-1]) not in SAFE_PICKLE_GLOBALS):
                return f"imports {'.'.join(strings[-2:]) or 'a name it computes'}"
            # STACK_GLOBAL takes its module and name from the stack: only strings pushed right before it count.
            if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                strings.append(arg)
            elif name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                strings = []
    except Exception as exc:  # noqa: BLE001 - a stream pickletools cannot walk is refused, not opened
        return f"cannot be read ({exc})"
    return None


# ================================================================================================================
# SavedModel
# ================================================================================================================
# Op types an inference graph may use: arithmetic, tensor shaping, neural-network kernels, linear algebra, random
# numbers, control flow (its branches and bodies are library functions, checked too) and resource variables. None
# of them touches a file, a process, the network or Python. Derived from the ops of the course's SavedModels (a
# tf.Module with a tf.function signature, the ONNX-to-TensorFlow converters of modules 04 and 05, Keras 3
# model.export) plus the common math ops around them.
ALLOWED_OPS = frozenset({
    # graph plumbing and control flow
    "Const", "Identity", "IdentityN", "NoOp", "Placeholder", "PlaceholderV2", "PlaceholderWithDefault", "StopGradient",
    "PreventGradient", "EnsureShape", "Assert", "CheckNumerics", "Snapshot", "GuaranteeConst", "ControlTrigger",
    "If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase", "PartitionedCall",
    "StatefulPartitionedCall", "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond", "RefIdentity",
    "OptionalNone", "FakeParam",
    # variables and other in-memory resources
    "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "AssignAddVariableOp", "AssignSubVariableOp",
    "VarIsInitializedOp", "VariableShape", "ResourceGather", "ResourceGatherNd", "DestroyResourceOp",
    "DisableCopyOnRead", "VariableV2", "Variable", "Assign", "AssignAdd", "AssignSub", "IsVariableInitialized",
    "ResourceScatterUpdate", "ResourceScatterAdd", "ResourceScatterSub", "ResourceScatterMul", "ResourceScatterDiv",
    "ResourceScatterMin", "ResourceScatterMax", "ResourceScatterNdUpdate", "ResourceScatterNdAdd",
    "ResourceStridedSliceAssign",
    "TensorListReserve", "TensorListFromTensor", "TensorListSetItem", "TensorListGetItem", "TensorListStack",
    "TensorListElementShape", "TensorListLength", "TensorListPushBack", "TensorListPopBack", "TensorListGather",
    "TensorListScatterIntoExistingList", "TensorListConcatV2", "TensorListSplit", "TensorListResize",
    "EmptyTensorList",
    # shapes, slicing, gathering, reordering
    "Shape", "ShapeN", "Size", "Rank", "Reshape", "Squeeze", "ExpandDims", "Transpose", "ConjugateTranspose", "Pack",
    "Unpack", "Concat", "ConcatV2", "ConcatOffset", "Split", "SplitV", "Slice", "StridedSlice",
    "TensorStridedSliceUpdate", "Tile", "Fill", "ZerosLike", "OnesLike", "Empty", "Range", "LinSpace", "Pad", "PadV2",
    "MirrorPad", "Gather", "GatherV2", "GatherNd", "ScatterNd", "TensorScatterUpdate", "TensorScatterAdd",
    "TensorScatterSub", "TensorScatterMax", "TensorScatterMin", "Where", "Select", "SelectV2", "Reverse", "ReverseV2",
    "ReverseSequence", "Roll", "OneHot", "BroadcastTo", "BroadcastArgs", "BroadcastGradientArgs", "Cast", "Bitcast",
    "Diag", "DiagPart", "MatrixDiag", "MatrixDiagV2", "MatrixDiagV3", "MatrixDiagPart", "MatrixDiagPartV2",
    "MatrixDiagPartV3", "MatrixSetDiag", "MatrixSetDiagV2", "MatrixSetDiagV3", "MatrixBandPart", "InvertPermutation",
    "DepthToSpace", "SpaceToDepth", "SpaceToBatch", "SpaceToBatchND", "BatchToSpace", "BatchToSpaceND", "Unique",
    "UniqueV2", "UniqueWithCounts", "UniqueWithCountsV2", "TopK", "TopKV2", "NthElement", "ArgMax", "ArgMin",
    "Cumsum", "Cumprod", "CumulativeLogsumexp", "Bucketize", "LowerBound", "UpperBound", "ClipByValue",
    "DynamicPartition", "DynamicStitch", "ParallelDynamicStitch", "UnravelIndex", "ListDiff", "Bincount",
    "DenseBincount", "HistogramFixedWidth", "SegmentSum", "SegmentMean", "SegmentMax", "SegmentMin", "SegmentProd",
    "UnsortedSegmentSum", "UnsortedSegmentMax", "UnsortedSegmentMin", "UnsortedSegmentProd", "DataFormatDimMap",
    "DataFormatVecPermute", "InplaceAdd", "InplaceSub", "InplaceUpdate", "Einsum", "ExtractImagePatches",
    "ExtractVolumePatches",
    # element-wise math, comparisons, logic, reductions
    "Abs", "Acos", "Acosh", "Add", "AddN", "AddV2", "AccumulateNV2", "All", "Any", "Angle", "ApproximateEqual", "Asin",
    "Asinh", "Atan", "Atan2", "Atanh", "Betainc", "BesselI0", "BesselI0e", "BesselI1", "BesselI1e", "BesselJ0",
    "BesselJ1", "BesselK0", "BesselK0e", "BesselK1", "BesselK1e", "BesselY0", "BesselY1", "BitwiseAnd", "BitwiseOr",
    "BitwiseXor", "Invert", "LeftShift", "RightShift", "PopulationCount", "Ceil", "Complex", "ComplexAbs", "Conj",
    "Cos", "Cosh", "Cross", "Dawsn", "Digamma", "Div", "DivNoNan", "Equal", "Erf", "Erfc", "Erfinv", "EuclideanNorm",
    "Exp", "Expint", "Expm1", "Floor", "FloorDiv", "FloorMod", "FresnelCos", "FresnelSin", "Greater", "GreaterEqual",
    "Igamma", "Igammac", "Imag", "Inv", "IsFinite", "IsInf", "IsNan", "Less", "LessEqual", "Lgamma", "Log", "Log1p",
    "LogicalAnd", "LogicalNot", "LogicalOr", "Max", "Maximum", "Mean", "Min", "Minimum", "Mod", "Mul", "MulNoNan",
    "Ndtri", "Neg", "NextAfter", "NotEqual", "Polygamma", "Pow", "Prod", "Real", "RealDiv", "Reciprocal", "Rint",
    "Round", "Rsqrt", "Sigmoid", "Sign", "Sin", "Sinh", "Spence", "Sqrt", "Square", "SquaredDifference", "Sub", "Sum",
    "Tan", "Tanh", "TruncateDiv", "TruncateMod", "Xdivy", "Xlog1py", "Xlogy", "Zeta",
    # linear algebra and spectral
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "SparseMatMul", "MatrixInverse", "MatrixDeterminant",
    "LogMatrixDeterminant", "Cholesky", "Qr", "Svd", "SelfAdjointEigV2", "Eig", "MatrixSolve", "MatrixSolveLs",
    "MatrixTriangularSolve", "BandedTriangularSolve", "TridiagonalSolve", "TridiagonalMatMul", "Lu",
    "MatrixExponential", "MatrixLogarithm", "MatrixSquareRoot", "FFT", "FFT2D", "FFT3D", "IFFT", "IFFT2D", "IFFT3D",
    "RFFT", "RFFT2D", "RFFT3D", "IRFFT", "IRFFT2D", "IRFFT3D",
    # neural-network kernels
    "Softmax", "LogSoftmax", "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign", "BiasAdd",
    "BiasAddV1", "L2Loss", "LRN", "Conv", "Conv2D", "Conv3D", "DepthwiseConv2dNative", "Conv2DBackpropInput",
    "Conv2DBackpropInputV2", "Conv3DBackpropInputV2", "DepthwiseConv2dNativeBackpropInput", "Dilation2D", "MaxPool",
    "MaxPoolV2", "MaxPool3D", "MaxPoolWithArgmax", "AvgPool", "AvgPool3D", "FractionalMaxPool", "FractionalAvgPool",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "BatchNormWithGlobalNormalization", "FusedPadConv2D",
    "FusedResizeAndPadConv2D", "ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea",
    "ScaleAndTranslate", "CropAndResize", "InTopK", "InTopKV2", "SoftmaxCrossEntropyWithLogits",
    "SparseSoftmaxCrossEntropyWithLogits", "NonMaxSuppressionV3", "NonMaxSuppressionV4", "NonMaxSuppressionV5",
    "CTCLoss", "CTCLossV2",
    # gradients (saved with custom gradients) and random numbers
    "ReluGrad", "Relu6Grad", "EluGrad", "SeluGrad", "LeakyReluGrad", "SoftplusGrad", "SoftsignGrad", "SigmoidGrad",
    "TanhGrad", "RsqrtGrad", "SqrtGrad", "ReciprocalGrad", "BiasAddGrad", "MaxPoolGrad", "MaxPoolGradV2",
    "AvgPoolGrad", "Conv2DBackpropFilter", "FusedBatchNormGradV3", "StridedSliceGrad",
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "RandomShuffle", "Multinomial",
    "StatelessRandomUniform", "StatelessRandomUniformInt", "StatelessRandomNormal", "StatelessTruncatedNormal",
    "StatelessMultinomial", "StatelessRandomUniformV2", "StatelessRandomUniformIntV2", "StatelessRandomNormalV2",
    "StatelessTruncatedNormalV2", "StatelessRandomUniformFullIntV2", "StatelessRandomGetKeyCounter",
    "StatelessRandomGetAlg", "StatelessRandomGetKeyCounterAlg", "RngReadAndSkip", "RngSkip",
})

# The saver's file plumbing: admitted only in the save / restore function that the meta graph's saver_def names.
SAVE_MACHINERY_OPS = frozenset({"SaveV2", "MergeV2Checkpoints", "ShardedFilename", "StringJoin",
                                "StaticRegexFullMatch"})
RESTORE_MACHINERY_OPS = frozenset({"RestoreV2"})

# Names that say what a refused op does, for the message (the decision itself is the allow-list above).
_PYTHON_OPS = re.compile(r"PyFunc|EagerPyFunc|Generator")
_FILE_OPS = re.compile(r"File|Reader|Writer|Save|Restore|Checkpoint|Record|Dataset|Summary|Matching|ImmutableConst|"
                       r"LoadAndRemap|Vocab|Proto|Sql|LMDB|Snapshot|Print|Debug")
_NETWORK_OPS = re.compile(r"^(Send|Recv|_Send|_Recv|_HostSend|_HostRecv)$|Collective|Rpc|DataService|TPU|Nccl|Socket|"
                          r"Remote|Process|Exec|System")


def _what_it_does(op: str) -> tuple[int, str]:
    """(how bad, what it does) for a refused op: Python first, then the network, then files, then the rest."""
    if _PYTHON_OPS.search(op):
        return 0, "runs Python code (tf.py_function / tf.numpy_function) that the checker cannot inspect"
    if _NETWORK_OPS.search(op):
        return 1, "talks to other processes or the network"
    if _FILE_OPS.search(op):
        return 2, "reads or writes files (or streams)"
    return 3, "is not one of the math and tensor operations the checker accepts"


def _called_functions(node, library: set[str]) -> set[str]:
    """Library functions a NodeDef calls: function-valued attrs (f, then_branch, body, ...) and function ops."""
    called = {node.op} & library
    for value in node.attr.values():
        if value.HasField("func"):
            called.add(value.func.name)
        if value.HasField("list"):
            called.update(f.name for f in value.list.func)
    return called


def _saver_functions(meta_graph, library: set[str], refuse) -> dict[str, frozenset]:
    """{function name: extra ops it may use} for the save and restore functions of the meta graph's saver.

    The rule. tf.saved_model.save writes the saver as two graph nodes, a StatefulPartitionedCall named by
    saver_def.save_tensor_name (calling __inference__traced_save_*) and one named by saver_def.restore_op_name
    (calling __inference__traced_restore_*), both fed the saver_def.filename_tensor_name placeholder. Those two
    functions, and only they, may use the saver's ops: SAVE_MACHINERY_OPS in the save function, RESTORE_MACHINERY_OPS
    in the restore function; everything else in them must still be in ALLOWED_OPS. Neither function may be called
    from anywhere else (a signature that calls the save function with a path of its own would write files), the
    calling nodes must pass the loader's filename placeholder, and RestoreV2 must read the prefix the restore
    function was given (its first argument), so that restoring reads only the checkpoint the loader points at.
    The save function runs only when someone saves the loaded model again, which the checker never does.
    Signatures and every other function, reachable or not, get ALLOWED_OPS alone, so no file op can hide there.
    """
    saver = meta_graph.saver_def
    if not saver.save_tensor_name and not saver.restore_op_name:
        return {}
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    filename_node = saver.filename_tensor_name.split(":")[0]
    if filename_node not in nodes or nodes[filename_node].op not in ("Placeholder", "PlaceholderWithDefault"):
        refuse("has a saver whose filename is not a placeholder the loader feeds")
    roles = {}
    for tensor, role, extra in ((saver.save_tensor_name, "save", SAVE_MACHINERY_OPS),
                                (saver.restore_op_name, "restore", RESTORE_MACHINERY_OPS)):
        node = nodes.get(tensor.split(":")[0].lstrip("^"))
        if node is None:
            continue
        if node.op not in ("StatefulPartitionedCall", "PartitionedCall") or not node.attr["f"].func.name:
            refuse(f"has a {role} step made of graph ops ({node.op}) instead of the function tf.saved_model.save "
                   f"writes")
        if not node.input or node.input[0].split(":")[0] != filename_node:
            refuse(f"has a {role} function that is not given the loader's checkpoint path")
        roles[node.attr["f"].func.name] = (role, extra, node.name)
    # Nothing but the saver's own nodes may call the saver's functions.
    for caller, callees in _call_sites(meta_graph, library):
        for function in callees & roles.keys():
            if caller != ("graph", roles[function][2]):
                where = caller[1] if caller[0] == "function" else f"the graph node {caller[1]}"
                refuse(f"calls the {roles[function][0]} function {function} from {where}, so it could write or "
                       f"read checkpoint files outside the saver")
    functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    for function, (role, _, _) in roles.items():
        if role == "restore" and function in functions:
            fdef = functions[function]
            first = fdef.signature.input_arg[0].name if fdef.signature.input_arg else None
            for node in fdef.node_def:
                if node.op == "RestoreV2" and (not node.input or node.input[0].split(":")[0] != first):
                    refuse(f"has a restore function {function} whose RestoreV2 reads a path of its own instead of "
                           f"the checkpoint the loader gives it")
    return {function: extra for function, (_, extra, _) in roles.items()}


def _call_sites(meta_graph, library: set[str]):
    for node in meta_graph.graph_def.node:
        yield ("graph", node.name), _called_functions(node, library)
    for function in meta_graph.graph_def.library.function:
        called = set()
        for node in function.node_def:
            called |= _called_functions(node, library)
        yield ("function", function.signature.name), called


def _signature_owners(meta_graph, library: set[str]) -> dict[str, str]:
    """{function name: the first signature that reaches it}, for messages."""
    nodes = {node.name: node for node in meta_graph.graph_def.node}
    functions = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    owners: dict[str, str] = {}
    for signature_name, signature in meta_graph.signature_def.items():
        stack = []
        for tensor in list(signature.outputs.values()):
            node = nodes.get(tensor.name.split(":")[0].lstrip("^"))
            if node is not None:
                stack.extend(_called_functions(node, library))
        while stack:
            name = stack.pop()
            if name in owners or name not in functions:
                continue
            owners[name] = signature_name
            for node in functions[name].node_def:
                stack.extend(_called_functions(node, library))
    return owners


def refuse_unsafe_savedmodel(directory) -> None:
    """Raise UnsafeArtifact unless every op of the SavedModel in `directory` is a math/tensor/control/variable op
    (the saver's file ops admitted only where the saver uses them: see _saver_functions)."""
    directory = Path(directory)
    name = directory.name or str(directory)
    pb = directory / "saved_model.pb"

    def refuse(why: str):
        raise UnsafeArtifact(f"{name} {why}: {HOW_TO_SAVE_SAVEDMODEL}")

    if not directory.is_dir():
        raise UnsafeArtifact(f"{name} is not a folder: a SavedModel is the folder tf.saved_model.save writes")
    if not pb.is_file():
        raise UnsafeArtifact(f"{name} has no saved_model.pb, so it is not a SavedModel (tf.saved_model.save writes "
                             f"saved_model.pb; a saved_model.pbtxt is not accepted)")
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(pb.read_bytes())
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise UnsafeArtifact(f"{name}/saved_model.pb cannot be parsed as a SavedModel ({exc}): save it again with "
                             f"tf.saved_model.save") from None
    if not saved_model.meta_graphs:
        raise UnsafeArtifact(f"{name}/saved_model.pb holds no graph: save it again with tf.saved_model.save")

    refused = []  # (how bad, op, where)
    for meta_graph in saved_model.meta_graphs:
        library = {f.signature.name for f in meta_graph.graph_def.library.function}
        saver_extra = _saver_functions(meta_graph, library, refuse)
        owners = _signature_owners(meta_graph, library)
        for node in meta_graph.graph_def.node:
            if node.op not in ALLOWED_OPS and node.op not in library:
                refused.append((_what_it_does(node.op)[0], node.op, f"its graph node {node.name} is a {node.op}"))
        for function in meta_graph.graph_def.library.function:
            extra = saver_extra.get(function.signature.name, frozenset())
            owner = owners.get(function.signature.name)
            for node in function.node_def:
                if node.op in ALLOWED_OPS or node.op in extra or node.op in library:
                    continue
                where = (f"its signature '{owner}' uses {node.op} (in {function.signature.name})" if owner
                         else f"its function {function.signature.name} uses {node.op}")
                refused.append((_what_it_does(node.op)[0], node.op, where))
    if refused:
        refused.sort(key=lambda entry: entry[0])
        _, op, where = refused[0]
        others = sorted({entry[1] for entry in refused} - {op})
        also = f" (also refused: {', '.join(others[:5])}{', ...' if len(others) > 5 else ''})" if others else ""
        refuse(f"is unsafe: {where}, which {_what_it_does(op)[1]}{also}")
