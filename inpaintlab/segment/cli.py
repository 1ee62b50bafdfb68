"""Command-line pieces for segmentation: `inpaintlab segment`, `inpaintlab mask`, and the inpaint command's
`--mask-points` / `--mask-box` with `--sam` (masks made by SAM instead of a mask file).

The parsers need no torch (`inpaintlab --help` and `info` stay quick); the commands import the networks when they run.
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from ..files import prepare_out_dir, write_atomic, write_text_atomic

COMMANDS = ("segment", "mask")


def _error(message: str) -> Exception:
    from .common import SegmentError

    return SegmentError(message)


def parse_points(text: str | None) -> Any:
    """"x,y x,y ..." (spaces or semicolons between points) -> [N, 2] floats (a numpy array), or None."""
    import numpy as np

    if not text:
        return None
    try:
        pts = [[float(v) for v in p.split(",")] for p in text.replace(";", " ").split()]
    except ValueError:
        raise _error(f"points must look like 'x,y x,y', got {text!r}") from None
    if any(len(p) != 2 for p in pts):
        raise _error(f"points must look like 'x,y x,y', got {text!r}")
    return np.array(pts)


def parse_box(text: str | None) -> Any:
    import numpy as np

    if not text:
        return None
    try:
        box = [float(v) for v in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise _error(f"a box is 'x0,y0,x1,y1', got {text!r}")
    return np.array(box)


def _labels(text: str | None, n: int) -> Any:
    import numpy as np

    if not text:
        return np.ones(n, dtype=int)
    labels = [int(v) for v in text.replace(",", " ").split()]
    if len(labels) != n:
        raise _error(f"{n} points and {len(labels)} labels: give one label (1 or 0) per point")
    return np.array(labels)


def _add_sam_args(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--sam", required=required, help="Segment Anything file: SAM, HQ-SAM, MobileSAM or SAM 2 "
                                                          "(.pth/.pt read weights-only, or .safetensors)")
    parser.add_argument("--sam-device", default="cpu", help="torch device for SAM (default: cpu)")


def _add_generator_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--anime", action="store_true", help="Inpaint Anything's anime style (lower thresholds, "
                                                             "close+open clean-up)")
    parser.add_argument("--region", help="segment only this box x0,y0,x1,y1 (masks keep the image's size)")
    for name in ("points_per_side", "points_per_batch", "crop_n_layers", "min_mask_region_area"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, help=f"generator {name} (default: Inpaint "
                                                                          "Anything's for the model family)")
    for name in ("pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, help=f"generator {name}")


def add_commands(commands, add_common) -> None:
    """Register `segment` and `mask` on the main parser's subcommands."""
    seg = commands.add_parser("segment", help="segment an image with SAM's automatic mask generator: a segment map "
                                              "(segments.png), one PNG per mask and masks.json")
    add_common(seg)
    seg.add_argument("image", help="picture to segment")
    _add_sam_args(seg, True)
    seg.add_argument("--out", required=True, help="output folder (created if missing)")
    _add_generator_args(seg)

    mask = commands.add_parser("mask", help="make a mask: SAM prompted by points / a box, or the segments touched by "
                                            "a sketch or points (Inpaint Anything's 'Create mask')")
    add_common(mask)
    mask.add_argument("image", help="picture the mask is for")
    _add_sam_args(mask, True)
    mask.add_argument("--out", required=True, help="mask PNG to write (white = repaint)")
    mask.add_argument("--points", help="prompt points 'x,y x,y' for SAM's predictor")
    mask.add_argument("--labels", help="one label per point: 1 include, 0 exclude (default: all 1)")
    mask.add_argument("--box", help="prompt box x0,y0,x1,y1 for SAM's predictor")
    mask.add_argument("--sketch", help="image whose painted (non-zero) pixels pick segments of the segment map")
    mask.add_argument("--select", help="points 'x,y x,y' picking segments of the segment map")
    mask.add_argument("--include-black", action="store_true", help="let the sketch select uncovered pixels too")
    _add_generator_args(mask)
    mask.add_argument("--expand", type=int, default=0, help="grow the mask by N pixels (3x3 dilation N times)")
    mask.add_argument("--erode", type=int, default=0, help="shrink the mask by N pixels")
    mask.add_argument("--feather", type=float, default=0.0, help="Gaussian blur radius of the mask edge")
    mask.add_argument("--invert", action="store_true", help="invert the mask")


