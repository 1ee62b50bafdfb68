"""Benchmark: fused Triton GroupNorm+SiLU against torch eager, on the SD1.5 GroupNorm shapes.

    python benchmarks/bench_group_norm.py [--device cuda|cpu] [--quick] [--json PATH] [--csv PATH]

Providers (all compute GroupNorm with 32 groups, affine, eps 1e-6, then SiLU unless noted):
    triton     ours: group_norm(..., silu=True, backend="triton"), two kernels, SiLU fused
    torch      F.group_norm -> F.silu in the input dtype (diffusers' eager path: two torch kernels)
    ref        group_norm_ref: ldm's GroupNorm32 path (upcast to fp32, GroupNorm, SiLU, cast back)
    torch_gn   F.group_norm alone (no SiLU), the cost of the normalisation by itself

Shapes (performance.md §1.3, fp16): every distinct UNet GroupNorm at 512x512 with CFG batch 2 and every VAE-decoder
GroupNorm at batch 1; --quick keeps two of each (CUDA) or two tiny ones (CPU, where the Triton provider runs under
the interpreter and only shows that the code path works).

Metric: CUDA times from triton.testing.do_bench (median, 20th and 80th percentile over runs; it flushes L2 between
runs, so these are HBM numbers, pessimistic for UNet tensors that a producer leaves in the 50 MB L2). GB/s use the
algorithmic traffic of kernels/group_norm.py's docstring, 2 * numel * itemsize (read x once, write y once) for every
provider, so GB/s are comparable across providers and with performance.md goal 4 (>= 80 % of HBM peak on
VAE-decoder shapes); the Triton kernels actually move 1.5x that (x is read twice). % of peak uses the HBM bandwidth
of the detected card (H100 SXM 3.35 TB/s, H100 PCIe 2.0, H200 4.8, A100 2.0).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNET_SHAPES = [(2, c, s, s) for s, cs in ((64, (320, 640, 960)), (32, (320, 640, 960, 1280, 1920)),
                                          (16, (640, 1280, 1920, 2560)), (8, (1280, 2560))) for c in cs]
VAE_SHAPES = [(1, 512, 64, 64), (1, 512, 128, 128), (1, 512, 256, 256), (1, 256, 256, 256), (1, 256, 512, 512),
              (1, 128, 512, 512)]
QUICK_CUDA = [("unet", (2, 320, 64, 64)), ("unet", (2, 1280, 16, 16)), ("vae", (1, 512, 128, 128)),
              ("vae", (1, 128, 512, 512))]
QUICK_CPU = [("unet", (1, 64, 8, 8)), ("vae", (1, 32, 16, 16))]
PROVIDERS = ("triton", "torch", "ref", "torch_gn")
CSV_FIELDS = ["op", "provider", "net", "shape", "dtype", "metric", "unit", "p50", "p20", "p80", "bytes", "gbps",
              "hbm_pct", "max_err", "error", "device", "torch", "triton", "git_commit", "timestamp"]
GROUPS, EPS = 32, 1e-6


def hbm_peak(device_name: str) -> float | None:
    """HBM bandwidth in bytes/s for the cards of performance.md §3, None when unknown."""
    name = device_name.upper()
    if "H200" in name:
        return 4.8e12
    if "H100" in name:
        return 2.0e12 if "PCIE" in name else 3.35e12  # "NVIDIA H100 80GB HBM3" is the SXM5 part
    if "A100" in name:
        return 2.0e12
    return None


def _git_commit() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False)
    return res.stdout.strip() or "unknown"


def _time_cpu(fn, reps: int) -> list[float]:
    """(p50, p20, p80) in ms of `reps` runs after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return [statistics.median(times), q[1], q[7]]


def _providers(x, w, b):
    import torch.nn.functional as F

    from inpaintlab.kernels.group_norm import group_norm, group_norm_ref

    return {
        "triton": lambda: group_norm(x, GROUPS, w, b, EPS, silu=True, backend="triton"),
        "torch": lambda: F.silu(F.group_norm(x, GROUPS, w, b, EPS)),
        "ref": lambda: group_norm_ref(x, GROUPS, w, b, EPS, silu=True),
        "torch_gn": lambda: F.group_norm(x, GROUPS, w, b, EPS),
    }


