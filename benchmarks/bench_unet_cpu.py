"""CPU timing of one SD1.5 UNet call: inpaintlab's UNetModel vs diffusers' UNet2DConditionModel, same weights.

Full SD1.5 width, fp32, random weights (~1/sqrt(fan_in)) in our ldm layout; diffusers gets the same tensors through
its own `convert_ldm_unet_checkpoint` (loaded with assign=True, so both models share storage). Calls alternate
between the two models after a warm-up, both under torch.inference_mode; the medians and their ratio are printed.

    python benchmarks/bench_unet_cpu.py --repeats 5
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch

if str(Path(__file__).resolve().parent) not in sys.path:  # `common` when this file is loaded by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_unet_step  # noqa: E402  (the ldm -> diffusers conversion shared with the GPU UNet benchmark)
import common  # noqa: E402

CSV_FIELDS = ["op", "provider", "shape", "dtype", "metric", "unit", "p50", "p20", "p80", "device", "torch", "diffusers",
              "commit", "timestamp"]


def build_models(in_channels: int, seed: int):
    from inpaintlab.unet import UNetConfig, UNetModel

    cfg = UNetConfig(in_channels=in_channels)
    with torch.device("meta"):
        ours = UNetModel(cfg)
    ours = ours.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
                if name.endswith("bias"):
                    p.normal_(0.0, 0.02, generator=g)
            else:
                p.normal_(0.0, 1.0 / math.sqrt(math.prod(p.shape[1:])), generator=g)
    return ours, bench_unet_step.diffusers_unet(ours)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per model first")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=32, help="latent height and width")
    parser.add_argument("--tokens", type=int, default=77, help="context length")
    parser.add_argument("--in-channels", type=int, default=4, choices=(4, 9))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", type=Path, default=None, help="append a result row to this CSV file")
    parser.add_argument("--assert-ratio", type=float, default=None,
                        help="exit 1 if ours/diffusers median time exceeds this")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ours, theirs = build_models(args.in_channels, args.seed)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(args.batch, args.in_channels, args.size, args.size, generator=g)
    t = torch.tensor([981.0, 500.5] * args.batch)[: args.batch]
    context = torch.randn(args.batch, args.tokens, 768, generator=g)

    def run_ours():
        return ours(x, t, context)

    def run_theirs():
        return theirs(x, t, encoder_hidden_states=context).sample

    times: dict[str, list[float]] = {"inpaintlab": [], "diffusers": []}
    cpu_times: dict[str, list[float]] = {"inpaintlab": [], "diffusers": []}
    with torch.inference_mode():
        reference = run_theirs()
        diff, scale = (run_ours() - reference).abs().max().item(), reference.abs().max().item()
        for _ in range(args.warmup - 1):
            run_ours(), run_theirs()
        for _ in range(args.repeats):  # alternate so load changes on the machine hit both alike
            for name, fn in (("inpaintlab", run_ours), ("diffusers", run_theirs)):
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                times[name].append(time.perf_counter() - start)
                cpu_times[name].append(time.process_time() - start_cpu)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
    ratio = med["inpaintlab"] / med["diffusers"]
    print(f"SD1.5 UNet, CPU fp32, batch {args.batch}, latent {args.size}x{args.size}, {args.tokens} tokens, "
          f"{torch.get_num_threads()} threads, {common.cpu_name()}, {os.cpu_count()} cpus")
    for name, ts in times.items():
        print(f"  {name:10s} wall median {med[name] * 1e3:9.1f} ms (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f}, "
              f"n={len(ts)});  process CPU time median {med_cpu[name] * 1e3:9.1f} ms")
    # CPU time is less sensitive to other load on a shared machine (it excludes time spent descheduled).
    best = {k: min(v) for k, v in times.items()}
    print(f"  ratio inpaintlab/diffusers (medians): wall {ratio:.3f}, CPU time "
          f"{med_cpu['inpaintlab'] / med_cpu['diffusers']:.3f};  fastest calls: "
          f"{best['inpaintlab'] / best['diffusers']:.3f}   max|eps diff| {diff:.2e} (max|eps| {scale:.2f})")

    if args.csv:
        import diffusers

        shape = f"B{args.batch}x{args.in_channels}x{args.size}x{args.size},L{args.tokens}"
        device = f"cpu:{common.cpu_name()}:{torch.get_num_threads()} threads of {os.cpu_count()}"
        stamp = dict(op="unet_sd15", shape=shape, dtype="fp32", metric="time", unit="ms", device=device,
                     torch=torch.__version__, diffusers=diffusers.__version__, commit=common.git_commit(),
                     timestamp=common.utc_timestamp())
        rows = []
        for name, ts in times.items():
            p50, p20, p80 = common.quantiles_ms(ts)
            rows.append(dict(stamp, provider=name, p50=f"{p50 * 1e3:.1f}", p20=f"{p20 * 1e3:.1f}",
                             p80=f"{p80 * 1e3:.1f}"))
        common.append_csv(args.csv, rows, CSV_FIELDS)
    if args.assert_ratio is not None and ratio > args.assert_ratio:
        print(f"ratio {ratio:.3f} exceeds --assert-ratio {args.assert_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
