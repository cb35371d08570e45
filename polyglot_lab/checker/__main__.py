"""The checker's request loop: `python -I -m polyglot_lab.checker`, started by graders/checker.py inside the sandbox.

One request per line on stdin: {"op", "args", "arrays": {name: path of an input .npy}, "out": folder}. The answer is
one line on the original stdout: {"ok": true, "values": {...}, "arrays": [name, ...]} with the arrays saved in order as
<out>/0.npy, 1.npy, ... (no pickle), or {"ok": false, "type", "message", "unsafe"}. Anything else printed (by a
converter, a framework) goes to stderr, so it cannot break the protocol.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() and C-level writes to fd 1 land on stderr from now on
    sys.stdout = sys.stderr
    from polyglot_lab.checker import ops

    for line in requests:
        request = json.loads(line)
        try:
            args = dict(request.get("args", {}))
            args.update({name: np.load(path, allow_pickle=False) for name, path in request.get("arrays", {}).items()})
            values = ops.OPS[request["op"]](**args) or {}
            arrays = {k: v for k, v in values.items() if isinstance(v, np.ndarray)}
            out = Path(request["out"])
            out.mkdir(parents=True, exist_ok=True)
            for index, array in enumerate(arrays.values()):
                np.save(out / f"{index}.npy", np.ascontiguousarray(array), allow_pickle=False)
            answer = {"ok": True, "values": {k: v for k, v in values.items() if k not in arrays},
                      "arrays": list(arrays)}
        except BaseException as exc:  # noqa: BLE001 - the grader must hear about every failure, then the loop goes on
            answer = {"ok": False, "type": type(exc).__name__, "message": ops.message_of(exc),
                      "unsafe": type(exc).__name__ == "UnsafeArtifact"}
        answers.write(json.dumps(answer, default=ops.json_default).encode() + b"\n")
        answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
