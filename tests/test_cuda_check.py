"""`inpaintlab.cuda_check.cuda_available`: torch's answer once torch is imported; before that, the same answer without
importing it where the build or the driver tells (what `info` says about "GPU" noise depends on it)."""
from __future__ import annotations

import importlib.machinery
import subprocess
import sys

import pytest
import torch

from inpaintlab import cuda_check


def test_agrees_with_torch_here():
    assert cuda_check.cuda_available() == torch.cuda.is_available()
    assert cuda_check._without_torch() in (None, torch.cuda.is_available())
    code = ("import sys; from inpaintlab.cuda_check import cuda_available; a = cuda_available(); "
            "print(a, 'torch' in sys.modules)")
    answer, imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout.split()
    assert answer == str(torch.cuda.is_available())
    if torch.version.cuda is None and torch.version.hip is None:  # the CPU build: known without torch
        assert imported == "False"


def test_follows_torch_once_imported(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cuda_check.cuda_available() is True
    assert cuda_check.gpu_source_problem("GPU") is None and cuda_check.replay_rng_source("GPU", True) == ("GPU", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in cuda_check.gpu_source_problem("GPU")
    source, note = cuda_check.replay_rng_source("GPU", stored=False)
    assert source == "NV" and 'no "RNG" key' in note
    assert cuda_check.gpu_source_problem("CPU") is None and cuda_check.replay_rng_source("NV", True) == ("NV", None)


@pytest.fixture
def fake_torch(tmp_path, monkeypatch):
    """A torch install whose version.py the test writes; no NVML and no CUDA driver library unless the test says."""
    folder = tmp_path / "torch"
    folder.mkdir()
    spec = importlib.machinery.ModuleSpec("torch", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    monkeypatch.setattr(cuda_check.importlib.util, "find_spec", lambda name: spec)
    monkeypatch.setattr(cuda_check, "_load", lambda names: None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def write(cuda: str, hip: str = "None") -> None:
        (folder / "version.py").write_text(f"from typing import Optional\n__version__ = '2.13.0'\n"
                                           f"cuda: Optional[str] = {cuda}\nhip: Optional[str] = {hip}\n")
    return write


def test_without_torch_reads_the_build_and_the_driver(fake_torch, monkeypatch):
    fake_torch("None")
    assert cuda_check._without_torch() is False  # the CPU wheel
    fake_torch("None", "'6.2'")
    assert cuda_check._without_torch() is None  # ROCm: torch decides
    fake_torch("'12.4'")
    assert cuda_check._without_torch() is False  # neither NVML nor a CUDA driver
    monkeypatch.setattr(cuda_check, "_load", lambda names: object() if names == cuda_check._DRIVER else None)
    assert cuda_check._without_torch() is None  # a driver but no NVML: torch decides
    for visible, answer in (("", False), ("-1", False), ("0", None), ("GPU-5f0e", None)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert cuda_check._without_torch() is answer, visible
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    for count, answer in ((2, True), (0, False), (None, None)):
        monkeypatch.setattr(cuda_check, "_load", lambda names: object())
        monkeypatch.setattr(cuda_check, "_nvml_device_count", lambda nvml, c=count: c)
        assert cuda_check._without_torch() is answer, count


def test_unreadable_build_asks_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(cuda_check.importlib.util, "find_spec", lambda name: None)
    assert cuda_check._without_torch() is None


class FakeNVML:
    def __init__(self, init: int = 0, count: int = 3) -> None:
        self.init, self.count, self.shut = init, count, False

    def nvmlInit_v2(self) -> int:  # noqa: N802 - NVML's names
        return self.init

    def nvmlDeviceGetCount_v2(self, ref) -> int:  # noqa: N802
        ref._obj.value = self.count
        return 0

    def nvmlShutdown(self) -> int:  # noqa: N802
        self.shut = True
        return 0


def test_nvml_device_count():
    nvml = FakeNVML()
    assert cuda_check._nvml_device_count(nvml) == 3 and nvml.shut
    assert cuda_check._nvml_device_count(FakeNVML(init=9)) is None  # NVML_ERROR_DRIVER_NOT_LOADED and the like
    assert cuda_check._nvml_device_count(object()) is None
