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

Metric: CUDA times from common.time_cuda (triton.testing.do_bench, 100 ms warm-up and 500 ms of timed calls: median,
20th and 80th percentile; it flushes L2 between runs, so these are HBM numbers, pessimistic for UNet tensors that a
producer leaves in the 50 MB L2). GB/s use the algorithmic traffic of kernels/group_norm.py's docstring,
2 * numel * itemsize (read x once, write y once) for every provider, so GB/s are comparable across providers and with
performance.md goal 4 (>= 80 % of HBM peak on VAE-decoder shapes); the Triton kernels actually move 1.5x that (x is
read twice). % of peak uses the HBM bandwidth of the detected card (common.hbm_peak: H100 SXM 3.35 TB/s, H100 PCIe
2.0, H200 4.8, A100 SXM4 80GB 2.0; none for other cards). `max_err` (triton rows) is the largest |ours - ref|.
A provider that cannot run (the Triton one on a CPU without TRITON_INTERPRET=1) gives a row with an `error`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # `common` when this file is loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (after the sys.path line above)
from common import hbm_peak  # noqa: E402,F401  (re-exported: the peak this script divides by)

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

    from inpaintlab.kernels import interpreting
    from inpaintlab.kernels.group_norm import group_norm_ref

    common.check_device("bench_group_norm", device)
    dtype = torch.float16 if device == "cuda" else torch.float32
    if device == "cuda":
        shapes = QUICK_CUDA if quick else [("unet", s) for s in UNET_SHAPES] + [("vae", s) for s in VAE_SHAPES]
    else:
        shapes = QUICK_CPU if quick else QUICK_CPU + [("unet", (2, 320, 16, 16))]
    name = common.device_name(device) + (" (Triton interpreter)" if device == "cpu" and interpreting() else "")
    peak = common.hbm_peak(name) if device == "cuda" else None
    meta = dict(op="group_norm_silu", dtype=str(dtype).removeprefix("torch."), metric="time", unit="ms",
                **common.run_metadata(name))
    timer = common.time_cuda if device == "cuda" else (lambda f: common.time_cpu(f, reps))
    rows = []
    gen = torch.Generator(device=device).manual_seed(0)
    for net, shape in shapes:
        x = torch.randn(shape, device=device, generator=gen).to(dtype)
        w = (1 + 0.1 * torch.randn(shape[1], device=device, generator=gen)).to(dtype)
        b = (0.1 * torch.randn(shape[1], device=device, generator=gen)).to(dtype)
        nbytes = 2 * x.numel() * x.element_size()
        fns = _providers(x, w, b)
        base = dict(meta, net=net, shape="x".join(map(str, shape)))
        for provider in PROVIDERS:
            try:  # a provider that cannot run here (no GPU, no interpreter) is an error row, not a failed section
                max_err = None
                if provider == "triton":
                    ref = group_norm_ref(x, GROUPS, w, b, EPS, silu=True).float()
                    max_err = (fns["triton"]().float() - ref).abs().max().item()
                p50, p20, p80 = timer(fns[provider])
            except Exception as exc:
                rows.append(dict(base, provider=provider, error=common.error_text(exc)))
                continue
            gbps = nbytes / (p50 * 1e-3) / 1e9
            rows.append(dict(base, provider=provider, p50=p50, p20=p20, p80=p80, bytes=nbytes, gbps=gbps,
                             hbm_pct=None if peak is None else 100 * gbps * 1e9 / peak, max_err=max_err))
    return rows


def table(rows: list[dict]) -> str:
    return common.kernel_table(rows, [("net", "net"), ("shape", "shape")], time_key="p50",
                               rate=("GB/s", "gbps", ".3g"), pct=("% HBM", "hbm_pct", ".0f"), base="torch")


def main(argv: list[str] | None = None) -> int:
    ap = common.kernel_arg_parser(__doc__, "benchmarks/results/group_norm.csv",
                                  "exit 1 unless triton beats torch (GroupNorm->SiLU) by this factor on every shape")
    args = ap.parse_args(argv)
    rows = run(args.device, args.quick)
    return common.finish_kernel_run(args, rows, table, CSV_FIELDS, key="shape", time_key="p50")


if __name__ == "__main__":
    sys.exit(main())