def add_inpaint_mask_args(parser: argparse.ArgumentParser, group) -> None:
    """`--mask-points` / `--mask-box` in the inpaint command's mask group, with `--sam`."""
    group.add_argument("--mask-points", help="make the mask with SAM from points 'x,y x,y' (needs --sam)")
    group.add_argument("--mask-box", help="make the mask with SAM from a box x0,y0,x1,y1 (needs --sam)")
    parser.add_argument("--mask-labels", help="labels for --mask-points: 1 include, 0 exclude (default: all 1)")
    parser.add_argument("--mask-expand", type=int, default=0, help="grow the SAM mask by N pixels")
    _add_sam_args(parser, False)


def _png(image: Any):
    from PIL import Image

    def write(handle):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        handle.write(buf.getvalue())
    return write


def prompt_mask(sam: str, image, points=None, labels=None, box=None, device: str = "cpu") -> Any:
    from .load import load
    from .masks import mask_from_prompt
    from .predictor import Predictor

    predictor = Predictor(load(sam, device=device))
    predictor.set_image(image)
    return mask_from_prompt(predictor, points, labels, box)


def mask_from_args(args, image: Any) -> Any:
    """The inpaint command's SAM mask (an "L" PIL image, white = repaint) from --mask-points / --mask-box."""
    from PIL import Image

    from .masks import expand_mask
    from .predictor import as_rgb

    if not args.sam:
        raise _error("--mask-points / --mask-box need --sam FILE")
    points = parse_points(args.mask_points)
    labels = _labels(args.mask_labels, len(points)) if points is not None else None
    mask = prompt_mask(args.sam, as_rgb(image), points, labels, parse_box(args.mask_box), args.sam_device)
    if args.mask_expand:
        mask = expand_mask(mask, args.mask_expand)
    return Image.fromarray(mask)


def _open_rgb(path: str) -> Any:
    from ..cli import open_image
    from .predictor import as_rgb

    return as_rgb(open_image(path))


def _generate(args, image: Any, model) -> list[dict]:
    from .generator import DEFAULTS, generate_masks, inpaint_anything_params

    params = {**DEFAULTS, **inpaint_anything_params(model.family, getattr(args, "anime", False))}
    for name in DEFAULTS:
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    region = parse_box(getattr(args, "region", None))
    return generate_masks(model, image, anime_style=getattr(args, "anime", False),
                          region=None if region is None else tuple(region), **params)


def run(args) -> int:
    """Run `segment` or `mask`; errors are SegmentError (one line)."""
    import numpy as np
    from PIL import Image

    from .load import load
    from .masks import erode_mask, expand_mask, feather_mask, invert_mask, mask_from_prompt, segment_map, select, sort_masks
    from .predictor import Predictor

    image = _open_rgb(args.image)
    model = load(args.sam, device=args.sam_device)
    if args.command == "segment":
        out = prepare_out_dir(args.out)
        masks = sort_masks(_generate(args, image, model))
        write_atomic(out / "segments.png", _png(segment_map(masks, image.shape[:2])))
        (out / "masks").mkdir(exist_ok=True)
        records = []
        for i, m in enumerate(masks):
            name = f"masks/{i:04d}.png"
            write_atomic(out / name, _png(np.where(m["segmentation"], np.uint8(255), np.uint8(0))))
            records.append({"file": name, **{k: v for k, v in m.items() if k != "segmentation"}})
        write_text_atomic(out / "masks.json", json.dumps(records, indent=1))
        print(f"{len(masks)} segments -> {out}")
        return 0
    points, box = parse_points(args.points), parse_box(args.box)
    chosen = [x for x in (points is not None or box is not None, bool(args.sketch or args.select)) if x]
    if len(chosen) != 1:
        raise _error("give --points/--box (SAM prompt) or --sketch/--select (pick segments), one of the two")
    if points is not None or box is not None:
        predictor = Predictor(model)
        predictor.set_image(image)
        labels = _labels(args.labels, len(points)) if points is not None else None
        mask = mask_from_prompt(predictor, points, labels, box)
    else:
        sketch = np.asarray(Image.open(args.sketch).convert("L")) if args.sketch else None
        mask = select(_generate(args, image, model), sketch, parse_points(args.select),
                      ignore_black=not args.include_black)
    if args.expand:
        mask = expand_mask(mask, args.expand)
    if args.erode:
        mask = erode_mask(mask, args.erode)
    if args.feather:
        mask = feather_mask(mask, args.feather)
    if args.invert:
        mask = invert_mask(mask)
    out = Path(args.out)
    if out.parent and not out.parent.is_dir():
        raise _error(f"{out.parent}: folder does not exist")
    write_atomic(out, _png(mask))
    print(f"wrote {out}")
    return 0
