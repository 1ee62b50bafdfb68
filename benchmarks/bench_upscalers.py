"""RRDBNet ×4 (R-ESRGAN 4x+'s shape: 64 features, 23 RRDBs, BasicSR layout) on one tile: inpaintlab vs spandrel.

Both networks get the same random weights (~1/sqrt(fan_in)) from one state dict; each call is the bare network on a
(1, 3, S, S) tile under torch.inference_mode, calls alternate between the two after a warm-up, and the medians and
their ratio (goal: inpaintlab ≤ 1.0× spandrel) are printed with the outputs' max difference. spandrel needs
torchvision, which the test shim in tests/shims stands in for.

    python benchmarks/bench_upscalers.py --device cuda                     # 512² tile, fp32 and fp16
    python benchmarks/bench_upscalers.py --device cpu --size 64 --repeats 3
    python benchmarks/bench_upscalers.py --device cpu --size 512 --threads 1 --clock process   # on a busy machine
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

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` when this file is loaded by path
    sys.path.insert(0, str(HERE))

import common  # noqa: E402

CSV_FIELDS = ["op", "provider", "shape", "dtype", "metric", "unit", "p50", "p20", "p80", "device", "torch", "commit",
              "timestamp"]


def spandrel_module():
    sys.path.insert(0, str(HERE.parent / "tests"))
    from shims import use_torchvision_shim

    use_torchvision_shim()
    import spandrel

    return spandrel


def build(blocks: int, seed: int, device: str, dtype: torch.dtype):
    from inpaintlab.upscalers.load import build as build_ours
    from inpaintlab.upscalers.rrdb import RRDBConfig, RRDBNet

    with torch.device("meta"):
        template = RRDBNet(RRDBConfig(layout="new", nb=blocks))
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in template.state_dict().items():
        fan_in = math.prod(v.shape[1:]) if v.ndim > 1 else 1
        sd[k] = torch.randn(v.shape, generator=g) * (1 / math.sqrt(fan_in) if v.ndim > 1 else 0.02)
    ours = build_ours(dict(sd))[0].to(device=device, dtype=dtype).eval()
    theirs = spandrel_module().ModelLoader().load_from_state_dict(dict(sd)).model.to(device=device, dtype=dtype).eval()
    return ours, theirs


def time_pair(fns: dict, device: str, repeats: int, warmup: int, clock=time.perf_counter) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    for _ in range(repeats):  # alternate so load changes on the machine hit both alike
        for name, fn in fns.items():
            sync()
            start = clock()
            fn()
            sync()
            times[name].append(clock() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=None, help="tile side (default: 512 on cuda, 64 on cpu)")
    parser.add_argument("--blocks", type=int, default=23, help="RRDBs (R-ESRGAN 4x+: 23)")
    parser.add_argument("--dtypes", default=None, help="comma list (default: float32,float16 on cuda, float32 on cpu)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls each (default: 20 cuda, 3 cpu)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="CPU: torch threads (default: torch's own)")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall",
                        help="CPU: wall time, or this process's CPU time (steadier on a machine shared with other "
                             "jobs; use it with --threads 1, where CPU time is compute time)")
    parser.add_argument("--csv", type=Path, default=None, help="append result rows to this CSV file")
    parser.add_argument("--assert-ratio", type=float, default=None,
                        help="exit 1 if inpaintlab/spandrel median time exceeds this for any dtype")
    args = parser.parse_args(argv)
    common.check_device("bench_upscalers.py", args.device)
    cuda = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" and not cuda else time.perf_counter
    metric = "cpu_time" if clock is time.process_time else "time"
    size = args.size or (512 if cuda else 64)
    repeats = args.repeats or (20 if cuda else 3)
    dtypes = (args.dtypes or ("float32,float16" if cuda else "float32")).split(",")
    name = common.device_name(args.device) if cuda else f"cpu:{common.cpu_name()}:{torch.get_num_threads()} threads"
    print(f"RRDBNet x4, {args.blocks} RRDBs, 64 features, tile 1x3x{size}x{size} -> {4 * size}x{4 * size}, {name}, "
          f"{metric.replace('_', ' ')}")
    worst, rows = 0.0, []
    for dname in dtypes:
        dtype = getattr(torch, dname)
        ours, theirs = build(args.blocks, args.seed, args.device, dtype)
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(args.seed + 1)).to(args.device, dtype)
        with torch.inference_mode():
            diff = (ours(x).float() - theirs(x).float()).abs().max().item()
            fns = {"inpaintlab": lambda m=ours, t=x: m(t), "spandrel": lambda m=theirs, t=x: m(t)}
            times = time_pair(fns, args.device, repeats, args.warmup, clock)
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["inpaintlab"] / med["spandrel"]
        worst = max(worst, ratio)
        print(f"  {dname:8s} inpaintlab {med['inpaintlab'] * 1e3:9.1f} ms   spandrel {med['spandrel'] * 1e3:9.1f} ms   "
              f"ratio {ratio:.3f}   max|diff| {diff:.2e}   (n={repeats})")
        for provider, ts in times.items():
            print(f"    {provider:10s} min {min(ts) * 1e3:9.1f}  median {statistics.median(ts) * 1e3:9.1f}  "
                  f"max {max(ts) * 1e3:9.1f} ms")
        for provider, ts in times.items():
            p50, p20, p80 = common.quantiles_ms([t * 1e3 for t in ts])
            rows.append(dict(op="rrdbnet_x4", provider=provider, shape=f"1x3x{size}x{size},nb{args.blocks}",
                             dtype=dname, metric=metric, unit="ms", p50=f"{p50:.2f}", p20=f"{p20:.2f}",
                             p80=f"{p80:.2f}", device=name, torch=torch.__version__, commit=common.git_commit(),
                             timestamp=common.utc_timestamp()))
        del fns, ours, theirs
    if args.csv:
        common.append_csv(args.csv, rows, CSV_FIELDS)
    if args.assert_ratio is not None and worst > args.assert_ratio:
        print(f"ratio {worst:.3f} exceeds --assert-ratio {args.assert_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
