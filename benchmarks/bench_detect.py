"""CPU timing of YOLOv8n detection (inpaintlab.detect vs Ultralytics 8.4.190 in the same run), and of one ADetailer
face pass beside the main generation it follows.

Detection: a random-weight yolov8n (1 class) built and saved by Ultralytics, loaded by both; a 1024×1024 image,
letterboxed to 640×640; each provider's full ``predict`` (preprocess, forward with fused BN, NMS, boxes) at
conf 0.3; calls alternate after a warm-up. The pass: the tiny SD1 checkpoint (`inpaintlab tiny`) — txt2img at
--size, then one ADetailer tab with a Python detector returning one face-sized mask (only masked, padding 32).

    python benchmarks/bench_detect.py --repeats 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # time this checkout's inpaintlab
    sys.path.insert(0, str(ROOT))


def _ultralytics_model(folder: Path) -> Path:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_VERBOSE"] = "False"
    sys.path.insert(0, str(ROOT / "tests"))
    from shims import use_torchvision_shim  # test-only torchvision stand-in the oracle imports

    use_torchvision_shim()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    wrapper = YOLO("yolov8n.yaml", verbose=False)
    args = wrapper.model.args
    wrapper.model = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    wrapper.model.args, wrapper.ckpt = args, {"train_args": dict(args)}
    path = folder / "bench_yolov8n.pt"
    wrapper.save(path)
    return path


def _alternate(fns: dict, repeats: int) -> dict[str, float]:
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_detection(repeats: int, folder: Path) -> list[tuple[str, str, float]]:
    from inpaintlab.detect import detect, load_detector

    path = _ultralytics_model(folder)  # sets up the oracle's imports first
    from ultralytics import YOLO

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8))
    ours = load_detector(path)
    theirs = YOLO(str(path), verbose=False)
    with torch.inference_mode():
        ms = _alternate({"inpaintlab": lambda: detect(ours, image, conf=0.3),
                         "ultralytics": lambda: theirs(image, conf=0.3, device="cpu", verbose=False)}, repeats)
    return [("YOLOv8n detect, 1024² → 640²", k, v) for k, v in ms.items()]


def bench_pass(repeats: int, folder: Path, size: int) -> list[tuple[str, str, float]]:
    import inpaintlab
    from inpaintlab.adetailer import ADetailerUnit, detail_image
    from inpaintlab.tiny import make_tiny_checkpoint

    pipe = inpaintlab.load(make_tiny_checkpoint(folder / "tiny.safetensors"), kernels="torch")
    settings = {"steps": 20, "sampler": "Euler a", "seed": 1, "width": size, "height": size}
    face = Image.new("L", (size, size))
    ImageDraw.Draw(face).ellipse((size // 3, size // 4, size // 2, size // 2), fill=255)
    picture = pipe.txt2img("a portrait", **settings).images[0]
    unit = ADetailerUnit("face")

    def one_pass():
        detail_image(pipe, picture, [unit], seed=1, prompt="a portrait", settings=settings,
                     detectors={"face": lambda im: [face]})

    ms = _alternate({"main txt2img": lambda: pipe.txt2img("a portrait", **settings), "one face pass": one_pass},
                    repeats)
    return [(f"tiny SD1, {size}², 20 steps (pass: denoise 0.4)", k, v) for k, v in ms.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per provider (median reported)")
    parser.add_argument("--size", type=int, default=256, help="main image size for the pass timing (default 256)")
    parser.add_argument("--skip-pass", action="store_true", help="time detection only")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_detection(args.repeats, Path(tmp))
        if not args.skip_pass:
            rows += bench_pass(args.repeats, Path(tmp), args.size)
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print("| case | provider | ms (median) |\n|---|---|---|")
    for case, provider, ms in rows:
        print(f"| {case} | {provider} | {ms:.1f} |")
    det = {p: ms for c, p, ms in rows if c.startswith("YOLOv8n")}
    print(f"\ninpaintlab / ultralytics detection time: {det['inpaintlab'] / det['ultralytics']:.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
