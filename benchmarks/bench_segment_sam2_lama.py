"""Benchmark: SAM 2 Hiera-T image embedding at 1024² vs sam2==1.1.0, and big-LaMa at 1024² vs spandrel==0.4.2.

    python benchmarks/bench_segment_sam2_lama.py [--device cuda|cpu] [--dtype float32|bfloat16|float16] [--quick]
                                                 [--reps N] [--json PATH] [--md PATH]

Providers share the same random weights (inpaintlab's randomisers, loaded strictly into ours) and inputs:
    sam2_embed   ours: SAM2Model.image_features (trunk + neck + the decoder's high-res projections + no_mem_embed)
                 sam2: SAM2Base.forward_image + the predictor's no_mem_embed add (what SAM2ImagePredictor.set_image runs)
    lama         ours: FFCResNetGenerator;  spandrel: spandrel's FFCResNetGenerator
Each row also carries the max |ours - reference| of the outputs. `--quick` runs LaMa at 512² (`--lama-size N` any side);
the reference packages need torchvision, so the test-only stand-in in tests/shims is used when it does not import.
The reference sam2 / spandrel code is timed as shipped; both sides run under torch.inference_mode().
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import common  # noqa: E402

COLUMNS = ["op", "provider", "shape", "dtype", "ms_p50", "ms_p20", "ms_p80", "vs_ref", "max_err"]


def _use_references() -> None:
    """Make sam2 and spandrel importable (torchvision stand-in, sam2's transforms as scriptable modules)."""
    from shims import use_torchvision_shim

    use_torchvision_shim()
    sys.path.insert(0, str(ROOT / "tests" / "segment"))
    from sam2_reference import use_sam2_transforms

    use_sam2_transforms()


def sam2_cases(device: str, dtype, reps: int) -> list[dict]:
    import torch

    from inpaintlab.segment.sam2 import build_sam2

    _use_references()
    # The released Hiera-T, built by sam2's own hydra config, randomised and loaded strictly into ours.
    ref = _reference_t()
    ours = build_sam2(ref.state_dict()).to(device, dtype)
    ref = ref.to(device, dtype)
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(0)).to(device, dtype)

    def run_ours():
        return ours.image_features(x)["image_embed"]

    def run_ref():
        out = ref.forward_image(x)
        return out["vision_features"] + ref.no_mem_embed.reshape(1, -1, 1, 1)

    with torch.inference_mode():
        err = (run_ours().float() - run_ref().float()).abs().max().item()
        rows = []
        for name, (p50, p20, p80) in timed_pair([("ours", run_ours), ("sam2", run_ref)], reps, device).items():
            rows.append(dict(op="sam2_embed Hiera-T", provider=name, shape="1x3x1024x1024", dtype=str(dtype)[6:],
                             ms_p50=p50, ms_p20=p20, ms_p80=p80, max_err=err))
    return rows


def _reference_t():
    """sam2's Hiera-T model from its own config, every tensor re-drawn by inpaintlab's SAM 2 randomiser."""
    from sam2.build_sam import build_sam2

    from inpaintlab.segment.sam2 import randomize_sam2

    model = build_sam2("configs/sam2/sam2_hiera_t.yaml", None, device="cpu", apply_postprocessing=False)
    return randomize_sam2(model, 0).eval()


