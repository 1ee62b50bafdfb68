"""Benchmark: fused Triton flash-attention forward against torch eager and every SDPA backend, SD1.5 shapes.

    python benchmarks/bench_attention.py [--device cuda|cpu] [--quick] [--dtype fp16|bf16] [--json PATH] [--csv PATH]
                                         [--assert-speedup X]

Providers (all compute softmax(q·kᵀ·D^-0.5)·v in the input dtype, q/k/v as [B,N,H,D].transpose(1,2) views, the
layout the UNet's CrossAttention passes):
    triton          ours: attention(..., backend="triton")
    torch           eager matmul -> softmax -> matmul (ldm's CrossAttention without optimisations)
    ref             attention_ref: SDPA with torch's own backend choice (what backend="torch" runs)
    sdpa_flash, sdpa_efficient, sdpa_math, sdpa_cudnn
                    SDPA pinned to one backend with torch.nn.attention.sdpa_kernel; a backend that refuses a shape
                    gives a row with an `error` instead of a time

Shapes (kernels.attention.sd15_attention_shapes): CFG batch 2, 8 heads, at 512² and 768²:
self-attention over 4096/1024/256/64 tokens (9216/2304/576/144 at 768²) with head dims 40/80/160/160, and
cross-attention over the 77 text tokens at each level. --quick keeps four 512² shapes on CUDA; on CPU it runs two
tiny shapes, with the Triton provider under the interpreter for the first only (it shows the path works; interpreter
times mean nothing).

Metric: CUDA times from common.time_cuda (triton.testing.do_bench, 100 ms warm-up and 500 ms of timed calls: median
with 20th/80th percentiles; L2 flushed between runs). TFLOP/s use the kernel docstring's estimate, 4·B·H·N·M·D
useful FLOPs (no padding, no exp work), for every provider; % of peak divides by the detected card's dense fp16/bf16
peak (common.peak_tflops: H100 SXM 989, H100 PCIe 756, H200 989, A100 SXM4 80GB 312; none for other cards).
`max_err` (triton rows) is the largest |ours − float64 reference| over the first batch entry and head.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:  # `common` when this file is loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (after the sys.path line above)

PROVIDERS = ("triton", "torch", "ref", "sdpa_flash", "sdpa_efficient", "sdpa_math", "sdpa_cudnn")
CPU_PROVIDERS = ("triton", "torch", "ref", "sdpa_math")
QUICK_CUDA = ("512px level0 self", "512px level0 cross", "512px level1 self", "512px level2 self")
QUICK_CPU = [("tiny self", 1, 2, 64, 64, 40), ("tiny cross", 1, 2, 64, 77, 40)]
CSV_FIELDS = ["op", "case", "provider", "shape", "dtype", "ms_p50", "p20", "p80", "flops", "tflops", "pct_peak",
              "max_err", "error", "device", "torch", "triton", "git_commit", "timestamp"]
SDPA_BACKENDS = {"sdpa_flash": "FLASH_ATTENTION", "sdpa_efficient": "EFFICIENT_ATTENTION", "sdpa_math": "MATH",
                 "sdpa_cudnn": "CUDNN_ATTENTION"}


def flops(B: int, H: int, N: int, M: int, D: int) -> int:
    """Useful FLOPs of one attention call: 2·N·M·D for q·kᵀ plus 2·N·M·D for p·v, per batch entry and head."""
    return 4 * B * H * N * M * D


def _providers(q, k, v):
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from inpaintlab.kernels.attention import attention, attention_ref

    scale = q.shape[-1] ** -0.5

    def eager():
        return torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * scale, dim=-1) @ v

    def pinned(name):
        backend = getattr(SDPBackend, SDPA_BACKENDS[name])

        def fn():
            with sdpa_kernel(backend):
                return torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return fn

    fns = {"triton": lambda: attention(q, k, v, backend="triton"), "torch": eager,
           "ref": lambda: attention_ref(q, k, v)}
    fns.update({name: pinned(name) for name in SDPA_BACKENDS})
    return fns


def run(device: str = "cuda", quick: bool = False, dtype: str = "fp16", reps: int = 3) -> list[dict]:
    """Benchmark rows, one per shape × provider: op, case, provider, shape (BxHxNxMxD), dtype, ms_p50, p20, p80,
    tflops, pct_peak, max_err, error, plus device/version/commit metadata. `reps`: timed runs per CPU measurement."""
    if device == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # the CPU Triton path needs it before triton is imported
    import torch

    from inpaintlab.kernels import interpreting
    from inpaintlab.kernels.attention import attention_math, sd15_attention_shapes

    common.check_device("bench_attention", device)
    if device == "cuda":
        torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
        shapes = [s for s in sd15_attention_shapes() if not quick or s[0] in QUICK_CUDA]
        providers = PROVIDERS
    else:
        torch_dtype = torch.float32  # CPU matmuls in half precision are slow emulation, not a baseline
        shapes = QUICK_CPU if quick else QUICK_CPU + [("512px level2 self", 2, 8, 256, 256, 160)]
        providers = CPU_PROVIDERS
    name = common.device_name(device) + (" (Triton interpreter)" if device == "cpu" and interpreting() else "")
    peak = common.peak_tflops(name, torch_dtype)
    meta = common.run_metadata(name)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for idx, (case, B, H, N, M, D) in enumerate(shapes):
        # [B,L,H,D] buffers viewed as [B,H,L,D], as the UNet's head split produces them
        q, k, v = (torch.randn(B, L, H, D, device=device, generator=gen).to(torch_dtype).transpose(1, 2)
                   for L in (N, M, M))
        fns = _providers(q, k, v)
        n_flops = flops(B, H, N, M, D)
        base = dict(op="attention", case=case, shape=f"{B}x{H}x{N}x{M}x{D}", dtype=str(torch_dtype)[6:],
                    flops=n_flops, **meta)
        for provider in providers:
            row = dict(base, provider=provider)
            rows.append(row)
            if provider == "triton" and device == "cpu" and not interpreting():
                row["error"] = "skipped: the Triton kernel needs CUDA here; TRITON_INTERPRET=1 runs it on the CPU"
                continue
            if provider == "triton" and device == "cpu" and idx > 0:
                row["error"] = "skipped: the CPU Triton path runs under the interpreter for the first shape only"
                continue
            try:
                out = fns[provider]()
                if provider == "triton":
                    ref = attention_math(q[:1, :1], k[:1, :1], v[:1, :1])
                    row["max_err"] = (out[:1, :1].double() - ref).abs().max().item()
                timer = common.time_cuda if device == "cuda" else (lambda f: common.time_cpu(f, reps))
                p50, p20, p80 = timer(fns[provider])
            except Exception as exc:  # a backend that refuses a shape (or is absent) is a row, not a crash
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                continue
            tflops = n_flops / (p50 * 1e-3) / 1e12
            row.update(ms_p50=p50, p20=p20, p80=p80, tflops=tflops,
                       pct_peak=None if peak is None else 100 * tflops / peak)
            if device == "cuda":
                torch.cuda.empty_cache()  # eager/math at 768² hold multi-GB score matrices
    return rows


def table(rows: list[dict]) -> str:
    return common.kernel_table(rows, [("case", "case"), ("shape BxHxNxMxD", "shape")], time_key="ms_p50",
                               rate=("TFLOP/s", "tflops", ".3g"), pct=("% peak", "pct_peak", ".1f"), base="ref")


def main(argv: list[str] | None = None) -> int:
    ap = common.kernel_arg_parser(__doc__, "benchmarks/results/attention.csv",
                                  "exit 1 unless triton is at least this many times faster than ref on every shape")
    ap.add_argument("--dtype", choices=("fp16", "bf16"), default="fp16", help="CUDA input dtype (CPU runs fp32)")
    args = ap.parse_args(argv)
    rows = run(args.device, args.quick, args.dtype)
    return common.finish_kernel_run(args, rows, table, CSV_FIELDS, key="case", time_key="ms_p50", base="ref")


if __name__ == "__main__":
    sys.exit(main())