def run(device: str = "cuda", quick: bool = False, reps: int = 3) -> list[dict]:
    """Benchmark rows (one per shape x provider); `reps` is the number of timed runs on CPU."""
    if device == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors need the interpreter, set before triton loads
    import torch
    import triton

    from inpaintlab.kernels.group_norm import group_norm_ref

    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("bench_group_norm: --device cuda needs a GPU (use --device cpu for a smoke run)")
    dtype = torch.float16 if device == "cuda" else torch.float32
    if device == "cuda":
        shapes = QUICK_CUDA if quick else [("unet", s) for s in UNET_SHAPES] + [("vae", s) for s in VAE_SHAPES]
        device_name = torch.cuda.get_device_name()
    else:
        shapes = QUICK_CPU if quick else QUICK_CPU + [("unet", (2, 320, 16, 16))]
        device_name = "cpu (Triton interpreter)"
    peak = hbm_peak(device_name) if device == "cuda" else None
    common = dict(op="group_norm_silu", dtype=str(dtype).removeprefix("torch."), metric="time", unit="ms",
                  device=device_name, torch=torch.__version__, triton=triton.__version__, git_commit=_git_commit(),
                  timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for net, shape in shapes:
        x = torch.randn(shape, device=device, generator=gen).to(dtype)
        w = (1 + 0.1 * torch.randn(shape[1], device=device, generator=gen)).to(dtype)
        b = (0.1 * torch.randn(shape[1], device=device, generator=gen)).to(dtype)
        nbytes = 2 * x.numel() * x.element_size()
        fns = _providers(x, w, b)
        max_err = (fns["triton"]().float() - group_norm_ref(x, GROUPS, w, b, EPS, silu=True).float()).abs().max()
        for provider in PROVIDERS:
            try:
                if device == "cuda":
                    p50, p20, p80 = triton.testing.do_bench(fns[provider], quantiles=[0.5, 0.2, 0.8])
                else:
                    p50, p20, p80 = _time_cpu(fns[provider], reps)
            except Exception as exc:  # a provider that cannot run here is reported, not fatal
                rows.append({**common, "net": net, "shape": "x".join(map(str, shape)), "provider": provider,
                             "error": f"{type(exc).__name__}: {exc}"})
                continue
            gbps = nbytes / (p50 * 1e-3) / 1e9
            rows.append({**common, "net": net, "shape": "x".join(map(str, shape)), "provider": provider,
                         "p50": p50, "p20": p20, "p80": p80, "bytes": nbytes, "gbps": gbps,
                         "hbm_pct": None if peak is None else 100 * gbps * 1e9 / peak,
                         "max_err": float(max_err) if provider == "triton" else None})
    return rows


def table(rows: list[dict]) -> str:
    out = [f"device: {rows[0]['device']}  dtype: {rows[0]['dtype']}  commit: {rows[0]['git_commit']}" if rows else "",
           "| net | shape | provider | p50 ms | p20 ms | p80 ms | GB/s | % HBM | speed-up vs torch |",
           "|---|---|---|---|---|---|---|---|---|"]
    base = {(r["shape"]): r["p50"] for r in rows if r["provider"] == "torch" and "p50" in r}
    for r in rows:
        if "error" in r:
            out.append(f"| {r['net']} | {r['shape']} | {r['provider']} | error: {r['error']} |||||")
            continue
        pct = "-" if r["hbm_pct"] is None else f"{r['hbm_pct']:.0f}"
        speed = f"{base[r['shape']] / r['p50']:.2f}x" if r["shape"] in base else "-"
        out.append(f"| {r['net']} | {r['shape']} | {r['provider']} | {r['p50']:.4f} | {r['p20']:.4f} | "
                   f"{r['p80']:.4f} | {r['gbps']:.3g} | {pct} | {speed} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="a few shapes only")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--csv", type=Path, help="append the rows here (e.g. benchmarks/results/group_norm.csv)")
    ap.add_argument("--assert-speedup", type=float, default=None,
                    help="exit 1 unless triton beats torch (GroupNorm->SiLU) by this factor on every shape")
    args = ap.parse_args(argv)
    rows = run(args.device, args.quick)
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    if args.csv:
        new = not args.csv.exists()
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            if new:
                w.writeheader()
            w.writerows(rows)
    if args.assert_speedup is not None:
        t = {r["shape"]: r["p50"] for r in rows if r["provider"] == "triton" and "p50" in r}
        base = {r["shape"]: r["p50"] for r in rows if r["provider"] == "torch" and "p50" in r}
        slow = [s for s in base if s not in t or base[s] / t[s] < args.assert_speedup]
        if slow:
            print(f"speed-up below {args.assert_speedup}x on: {', '.join(slow)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
