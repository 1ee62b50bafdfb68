"""Segment Anything as an ADetailer detector: a prompt (clicks and/or a box) or SAM's automatic masks.

    detector = sam_detector("sam_vit_b_01ec64.pth", points=[(120, 80)])
    pipe.txt2img("a portrait", techniques=[ADetailer(ADetailerUnit("sam"), detectors={"sam": detector})])

The callable answers a `Prediction` (image -> bboxes, masks, confidences), so ADetailer's mask pipeline (area filters,
top k, sort, offsets, dilate/erode, merge) runs on SAM's masks as on YOLO's. Boxes are the masks' bounding boxes;
confidence is SAM's predicted IoU for automatic masks and 1.0 for a prompted one. ADetailer's confidence threshold
is not applied (it is YOLO's own threshold).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .masks import Prediction, masks_from_images


def sam_detector(sam: Any, points: Any = None, labels: Any = None, box: Any = None, *, multimask: bool = True,
                 **generator_options: Any) -> Callable[[Image.Image], Prediction | None]:
    """A detector callable for `ADetailer(detectors=...)` from a SAM model, a Predictor or a SAM file path.

    With points and/or a box: one mask per image, `inpaintlab.segment.mask_from_prompt` (the best of SAM's masks
    by predicted IoU). Without a prompt: every mask of `inpaintlab.segment.generate_masks(**generator_options)`, in
    its order. Returns None when SAM finds nothing.
    """
    from ..segment import Predictor, SegmentError, generate_masks, load, mask_from_prompt

    prompted = points is not None or box is not None
    if not prompted and (labels is not None):
        raise SegmentError("SAM detector: labels given without points")
    if prompted and generator_options:
        raise SegmentError(f"SAM detector: {', '.join(sorted(generator_options))} apply to automatic masks only "
                           "(no points or box)")
    model = load(sam) if isinstance(sam, (str, Path)) else sam
    predictor = model if hasattr(model, "set_image") else Predictor(model)

    def detect(image: Image.Image) -> Prediction | None:
        rgb = np.asarray(image.convert("RGB"))
        if prompted:
            predictor.set_image(rgb)
            mask = mask_from_prompt(predictor, points, labels, box, multimask=multimask)
            found = [(mask, 1.0)]
        else:
            found = [(m["segmentation"].astype(np.uint8) * 255, float(m["predicted_iou"]))
                     for m in generate_masks(predictor, rgb, **generator_options)]
        found = [(Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8), "L"), score) for mask, score in found]
        found = [(mask, score) for mask, score in found if mask.getbbox() is not None]  # empty masks are no detection
        if not found:
            return None
        pred = masks_from_images([mask for mask, _ in found])  # boxes as for any mask-returning detector
        return Prediction(pred.bboxes, pred.masks, [score for _, score in found])

    return detect
