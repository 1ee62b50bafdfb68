"""Test-only stand-ins for the few torchvision functions the reference packages import.

PyPI's only torchvision wheel is a CUDA build that does not load beside the CPU torch, while segment-anything, sam2,
spandrel and ultralytics import a handful of its functions (NMS, box area, PIL/tensor resize, normalise). Tests that
use those packages as oracles call :func:`use_torchvision_shim` first; the package itself never sees this folder.
The shim is tested against a brute-force NMS and Pillow in ``tests/test_torchvision_shim.py``.
"""
import importlib
import sys
from pathlib import Path

SHIM_DIR = str(Path(__file__).resolve().parent)


def use_torchvision_shim():
    """Make ``import torchvision`` (and its version metadata) resolve to the shim; returns the module."""
    try:
        import torchvision  # noqa: F401  a real, working torchvision wins
        return sys.modules["torchvision"]
    except Exception:  # noqa: BLE001  the broken CUDA wheel raises RuntimeError, absence ImportError
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
    if SHIM_DIR not in sys.path:
        sys.path.insert(0, SHIM_DIR)
    importlib.invalidate_caches()
    return importlib.import_module("torchvision")
