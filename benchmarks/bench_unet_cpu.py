"""CPU timing of one SD1.5 UNet call: inpaintlab's UNetModel vs diffusers' UNet2DConditionModel, same weights.

Full SD1.5 width, fp32, random weights (~1/sqrt(fan_in)) in our ldm layout; diffusers gets the same tensors through
its own `convert_ldm_unet_checkpoint` (loaded with assign=True, so both models share storage). Calls alternate
between the two models after a warm-up, both under torch.inference_mode; the medians and their ratio are printed.

    python benchmarks/bench_unet_cpu.py --repeats 5
"""
from __future__ import annotations

import argparse
import csv
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def build_models(in_channels: int, seed: int):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

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

    unet = {"in_channels": in_channels, "out_channels": 4, "model_channels": 320, "attention_resolutions": [4, 2, 1],
            "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8, "use_spatial_transformer": True,
            "transformer_depth": 1, "context_dim": 768, "use_checkpoint": True, "legacy": False}
    original_config = {"model": {"params": {"unet_config": {"params": unet},
                                            "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    checkpoint = {"model.diffusion_model." + k: v for k, v in ours.state_dict().items()}
    dconfig = create_unet_diffusers_config_from_ldm(original_config, checkpoint)
    converted = convert_ldm_unet_checkpoint(checkpoint, dconfig)
    with torch.device("meta"):
        theirs = UNet2DConditionModel(**dconfig)
    theirs.load_state_dict(converted, strict=True, assign=True)
    return ours, theirs.eval()


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


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
        diff = (run_ours() - run_theirs()).abs().max().item()
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
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, {os.cpu_count()} cpus")
    for name, ts in times.items():
        print(f"  {name:10s} wall median {med[name] * 1e3:9.1f} ms (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f}, "
              f"n={len(ts)});  process CPU time median {med_cpu[name] * 1e3:9.1f} ms")
    # CPU time is less sensitive to other load on a shared machine (it excludes time spent descheduled).
    print(f"  ratio inpaintlab/diffusers: wall {ratio:.3f}, CPU time {med_cpu['inpaintlab'] / med_cpu['diffusers']:.3f}"
          f"   max|eps diff| {diff:.2e}")

    if args.csv:
        new = not args.csv.exists()
        with args.csv.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["op", "provider", "shape", "dtype", "metric", "unit", "p50", "p20", "p80", "device",
                            "torch", "diffusers", "commit", "timestamp"])
            import diffusers

            shape = f"B{args.batch}x{args.in_channels}x{args.size}x{args.size},L{args.tokens}"
            device = f"cpu:{platform.processor() or platform.machine()}:{torch.get_num_threads()}threads"
            stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
            for name, ts in times.items():
                q = statistics.quantiles(ts, n=5) if len(ts) > 1 else [ts[0]] * 4
                w.writerow(["unet_sd15", name, shape, "fp32", "time", "ms", f"{med[name] * 1e3:.1f}",
                            f"{q[0] * 1e3:.1f}", f"{q[3] * 1e3:.1f}", device, torch.__version__, diffusers.__version__,
                            git_commit(), stamp])
    if args.assert_ratio is not None and ratio > args.assert_ratio:
        print(f"ratio {ratio:.3f} exceeds --assert-ratio {args.assert_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
