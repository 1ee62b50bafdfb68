"""The golden set (tests/pipeline/golden_cases.py): today's outputs, byte for byte, and their infotexts.

Recorded from the pipeline before it was split into stages and techniques; every later change to the pipeline's
structure must reproduce each uint8 image exactly and each infotext character for character. Re-record only for an
intended change of behaviour: `INPAINTLAB_RECORD_GOLDEN=1 python -m pytest tests/pipeline/test_golden.py`.
Runs single-threaded, as it was recorded (CPU kernels may sum in another order with more threads). The bytes are
compared exactly on a machine whose torch CPU kernels match the recording's (`machine.json`: instruction set and
torch version); elsewhere (e.g. AVX2 instead of AVX-512) float sums round differently, so images may differ by a grey
level here and there and are held to a mean absolute difference below 0.5 grey levels, infotexts still exactly.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import golden_cases  # noqa: E402

RECORD = os.environ.get("INPAINTLAB_RECORD_GOLDEN") == "1"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return golden_cases.write_files(tmp_path_factory.mktemp("golden"))


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model", golden_cases.MODELS)
def test_golden(files, model):
    if RECORD:
        golden_cases.record_model(model, files)
    expected = golden_cases.load_expected(model)
    got = golden_cases.run_model(model, files)
    assert list(got) == list(expected), "the golden cases changed: re-record them on purpose"
    exact = golden_cases.machine() == json.loads((golden_cases.DATA / "machine.json").read_text())
    problems = []
    for name, (images, infotexts) in expected.items():
        new_images, new_infotexts = got[name]
        if new_infotexts != infotexts:
            problems.append(f"{name}: infotext\n  was {infotexts}\n  now {new_infotexts}")
        if new_images.shape != images.shape:
            problems.append(f"{name}: shape {images.shape} -> {new_images.shape}")
        elif not np.array_equal(new_images, images):
            diff = np.abs(new_images.astype(int) - images.astype(int))
            if exact or diff.mean() >= 0.5:
                problems.append(f"{name}: {np.count_nonzero(diff)} bytes differ, max {diff.max()}, mean {diff.mean():.3f}")
    assert not problems, "\n".join(problems)
