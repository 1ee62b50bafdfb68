"""Segment Anything: ViT-B image embedding and the automatic mask generator, inpaintlab vs segment-anything 1.0.

    python benchmarks/bench_segment.py --device cpu                 # embedding at 1024², generator at 1024² and 4096×3072
    python benchmarks/bench_segment.py --device cpu --quick         # tiny sizes (smoke run)
    python benchmarks/run.py --device cuda --only segment           # the same rows inside the suite

Rows:
  embed      one image-encoder call, ViT-B at 1024² (quick: a width-64 ViT at 256²), same random weights in both
             (the reference's state dict loaded strictly into ours); max relative difference of the embeddings.
  generate   the automatic mask generator on a random-texture image with the tiny SAM (inpaintlab.segment.tiny) in
             both: its 256² encoder is cheap, so time and memory are the generator's. Filters off (every candidate is
             upsampled, the worst case). Each run is a fresh process; peak = the process's peak resident memory
             (CPU, ru_maxrss) or torch's peak allocation (CUDA) above the level reached before generating.
             The rows note whether both returned the same masks.
The reference needs torchvision; the test-only stand-in in tests/shims is used when torchvision does not load.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT), str(ROOT / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

import common  # noqa: E402


def _reference():
    from shims import use_torchvision_shim

    use_torchvision_shim()
    import segment_anything

    return segment_anything


def _tiny_pair(device: str):
    """The tiny SAM in inpaintlab and the same weights in segment_anything's Sam."""
    from functools import partial

    import torch

    from inpaintlab.segment import build_tiny_sam
    from inpaintlab.segment.tiny import TINY_SAM

    sa = _reference()
    ours = build_tiny_sam()
    # The tiny file's IoU head is biased to a near-constant 0.95; random IoUs here, so that NMS order is not decided
    # by float noise between near-equal scores.
    head = ours.mask_decoder.iou_prediction_head.layers[-1]
    g = torch.Generator().manual_seed(1)
    head.weight.copy_(torch.randn(head.weight.shape, generator=g) / 16)
    head.bias.zero_()
    ours = ours.to(device)
    c = TINY_SAM
    enc = sa.modeling.ImageEncoderViT(depth=c.depth, embed_dim=c.embed_dim, img_size=c.img_size, mlp_ratio=4,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=c.num_heads,
                                      patch_size=16, qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=c.global_attn_indexes, window_size=c.window_size,
                                      out_chans=256)
    grid = c.img_size // 16
    ref = sa.modeling.Sam(enc, sa.modeling.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                                         input_image_size=(c.img_size,) * 2, mask_in_chans=16),
                          sa.modeling.MaskDecoder(num_multimask_outputs=3, transformer=sa.modeling.TwoWayTransformer(
                              depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256),
                          [123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    ref.load_state_dict(ours.state_dict())
    return ours, ref.to(device).eval()


def child_generate(impl: str, size: str, device: str, points: int, batch: int) -> dict:
    """Runs in its own process: one generator call, its time and its peak memory above the starting level."""
    import numpy as np
    import torch

    w, h = (int(v) for v in size.split("x"))
    ours, ref = _tiny_pair(device)
    rng = np.random.default_rng(0)
    image = np.kron(rng.integers(0, 256, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8),
                    np.ones((64, 64, 1), np.uint8))[:h, :w]
    params = dict(points_per_side=points, points_per_batch=batch, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    with torch.inference_mode():
        if impl == "inpaintlab":
            from inpaintlab.segment import generate_masks

            masks = generate_masks(ours, image, **params)
        else:
            masks = _reference().SamAutomaticMaskGenerator(ref, **params).generate(image)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) - base
    return dict(seconds=seconds, peak_bytes=peak, n=len(masks), areas=[m["area"] for m in masks],
                boxes=[m["bbox"] for m in masks])


def _spawn(impl: str, size: str, device: str, points: int, batch: int) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, "--size", size, "--device", device, "--points", str(points),
           "--batch", str(batch)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    if res.returncode:
        raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "child failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def embed_rows(device: str, quick: bool, reps: int) -> list[dict]:
    import torch

    from inpaintlab.segment import load

    sa = _reference()
    torch.manual_seed(0)
    if quick:
        from inpaintlab.segment import build_tiny_sam

        ours = build_tiny_sam().to(device)
        ref = _tiny_pair(device)[1]
        shape = "1x3x256x256 (tiny ViT)"
    else:
        ref = sa.sam_model_registry["vit_b"]().to(device).eval()
        ours = load(ref.state_dict(), device=device)
        shape = "1x3x1024x1024 (ViT-B)"
    size = ours.image_size
    x = torch.randn(1, 3, size, size, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = {"inpaintlab": [], "segment_anything": []}
    with torch.inference_mode():
        mine, theirs = ours.image_encoder(x)[0], ref.image_encoder(x)
        diff = ((mine - theirs).abs().max() / theirs.abs().max()).item()
        for _ in range(reps):
            for name, fn in (("inpaintlab", lambda: ours.image_encoder(x)), ("segment_anything",
                                                                            lambda: ref.image_encoder(x))):
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append(time.perf_counter() - start)
    rows = []
    for name, ts in times.items():
        p50, p20, p80 = common.quantiles_ms(ts)
        rows.append(dict(op="embed", provider="torch" if name == "inpaintlab" else name, shape=shape,
                         dtype="float32", ms_p50=p50 * 1e3, ms_p20=p20 * 1e3, ms_p80=p80 * 1e3,
                         max_rel_diff=diff, note=f"median of {reps}"))
    return rows


def generate_rows(device: str, quick: bool) -> list[dict]:
    cases = [("256x192", 4, 16)] if quick else [("1024x1024", 8, 64), ("4096x3072", 4, 16)]
    rows = []
    for size, points, batch in cases:
        res = {impl: _spawn(impl, size, device, points, batch) for impl in ("inpaintlab", "segment_anything")}
        # The same masks up to float32 noise: pixels whose logit is within ~1e-6 of 0 may fall either side.
        a, b = res["inpaintlab"], res["segment_anything"]
        worst = max((abs(x - y) for x, y in zip(a["areas"], b["areas"])), default=0)
        boxes = max((abs(u - v) for p, q in zip(a["boxes"], b["boxes"]) for u, v in zip(p, q)), default=0)
        same = f"{'same' if a['n'] == b['n'] else 'DIFFERENT'} count, max |Δarea| {worst} px, max |Δbox| {boxes} px"
        ratio = res["inpaintlab"]["peak_bytes"] / max(1, res["segment_anything"]["peak_bytes"])
        for impl, r in res.items():
            rows.append(dict(op="generate", provider="torch" if impl == "inpaintlab" else impl, shape=size,
                             dtype="float32", ms_p50=r["seconds"] * 1e3, peak_mb=r["peak_bytes"] / 2 ** 20,
                             note=f"{points}² points, batch {batch}, {r['n']} masks, {same}, "
                                  f"peak ratio ours/ref {ratio:.3f}"))
    return rows


def run(device: str, quick: bool) -> list[dict]:
    return embed_rows(device, quick, 1 if quick else 3) + generate_rows(device, quick)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=("embed", "generate"), default=None)
    ap.add_argument("--reps", type=int, default=3, help="timed embedding calls per provider")
    ap.add_argument("--child", choices=("inpaintlab", "segment_anything"), help=argparse.SUPPRESS)
    ap.add_argument("--size", default="1024x1024", help=argparse.SUPPRESS)
    ap.add_argument("--points", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child_generate(args.child, args.size, args.device, args.points, args.batch)))
        return 0
    rows = []
    if args.only in (None, "embed"):
        rows += embed_rows(args.device, args.quick, 1 if args.quick else args.reps)
    if args.only in (None, "generate"):
        rows += generate_rows(args.device, args.quick)
    print(f"# Segment Anything on {common.device_name(args.device)}")
    print("| op | provider | shape | ms p50 | peak MiB | max rel diff | note |\n|---|---|---|---|---|---|---|")
    for r in rows:
        peak = f"{r['peak_mb']:.1f}" if "peak_mb" in r else "-"
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else "-"
        print(f"| {r['op']} | {r['provider']} | {r['shape']} | {r['ms_p50']:.1f} | {peak} | {diff} | {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
