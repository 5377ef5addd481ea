"""One atomic-write helper (common/atomic.py) and logs that survive a torn last line."""
import json
import os

import numpy as np
import pytest
import torch

from common.atomic import atomic_path, write_json
from common.training.logger import MetricLogger, read_log


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "sub" / "a.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert not target.exists() and os.listdir(tmp_path / "sub") == []
    with atomic_path(target, unique=True) as tmp:
        assert tmp != f"{target}.tmp"
        open(tmp, "w").write("whole")
    assert target.read_text() == "whole" and os.listdir(tmp_path / "sub") == ["a.bin"]


def test_write_json_converts_numpy_and_torch(tmp_path):
    write_json(tmp_path / "x.json", {"a": np.float32(1.5), "b": np.arange(3), "c": torch.tensor([1, 2]),
                                     "d": np.int64(4), "e": tmp_path})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": [1, 2], "d": 4,
                                                             "e": str(tmp_path)}


def test_torn_last_log_line_is_dropped_on_resume(tmp_path):
    log = MetricLogger(tmp_path, enabled=True)
    for step in (1, 2, 3):
        log.log(step, loss=1.0 / step)
    with open(tmp_path / "log.jsonl", "a") as f:
        f.write('{"step": 4, "loss": 0.2')  # the process was killed while writing this line
    with pytest.warns(UserWarning, match="log.jsonl: dropped a torn last line"):
        log.truncate_after(2)  # what a resume does; it used to raise a bare JSONDecodeError
    assert [r["step"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2]
    # a broken line that is not the last one is an error naming the file and the line
    (tmp_path / "log.jsonl").write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"log.jsonl: line 2 is not a log row"):
        read_log(tmp_path / "log.jsonl")
