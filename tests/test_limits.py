"""Limits on a graded kernel: memory, processes, output size, and nothing left running afterwards. Each hostile
cell runs only under a limit far below what it would take, so a broken limit fails the test long before the
machine suffers (the memory hog stops at 1.2 GB; this machine has 24)."""
import os

import psutil

from conftest import SOLVED_TOY, grade_module, make_notebook, scores
from graders.limits import Limits

MEMORY_HOG = ("import numpy as np, time\nheld = []\nfor _ in range(24):\n"
              "    held.append(np.ones(50 * 2**20 // 8))\n    time.sleep(0.1)\nprint('survived')")
# The hostile cells' `sleep` processes sleep this many seconds: an argument no other process on the machine has, so
# the tests look only at processes they started.
SLEEP_S = f"{60 + os.getpid() % 1000 / 1000:.3f}"


def sleeping() -> set[int]:
    """Live `sleep SLEEP_S` processes (a killed orphan may stay a zombie until this machine's init reaps it)."""
    return {p.pid for p in psutil.process_iter(["name", "status", "cmdline"])
            if p.info["name"] == "sleep" and SLEEP_S in (p.info["cmdline"] or [])
            and p.info["status"] != psutil.STATUS_ZOMBIE}


FORK_SPREE = (f"import subprocess\nchildren = [subprocess.Popen(['sleep', '{SLEEP_S}']) for _ in range(12)]\n"
              "import time\ntime.sleep(5)\nprint('survived')")


def grade(tmp_path, toy_spec, extra, limits, position=2):
    """The solved toy notebook with one hostile cell inserted after `double` is checked, before `answer`."""
    import nbformat
    cells = SOLVED_TOY[:position + 1] + [(extra, [])] + SOLVED_TOY[position + 1:]
    path = tmp_path / toy_spec.notebook_name
    nbformat.write(make_notebook(cells), path)
    return grade_module(path, toy_spec, "hostile", "cpu", limits=limits)


def test_memory_limit_stops_the_kernel_and_costs_only_what_follows(tmp_path, toy_spec):
    result = grade(tmp_path, toy_spec, MEMORY_HOG, Limits(memory_mb=600))
    assert "over the limit of 600 MB" in result.stopped
    got = scores(result)
    assert got["double"] > 0          # probed before the hog ran
    assert got.get("answer", 0) == 0  # never reached
    assert result.peak_memory_mb > 600


def test_process_limit_and_no_process_left_behind(tmp_path, toy_spec):
    before = sleeping()
    result = grade(tmp_path, toy_spec, FORK_SPREE, Limits(processes=5))
    assert "over the limit of 5" in result.stopped
    assert not sleeping() - before


def test_children_of_a_finished_notebook_are_stopped(tmp_path, toy_spec):
    before = sleeping()
    server = f"import subprocess\nbackground = subprocess.Popen(['sleep', '{SLEEP_S}'], start_new_session=True)"
    result = grade(tmp_path, toy_spec, server, Limits())
    assert result.stopped is None and result.score == result.max_score
    assert not sleeping() - before


def test_output_flood_is_truncated_and_grading_goes_on(tmp_path, toy_spec):
    flood = "for i in range(200_000):\n    print('x' * 100)"
    result = grade(tmp_path, toy_spec, flood, Limits(output_mb=1))
    assert result.stopped is None and result.score == result.max_score
    flooded = result.notebook.cells[3]
    text = "".join(o.get("text", "") for o in flooded.outputs)
    assert "output truncated" in text and len(text) < 2 * 2**20


def disk_filler(folder: str) -> str:
    """Writes 20 MB at a time into `folder`, up to 600 MB (a broken limit stops there)."""
    return (f"import os, time\nwith open(os.path.join({folder!r}, 'filler.bin'), 'wb') as f:\n"
            "    for _ in range(30):\n        f.write(b'x' * 20 * 2**20)\n        f.flush()\n        time.sleep(0.2)\n"
            "print('survived')")


def test_disk_limit_on_its_folder_stops_the_kernel(tmp_path, toy_spec):
    result = grade(tmp_path, toy_spec, disk_filler("."), Limits(disk_mb=100))
    assert "MB to disk" in result.stopped and "over the limit of 100 MB" in result.stopped
    assert scores(result)["double"] > 0 and scores(result).get("answer", 0) == 0


def test_disk_limit_counts_its_private_tmp(tmp_path, toy_spec):
    from graders.sandbox import availability
    if availability() is not None:
        import pytest
        pytest.skip(f"no private /tmp without the sandbox: {availability()}")
    result = grade(tmp_path, toy_spec, disk_filler("/tmp"), Limits(disk_mb=100))
    assert "over the limit of 100 MB" in result.stopped
