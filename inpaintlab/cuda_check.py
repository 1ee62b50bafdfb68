"""Whether CUDA is available, and what that means for A1111's "GPU" noise source, without importing torch (1-2 s)
where the answer is clear without it: `inpaintlab info` and `settings_from_infotext` say which noise a replay uses
before any model is loaded.

Once torch is imported, its own `torch.cuda.is_available()` answers. Before that, a torch build without CUDA (the CPU
wheel) has none; a CUDA build asks NVIDIA's management library (NVML) for devices, which, unlike initialising CUDA,
leaves a later fork of the process free to use CUDA (torch's own PYTORCH_NVML_BASED_CUDA_CHECK does the same). Where
that cannot tell (a ROCm build, CUDA_VISIBLE_DEVICES naming devices, no NVML but a CUDA driver), torch is imported.
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import sys
from pathlib import Path
from typing import Optional

_NVML = ("libnvidia-ml.so.1", "nvml.dll")
_DRIVER = ("libcuda.so.1", "nvcuda.dll")


def cuda_available() -> bool:
    """`torch.cuda.is_available()`, importing torch only where nothing else can tell (module docstring)."""
    torch = sys.modules.get("torch")
    if torch is None:
        known = _without_torch()
        if known is not None:
            return known
        import torch
    return torch.cuda.is_available()


def _build() -> Optional[dict[str, Optional[str]]]:
    """`cuda` and `hip` of the installed torch's version.py (None: not found or not readable)."""
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    try:
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text()
    except OSError:
        return None
    found: dict[str, Optional[str]] = {}
    for key in ("cuda", "hip"):
        match = re.search(rf"^{key}\s*(?::[^=\n]*)?=\s*(.+?)\s*$", text, re.MULTILINE)
        if match is None:
            return None
        found[key] = None if match.group(1) == "None" else match.group(1).strip("'\"")
    return found


def _load(names: tuple[str, ...]) -> Optional[ctypes.CDLL]:
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _nvml_device_count(nvml: ctypes.CDLL) -> Optional[int]:
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
        try:
            count = ctypes.c_uint(0)
            return count.value if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0 else None
        finally:
            nvml.nvmlShutdown()
    except AttributeError:  # not the library we know
        return None


def _without_torch() -> Optional[bool]:
    """The answer without torch, or None when only torch can give it."""
    build = _build()
    if build is None or build["hip"] is not None:
        return None
    if build["cuda"] is None:
        return False  # the CPU build
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        if visible.strip() in ("", "-1") or visible.strip().startswith("-1,"):
            return False  # every device hidden
        return None  # NVML counts the hidden devices too
    nvml = _load(_NVML)
    if nvml is None:
        return False if _load(_DRIVER) is None else None
    count = _nvml_device_count(nvml)
    return None if count is None else count > 0


def gpu_source_problem(source: str) -> Optional[str]:
    """Why the noise source cannot be used here (the "GPU" source without CUDA), or None."""
    if source == "GPU" and not cuda_available():
        return ("rng_source 'GPU' draws with torch's CUDA generator, but CUDA is not available; use 'NV' (A1111's "
                "emulation of CUDA noise, e.g. --rng-source NV) or 'CPU'")
    return None


def replay_rng_source(source: str, stored: bool) -> tuple[str, Optional[str]]:
    """The noise source to replay an infotext with, and a one-line note when it is not the one asked for.

    A1111's default source, "GPU", is torch's CUDA generator: an infotext without an `RNG` key (nearly every image
    made on an NVIDIA card) asks for it. Where CUDA is absent the replay uses "NV", A1111's emulation of that
    generator, which draws the same numbers on any device. `stored`: the infotext holds `RNG: GPU` (else the key was
    absent and "GPU" is A1111's default for it).
    """
    if source != "GPU" or cuda_available():
        return source, None
    why = 'its "RNG: GPU"' if stored else 'no "RNG" key, so A1111\'s default "GPU"'
    return "NV", (f"noise: the infotext asks for CUDA's generator ({why}) and CUDA is not available here; using NV, "
                  "A1111's emulation of CUDA's noise, which gives the same noise (--rng-source CPU or NV to choose)")
