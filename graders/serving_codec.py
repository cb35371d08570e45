"""The reference codec for polyglot_lab.serving: TensorFlow Serving's REST request and response formats, as its
documentation gives them (https://www.tensorflow.org/tfx/serving/api_rest, "Predict API"):

    rows     {"instances": [row, ...]}  -> {"predictions": ...}   a row is the input's value, or, named, an object
                                                                  with one key per input (required with several)
    columns  {"inputs": tensor}         -> {"outputs": ...}       one input's whole tensor, or an object with one
             {"inputs": {name: tensor}}                           key per input, each with its own batch size

JSON values map to the signature's dtypes as TF Serving's "JSON mapping" table says: numbers for the floats (an
integer is a number too) and integers (whole numbers only), true/false for bool, strings or {"b64": ...} for string.
Beyond TF Serving, NaN, ±Infinity and numbers outside the input's dtype are refused (400), and so are unknown input
names. The server reads "signature_name" and hands over that signature's inputs. `make serve` uses this codec;
module 04's learners write their own to the same interface (the masters' solution is a shorter one)."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import numpy as np

from polyglot_lab.serving import FLOATS, INTEGERS, BadRequest, check_range

MAX_BATCH = 1024


def request_to_tensors(body: bytes, inputs: dict) -> tuple[dict[str, np.ndarray], str]:
    """The feed for the signature's inputs, and the layout the answer must use."""
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, 5000 digits; nested too deep
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object with 'instances' (rows) or 'inputs' (columns)")
    if ("instances" in request) == ("inputs" in request):
        raise BadRequest("give exactly one of 'instances' (rows) or 'inputs' (columns)")
    names = list(inputs)
    if "instances" in request:
        columns, layout = row_columns(request["instances"], names), "row"
    else:
        columns, layout = input_columns(request["inputs"], names), "columnar"
    for name in names:
        if isinstance(columns[name], list) and len(columns[name]) > MAX_BATCH:
            raise BadRequest(f"a batch of {len(columns[name])} rows is over the limit of {MAX_BATCH}")
    return {name: to_array(name, columns[name], inputs[name]) for name in names}, layout


def named(value: Any) -> bool:
    """An object of named inputs (not a {"b64": ...} string)."""
    return isinstance(value, dict) and not (list(value) == ["b64"] and isinstance(value["b64"], str))


def check_names(given: dict, names: list[str], where: str) -> None:
    unknown, missing = sorted(map(str, set(given) - set(names))), sorted(set(names) - set(given))
    if unknown or missing:
        raise BadRequest(f"{where}: the inputs must be {names}" + (f"; unknown: {unknown}" if unknown else "")
                         + (f"; missing: {missing}" if missing else ""))


def row_columns(rows: Any, names: list[str]) -> dict[str, Any]:
    """Each input's rows, from "instances": a list of values (one input), or of objects naming every input."""
    if not isinstance(rows, list) or not rows:
        raise BadRequest("'instances' must be a non-empty list of rows")
    if named(rows[0]):
        for i, row in enumerate(rows):
            if not named(row):
                raise BadRequest(f"instance {i} is not an object: when the first instance names its inputs, all do")
            check_names(row, names, f"instance {i}")
        return {name: [row[name] for row in rows] for name in names}
    if len(names) > 1:
        raise BadRequest(f"with several inputs, each instance is an object with keys {names}")
    if any(named(row) for row in rows):
        raise BadRequest("the instances mix objects and values: give every row as a value, or every row as an object")
    return {names[0]: rows}


def input_columns(given: Any, names: list[str]) -> dict[str, Any]:
    """Each input's tensor, from "inputs": the one input's tensor, or an object naming every input."""
    if named(given):
        check_names(given, names, "'inputs'")
        return given
    if len(names) > 1:
        raise BadRequest(f"with several inputs, 'inputs' is an object with keys {names}")
    return {names[0]: given}


def nested_shape(name: str, value: Any) -> tuple[tuple[int, ...], list]:
    """The shape of a nested list and its leaves in order, or BadRequest if it is ragged."""
    shape: list[int] = []
    level = [value]
    while level and all(isinstance(v, list) for v in level):
        size = len(level[0])
        if any(len(v) != size for v in level):
            raise BadRequest(f"'{name}' is ragged: its rows have different lengths")
        shape.append(size)
        level = [item for v in level for item in v]
    if any(isinstance(v, list) for v in level):
        raise BadRequest(f"'{name}' is ragged: its rows have different lengths")
    return tuple(shape), level