def lama_cases(device: str, size: int, reps: int, tiny: bool = False) -> list[dict]:
    import torch

    from inpaintlab.lama import TINY_LAMA, load_lama, randomize_lama

    _use_references()
    from spandrel.architectures.LaMa.__arch.LaMa import FFCResNetGenerator

    ref = FFCResNetGenerator(4, 3, ngf=TINY_LAMA.ngf, n_blocks=TINY_LAMA.n_blocks) if tiny else FFCResNetGenerator(4, 3)
    ref = randomize_lama(ref, 0).eval()
    ours = load_lama(ref.state_dict(), device=device)
    ref = ref.to(device)
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g).to(device)
    mask = (torch.rand(1, 1, size, size, generator=g) > 0.7).float().to(device)
    masked = image * (1 - mask)
    feed = torch.cat([masked, mask], dim=1)

    with torch.inference_mode():
        err = (ours(feed) - ref(masked, mask)).abs().max().item()
        rows = []
        providers = [("ours", lambda: ours(feed)), ("spandrel", lambda: ref(masked, mask))]
        for name, (p50, p20, p80) in timed_pair(providers, reps, device).items():
            rows.append(dict(op="lama tiny" if tiny else "lama big-lama", provider=name, shape=f"1x4x{size}x{size}",
                             dtype="float32", ms_p50=p50, ms_p20=p20, ms_p80=p80, max_err=err))
    return rows


def timed_pair(providers: list[tuple[str, object]], reps: int, device: str) -> dict[str, tuple[float, float, float]]:
    """(p50, p20, p80) ms per provider. On the CPU the providers alternate run by run after one warm-up each, so a
    machine whose load drifts (shared cores) slows both alike; on CUDA each is timed by do_bench in turn."""
    if device == "cuda":
        return {name: common.time_cuda(fn) for name, fn in providers}
    import time

    for _, fn in providers:
        fn()
    times: dict[str, list[float]] = {name: [] for name, _ in providers}
    for _ in range(reps):
        for name, fn in providers:
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: common.quantiles_ms(t) for name, t in times.items()}


def _with_ratio(rows: list[dict]) -> list[dict]:
    ref_ms = {r["op"]: r["ms_p50"] for r in rows if r["provider"] != "ours"}
    for r in rows:
        r["vs_ref"] = ref_ms[r["op"]] / r["ms_p50"] if r["op"] in ref_ms else None
    return rows


def table(rows: list[dict], meta: dict) -> str:
    body = [[r["op"], r["provider"], r["shape"], r["dtype"], f"{r['ms_p50']:.1f}", f"{r['ms_p20']:.1f}",
             f"{r['ms_p80']:.1f}", "-" if r["vs_ref"] is None else f"{r['vs_ref']:.2f}x", f"{r['max_err']:.2e}"]
            for r in rows]
    header = (f"device: {meta['device']}  torch {meta['torch']}  commit {meta['git_commit']}  "
              "(vs_ref = reference p50 / this p50: above 1 is faster than the reference)")
    return common.markdown_table(header, ["op", "provider", "shape", "dtype", "p50 ms", "p20 ms", "p80 ms",
                                          "speed vs ref", "max err"], body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                    help="SAM 2 rows' dtype (LaMa runs in float32, as spandrel's FFT path needs)")
    ap.add_argument("--quick", action="store_true", help="LaMa at 512² instead of 1024²")
    ap.add_argument("--lama-size", type=int, default=None, help="LaMa input side (a multiple of 8; overrides --quick)")
    ap.add_argument("--tiny-lama", action="store_true", help="LaMa rows on the tiny test generator (a smoke run)")
    ap.add_argument("--reps", type=int, default=None, help="timed runs per provider on the CPU (default 3)")
    ap.add_argument("--only", choices=("sam2", "lama"), default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    common.check_device("bench_segment_sam2_lama.py", args.device)
    dtype = getattr(torch, args.dtype)
    reps = args.reps or 3
    meta = common.run_metadata(common.device_name(args.device) if args.device == "cuda" else common.cpu_name())
    rows = []
    if args.only in (None, "sam2"):
        rows += sam2_cases(args.device, dtype, reps)
    if args.only in (None, "lama"):
        rows += lama_cases(args.device, args.lama_size or (512 if args.quick else 1024), reps, args.tiny_lama)
    rows = [dict(r, **meta) for r in _with_ratio(rows)]
    text = table(rows, meta)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"metadata": meta, "rows": rows}, indent=1))
    if args.md:
        args.md.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
