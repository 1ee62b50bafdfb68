"""Helpers shared by the benchmark scripts: timing, device peaks, run metadata, CSV rows.

Scripts in this folder import it as ``common`` (their own folder is on sys.path when run as scripts; importers that
load a script by path call ``add_to_path()`` first). Nothing here runs at import.
"""
from __future__ import annotations

import csv
import datetime
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def add_to_path() -> None:
    """Make ``import common`` work for a benchmark module loaded by file path (e.g. from a test)."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)


def git_commit() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                         check=False)
    return res.stdout.strip() or "unknown"


def run_metadata(device_name: str) -> dict:
    """Fields every result row carries (STYLE §9): device, library versions, commit, UTC timestamp."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = "not installed"
    return dict(device=device_name, torch=torch.__version__, triton=triton_version, git_commit=git_commit(),
                timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))


def device_name(device: str) -> str:
    """The GPU's marketing name (it tells SXM from PCIe), or a CPU label."""
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return "cpu"


def peak_tflops(name: str, dtype) -> float | None:
    """Dense fp16/bf16 tensor-core peak (TFLOP/s) of the cards in spec/performance.md §3; None when unknown or for
    other dtypes (fp32 kernels here run without TF32, so the tensor-core peak would not be their ceiling)."""
    import torch

    if dtype not in (torch.float16, torch.bfloat16):
        return None
    name = name.upper()
    if "H200" in name:
        return 989.0
    if "H100" in name:
        return 756.0 if "PCIE" in name else 989.0  # "NVIDIA H100 80GB HBM3" is the SXM5 part
    if "A100" in name:
        return 312.0
    return None


def hbm_peak(name: str) -> float | None:
    """HBM bandwidth in bytes/s of the cards in spec/performance.md §3, None when unknown."""
    name = name.upper()
    if "H200" in name:
        return 4.8e12
    if "H100" in name:
        return 2.0e12 if "PCIE" in name else 3.35e12
    if "A100" in name:
        return 2.0e12
    return None


def time_cpu(fn: Callable[[], object], reps: int = 5) -> tuple[float, float, float]:
    """(p50, p20, p80) in ms over `reps` timed runs after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    if len(times) < 2:
        return times[0], times[0], times[0]
    q = statistics.quantiles(times, n=10, method="inclusive")
    return statistics.median(times), q[1], q[7]


def time_cuda(fn: Callable[[], object]) -> tuple[float, float, float]:
    """(p50, p20, p80) in ms from triton.testing.do_bench (it flushes L2 between runs)."""
    import triton.testing

    p50, p20, p80 = triton.testing.do_bench(fn, quantiles=[0.5, 0.2, 0.8])
    return p50, p20, p80


def append_csv(path: Path, rows: Iterable[dict], fields: list[str]) -> None:
    """Append rows (missing fields left empty, extra ones ignored); writes the header for a new file."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)
