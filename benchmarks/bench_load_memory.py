"""Peak resident memory of `inpaintlab.load()` on a full-size SDXL checkpoint (fp16, about 6.9 GB).

    python benchmarks/bench_load_memory.py [--dir /tmp] [--keep] [--md benchmarks/results/load-memory-sdxl.md]

Writes a random SDXL base file in the original single-file layout (every key and shape of sd_xl_base_1.0:
UNet 1680, VAE 248, CLIP-L 197, OpenCLIP bigG 390 = 2515 tensors, fp16), streaming one tensor at a time so the
writer itself never holds the model, then loads it in a fresh Python process with `dtype=None` (keep the file's
fp16) and reports that process's peak resident set size (VmHWM, which also counts any memory-mapped file pages it
touched) against the file size and against the process's resident size before loading (torch imported).

Not part of the test suite: it needs ~7 GB of disk and ~8 GB of free memory, and takes minutes on a CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
import torch
import inpaintlab

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
before = status("VmRSS")
start = time.perf_counter()
pipe = inpaintlab.load(sys.argv[1], dtype=None, kernels="torch")
seconds = time.perf_counter() - start
params = sum(p.numel() for m in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2) for p in m.parameters())
print(json.dumps({"rss_before": before, "rss_after": status("VmRSS"), "peak_rss": status("VmHWM"),
                  "seconds": seconds, "params": params, "family": pipe.config.family,
                  "dtype": str(next(pipe.unet.parameters()).dtype)}))
"""


def sdxl_shapes() -> dict[str, tuple[tuple[int, ...], str]]:
    """{key: (shape, safetensors dtype)} of a full SDXL base checkpoint, from the models on the meta device."""
    import torch

    from inpaintlab.checkpoint import SDXL_CLIP_G_PREFIX, SDXL_CLIP_L_PREFIX, UNET_PREFIX, VAE_PREFIX
    from inpaintlab.clip.model import CLIPTextConfig, CLIPTextTransformer
    from inpaintlab.clip.openclip import VIT_BIGG_14, OpenCLIPTextTransformer
    from inpaintlab.unet import SDXL_UNET, UNetModel
    from inpaintlab.vae import AutoencoderKL, VAEConfig

    shapes = {}
    with torch.device("meta"):
        for prefix, module in ((UNET_PREFIX, UNetModel(SDXL_UNET)), (VAE_PREFIX, AutoencoderKL(VAEConfig())),
                               (SDXL_CLIP_L_PREFIX, CLIPTextTransformer(CLIPTextConfig())),
                               (SDXL_CLIP_G_PREFIX, OpenCLIPTextTransformer(VIT_BIGG_14))):
            shapes.update({prefix + k: (tuple(v.shape), "F16") for k, v in module.state_dict().items()})
    shapes[SDXL_CLIP_L_PREFIX + "embeddings.position_ids"] = ((1, 77), "I64")
    shapes[SDXL_CLIP_G_PREFIX + "logit_scale"] = ((), "F16")
    return shapes


def write_random_checkpoint(path: Path, seed: int = 0) -> int:
    """Stream a safetensors file tensor by tensor (header first, offsets from the shapes); returns its size."""
    import torch

    shapes = sdxl_shapes()
    header, offset = {}, 0
    for key, (shape, dtype) in shapes.items():
        nbytes = (8 if dtype == "I64" else 2) * int(torch.Size(shape).numel())
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    g = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for shape, dtype in shapes.values():
            if dtype == "I64":
                t = torch.arange(77, dtype=torch.int64).reshape(shape)
            else:
                fan_in = max(1, int(torch.Size(shape[1:]).numel()))
                t = (torch.randn(shape, generator=g) * fan_in ** -0.5).to(torch.float16)
            f.write(t.numpy().tobytes())
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="/tmp", help="where the ~6.9 GB random file is written")
    ap.add_argument("--keep", action="store_true", help="keep the file afterwards")
    ap.add_argument("--md", help="also write the result as markdown here")
    args = ap.parse_args(argv)
    path = Path(args.dir) / "sdxl-random-fp16.safetensors"
    start = time.perf_counter()
    size = write_random_checkpoint(path)
    write_s = time.perf_counter() - start
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True,
                              check=False)
        if proc.returncode:
            print(proc.stderr[-4000:], file=sys.stderr)
            return proc.returncode
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    gb = 1e9
    result.update(file_bytes=size, write_seconds=write_s, peak_over_file=result["peak_rss"] / size,
                  load_over_file=(result["peak_rss"] - result["rss_before"]) / size)
    lines = [
        "# Peak memory of `inpaintlab.load()` on a full-size SDXL checkpoint",
        "",
        f"Made by `python benchmarks/bench_load_memory.py` on an {platform.machine()} CPU "
        f"machine ({os.cpu_count()} cores, Linux), {time.strftime('%Y-%m-%d', time.gmtime())}: a random SDXL base "
        "file in the original single-file layout (2515 tensors, fp16), loaded with `dtype=None` (the file's fp16) in "
        "a fresh process.",
        "",
        "| file | parameters | RSS before load | peak RSS (VmHWM) | RSS after | peak / file | (peak - before) / file "
        "| load time |",
        "|---|---|---|---|---|---|---|---|",
        f"| {size / gb:.2f} GB | {result['params'] / 1e9:.3f} B | {result['rss_before'] / gb:.2f} GB | "
        f"{result['peak_rss'] / gb:.2f} GB | {result['rss_after'] / gb:.2f} GB | {result['peak_over_file']:.2f}x | "
        f"{result['load_over_file']:.2f}x | {result['seconds']:.0f} s |",
        "",
        "How: the safetensors file is read tensor by tensor with plain reads (no memory map, whose touched pages "
        "would count as resident too), the networks are built on the meta device, and each tensor is handed to its "
        "module (`load_state_dict(assign=True)`) without a second copy; with a `dtype` other than the file's, each "
        "tensor is cast as it is placed and its fp16 original released, so the peak is about the cast model plus one "
        "tensor.",
    ]
    md = "\n".join(lines) + "\n"
    print(md)
    print(json.dumps(result))
    if args.md:
        Path(args.md).write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