def json_type(value: Any) -> str:
    kinds = {bool: "true/false", str: "strings", dict: "objects", type(None): "null"}
    return kinds.get(type(value), "numbers")


def to_array(name: str, value: Any, spec: dict) -> np.ndarray:
    """One input's JSON value as an array of the signature's dtype and shape, or BadRequest saying why not."""
    shape, leaves = nested_shape(name, value)
    expected = spec["shape"]
    if expected is not None and (len(shape) != len(expected) or any(d not in (None, n) for d, n in zip(expected, shape))):
        wanted = "(" + ", ".join("n" if d is None else str(d) for d in expected) + ")"
        raise BadRequest(f"'{name}' must have shape {wanted}; it has shape {shape}")
    return leaves_to_array(name, leaves, spec["dtype"]).reshape(shape)


def leaves_to_array(name: str, leaves: list, dtype: str) -> np.ndarray:
    if dtype in FLOATS or dtype in INTEGERS:
        allowed: tuple[type, ...] = (int, float) if dtype in FLOATS else (int,)
        wrong = [v for v in leaves if type(v) not in allowed][:1]  # type(), not isinstance: true is no number
        if wrong:
            what = "floats" if dtype in INTEGERS and type(wrong[0]) is float else json_type(wrong[0])
            raise BadRequest(f"'{name}' must hold {dtype} numbers; it holds {what}")
        if dtype in INTEGERS:  # the range is the server's rule (polyglot_lab.serving.check_range), applied here too
            check_range(name, np.array(leaves, dtype=object), dtype)
            return np.array(leaves, dtype=dtype)
        try:
            wide = np.array(leaves, dtype=np.float64)
        except OverflowError:  # an integer beyond float64's range
            wide = np.array([np.inf])
        check_range(name, wide, dtype)
        array = wide.astype(dtype)
        return array
    if dtype == "bool":
        if any(type(v) is not bool for v in leaves):
            raise BadRequest(f"'{name}' must hold true/false values")
        return np.array(leaves, dtype=bool)
    if dtype == "string":
        return np.array([to_bytes(name, v) for v in leaves], dtype=object)
    raise BadRequest(f"'{name}' is a {dtype} input, which a JSON request cannot fill")


def to_bytes(name: str, value: Any) -> bytes:
    """A string input's value: a JSON string (UTF-8), or binary data as {"b64": "<base64>"}."""
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest(f"'{name}' holds a string that is not valid UTF-8") from None
    if isinstance(value, dict) and not named(value):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"'{name}' holds a b64 value that is not base64") from None
    raise BadRequest(f"'{name}' must hold strings; it holds {json_type(value)}")


def to_json(name: str, value: np.ndarray) -> Any:
    """An output as JSON: strings decoded, binary outputs (a name ending in _bytes) as {"b64": ...}, as TF Serving."""
    array = np.asarray(value)
    if array.dtype.kind not in "OSU":
        return array.tolist()

    def convert(item: Any) -> Any:
        if isinstance(item, list):
            return [convert(v) for v in item]
        if isinstance(item, bytes):
            return {"b64": base64.b64encode(item).decode()} if name.endswith("_bytes") else item.decode("utf-8", "replace")
        return item
    return convert(array.tolist())


def response_from_tensors(outputs: dict[str, np.ndarray], layout: str) -> dict:
    lists = {name: to_json(name, value) for name, value in outputs.items()}
    if layout == "columnar":
        return {"outputs": next(iter(lists.values())) if len(lists) == 1 else lists}
    sizes = {name: np.shape(value)[0] if np.ndim(value) else None for name, value in outputs.items()}
    for name, size in sizes.items():  # a row answer needs a batch, the same for every output (TF Serving's words)
        if size is None:
            raise BadRequest(f"Tensor name: {name} has no shape information")
        if size != next(iter(sizes.values())):
            raise BadRequest(f"Tensor name: {name} has inconsistent batch size: {size} expecting: "
                             f"{next(iter(sizes.values()))}")
    if len(lists) == 1:
        return {"predictions": next(iter(lists.values()))}
    rows = next(iter(sizes.values())) or 0
    return {"predictions": [{name: values[i] for name, values in lists.items()} for i in range(rows)]}
