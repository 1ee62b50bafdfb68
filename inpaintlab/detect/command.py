"""``inpaintlab detect IMAGE --model face_yolov8n.pt``: boxes, scores and masks of one image, written to --out.

Writes ``<image stem>-detections.json`` (boxes in image pixels x1, y1, x2, y2; scores; classes and their names, in
NMS order) and one ``<image stem>-mask-NN.png`` per detection: the mask ADetailer starts from (the box filled for
detection models, the segmentation mask resized to the image for -seg models).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..files import prepare_out_dir, write_atomic, write_text_atomic


def add_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    sub = commands.add_parser("detect", help="YOLOv8 detection/segmentation of one image (ADetailer's detectors)")
    sub.add_argument("image", help="image to detect on")
    sub.add_argument("--model", required=True,
                     help="YOLOv8 detect/segment file: Ultralytics .pt (read without running pickled code) or "
                          ".safetensors, e.g. face_yolov8n.pt")
    sub.add_argument("--conf", type=float, default=0.3, help="confidence threshold, 0-1 (default: 0.3, ADetailer's)")
    sub.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default: 0.7)")
    sub.add_argument("--imgsz", type=int, default=640, help="network input long side (default: 640)")
    sub.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    sub.add_argument("--out", required=True, help="output folder (created if missing)")
    return sub


def run_detect(args: argparse.Namespace) -> list[Path]:
    """Detect on ``args.image`` with ``args.model``; returns the written paths (the JSON first)."""
    from ..adetailer.technique import adetailer_prediction
    from . import detect, load_detector

    image_path = Path(args.image)
    try:
        with Image.open(image_path) as opened:
            image = opened.convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise ValueError(f"{image_path}: cannot read the image ({error})") from None
    out = prepare_out_dir(args.out)
    detector = load_detector(args.model, device=args.device)
    found = detect(detector, image, conf=args.conf, iou=args.iou, imgsz=args.imgsz)
    record = {"image": str(image_path), "model": str(args.model), "size": [image.width, image.height],
              "detections": [{"box": [round(v, 3) for v in box], "score": round(score, 5), "class": cls,
                              "name": detector.names.get(cls, str(cls))}
                             for box, score, cls in zip(found.boxes.tolist(), found.scores.tolist(),
                                                        found.classes.tolist())]}
    stem = image_path.stem
    paths = [write_text_atomic(out / f"{stem}-detections.json", json.dumps(record, indent=1) + "\n")]
    pred = adetailer_prediction(found, image.size)
    for j, mask in enumerate(pred.masks if pred else []):
        paths.append(write_atomic(out / f"{stem}-mask-{j:02d}.png", lambda h, m=mask: m.save(h, format="PNG")))
    return paths
