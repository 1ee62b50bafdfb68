"""The automatic mask generator: segment_anything's SamAutomaticMaskGenerator (and SAM 2's) with bounded memory.

    masks = generate_masks(model, image)       # list of dicts, as SamAutomaticMaskGenerator.generate returns

Same steps, parameters, defaults and results as the reference: a point grid per crop, one positive point per prompt,
multimask output, filter by predicted IoU and stability, box NMS per crop, then across crops, optional small-region
clean-up. The reference upsamples every prompt's three logit maps to full resolution at once
(4·points_per_batch·3·H·W bytes: 21.5 GiB for a 6720×4480 photo); here the low-resolution logits are upsampled a few
masks at a time, filtered, and kept only as run-length encodings, so the peak stays near `memory_budget` bytes
above the model and the output masks, whatever the image size.

SAM 2 differences (spec: SAM2AutomaticMaskGenerator): points in float32, its predictor's own upscaling, and no
small-region clean-up after generation. Any predictor implementing the batch protocol in predictor.py works.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from . import amg
from .common import SegmentError
from .predictor import Predictor, as_rgb

log = logging.getLogger(__name__)

DEFAULTS = dict(points_per_side=32, points_per_batch=64, pred_iou_thresh=0.88, stability_score_thresh=0.95,
                stability_score_offset=1.0, box_nms_thresh=0.7, crop_n_layers=0, crop_nms_thresh=0.7,
                crop_overlap_ratio=512 / 1500, crop_n_points_downscale_factor=1, min_mask_region_area=0)


def inpaint_anything_params(family: str, anime: bool = False) -> dict:
    """Inpaint Anything's generator settings for a model family (its non-macOS values), "anime style" included:
    v1 / HQ / MobileSAM keep the library defaults with batch 64 (HQ 32) and thresholds 0.88 / 0.95 (anime 0.83 /
    0.90); SAM 2 uses 64 points per side, batch 128, thresholds 0.70 / 0.92 (anime 0.65 / 0.87), offset 0.7, one
    crop layer with the points halved."""
    iou, stab = (0.83, 0.90) if anime else (0.88, 0.95)
    if family in ("sam2", "sam2.1"):
        return dict(points_per_side=64, points_per_batch=128, pred_iou_thresh=round(iou - 0.18, 2),
                    stability_score_thresh=round(stab - 0.03, 2), stability_score_offset=0.7, crop_n_layers=1,
                    box_nms_thresh=0.7, crop_n_points_downscale_factor=2)
    return dict(points_per_batch=32 if family == "sam_hq" else 64, pred_iou_thresh=iou, stability_score_thresh=stab)


@dataclass
class _Found:
    """Masks kept so far (RLE), with their boxes (XYXY, image frame once uncropped), scores and points."""

    rles: list = field(default_factory=list)
    boxes: list = field(default_factory=list)
    iou: list = field(default_factory=list)
    stability: list = field(default_factory=list)
    points: list = field(default_factory=list)
    crops: list = field(default_factory=list)

    def extend(self, other: _Found) -> None:
        for name in ("rles", "boxes", "iou", "stability", "points", "crops"):
            getattr(self, name).extend(getattr(other, name))

    def select(self, keep) -> _Found:
        keep = [int(i) for i in keep]
        return _Found(*([getattr(self, n)[i] for i in keep]
                        for n in ("rles", "boxes", "iou", "stability", "points", "crops")))

    def box_tensor(self) -> torch.Tensor:
        return torch.stack(self.boxes) if self.boxes else torch.zeros(0, 4, dtype=torch.int64)


def _chunk_size(shape: tuple[int, int], image_size: int, budget: int) -> int:
    """Masks per upsampling step: the 1024² intermediate and the crop-size logits of each must fit the budget."""
    per_mask = 4 * (image_size * image_size + 2 * shape[0] * shape[1])
    return max(1, budget // per_mask)


def _process_batch(predictor, points: np.ndarray, crop: list[int], full: tuple[int, int], p: dict,
                   budget: int) -> _Found:
    low, iou = predictor._predict_points_batch(points)
    k = low.shape[1]
    low, iou = low.flatten(0, 1), iou.flatten(0, 1).float().cpu()
    pts = np.repeat(points, k, axis=0)
    keep = torch.arange(len(iou))
    if p["pred_iou_thresh"] > 0.0:
        keep = keep[iou[keep] > p["pred_iou_thresh"]]
    found = _Found()
    size = predictor.original_size
    step = _chunk_size(size, getattr(getattr(predictor, "model", None), "image_size", 1024), budget)
    thr = predictor.mask_threshold
    for start in range(0, len(keep), step):
        idx = keep[start:start + step]
        logits = predictor._upscale_logits(low[idx.to(low.device)])
        stab = amg.stability_score(logits, thr, p["stability_score_offset"]).cpu()
        ok = stab >= p["stability_score_thresh"] if p["stability_score_thresh"] > 0.0 else torch.ones_like(stab,
                                                                                                          dtype=bool)
        if not ok.any():
            continue
        masks = (logits[ok.to(logits.device)] > thr).cpu()
        del logits
        boxes = amg.mask_boxes(masks)
        edge = amg.near_crop_edge(boxes, crop, [0, 0, full[1], full[0]])
        masks, boxes = masks[~edge], boxes[~edge]
        sel = idx[ok][~edge]
        found.rles.extend(amg.rle_encode(masks, crop, full))
        found.boxes.extend(boxes)
        found.iou.extend(iou[sel].tolist())
        found.stability.extend(stab[ok][~edge].tolist())
        found.points.extend(pts[sel.numpy()])
        found.crops.extend(list(crop) for _ in range(len(sel)))
    return found


def _process_crop(predictor, image: np.ndarray, crop: list[int], grid: np.ndarray, full, p, budget) -> _Found:
    x0, y0, x1, y1 = crop
    predictor.set_image(image[y0:y1, x0:x1])
    h, w = y1 - y0, x1 - x0
    points = (grid * np.array([[w, h]])).astype(predictor.points_dtype)
    found = _Found()
    n = p["points_per_batch"]
    for start in range(0, len(points), n):
        found.extend(_process_batch(predictor, points[start:start + n], crop, full, p, budget))
    predictor.reset_image()
    found = found.select(amg.nms(found.box_tensor(), torch.tensor(found.iou, dtype=torch.float32),
                                 p["box_nms_thresh"]))
    offset = torch.tensor([x0, y0, x0, y0])
    found.boxes = [b + offset for b in found.boxes]
    found.points = [pt + np.array([x0, y0], dtype=pt.dtype) for pt in found.points]
    return found


def _small_regions(found: _Found, min_area: int, nms_thresh: float) -> _Found:
    """Fill small holes, drop small islands, then NMS preferring unchanged masks; changed survivors re-encoded."""
    if not found.rles:
        return found
    new_masks, scores, boxes = [], [], []
    for rle in found.rles:
        mask = amg.rle_to_mask(rle)
        mask, changed_holes = amg.remove_small_regions(mask, min_area, "holes")
        mask, changed_islands = amg.remove_small_regions(mask, min_area, "islands")
        changed = changed_holes or changed_islands
        scores.append(0.0 if changed else 1.0)
        t = torch.from_numpy(np.ascontiguousarray(mask))[None]
        boxes.append(amg.mask_boxes(t)[0])
        new_masks.append(amg.rle_encode(t, [0, 0, t.shape[2], t.shape[1]], t.shape[1:])[0] if changed else None)
    keep = amg.nms(torch.stack(boxes), torch.tensor(scores), nms_thresh)
    for i in keep.tolist():
        if scores[i] == 0.0:
            found.rles[i], found.boxes[i] = new_masks[i], boxes[i]
    return found.select(keep)


def _anime(mask: np.ndarray) -> np.ndarray:
    """Inpaint Anything's anime style: 5×5 close, then 5×5 open (the area field is left as it was)."""
    kernel = np.ones((5, 5), np.uint8)
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    return cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel).astype(bool)


def generate_masks(model_or_predictor, image, *, points_per_side: int = 32, points_per_batch: int = 64,
                   pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                   stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7, crop_n_layers: int = 0,
                   crop_nms_thresh: float = 0.7, crop_overlap_ratio: float = 512 / 1500,
                   crop_n_points_downscale_factor: int = 1, min_mask_region_area: int = 0,
                   point_grids: list[np.ndarray] | None = None, anime_style: bool = False,
                   region: tuple[int, int, int, int] | None = None, memory_budget: int = 256 << 20) -> list[dict]:
    """Every mask SAM finds in `image` (RGB uint8 array or PIL image), as SamAutomaticMaskGenerator.generate:
    dicts with segmentation (HxW bool), area, bbox (XYWH), predicted_iou, point_coords ([[x, y]]),
    stability_score, crop_box (XYWH). Parameters and defaults are segment_anything's (use
    `inpaint_anything_params(model.family)` for Inpaint Anything's per-family values).

    anime_style: Inpaint Anything's close+open clean-up of every mask. region: (x0, y0, x1, y1) of the image to
    segment; the masks still cover the whole image (zero outside), boxes and points in image coordinates.
    memory_budget: bytes of logits upsampled at a time (results do not depend on it).
    """
    image = as_rgb(image)
    if region is not None:
        return _in_region(model_or_predictor, image, region, locals())
    predictor = model_or_predictor if hasattr(model_or_predictor, "_predict_points_batch") else \
        Predictor(model_or_predictor)
    sam2 = getattr(predictor, "points_dtype", np.float64) == np.float32
    if min_mask_region_area > 0 and sam2:
        raise SegmentError("min_mask_region_area is not supported for SAM 2 models (its generator fills holes "
                           "inside the predictor instead); use 0")
    if points_per_batch < 1 or (point_grids is None and (points_per_side is None or points_per_side < 1)):
        raise SegmentError("points_per_side and points_per_batch must be at least 1")
    grids = point_grids if point_grids is not None else \
        amg.layer_point_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor)
    p = dict(points_per_batch=points_per_batch, pred_iou_thresh=pred_iou_thresh,
             stability_score_thresh=stability_score_thresh, stability_score_offset=stability_score_offset,
             box_nms_thresh=box_nms_thresh)
    full = image.shape[:2]
    boxes, layers = amg.crop_boxes(full, crop_n_layers, crop_overlap_ratio)
    found = _Found()
    with torch.no_grad():
        for crop, layer in zip(boxes, layers):
            found.extend(_process_crop(predictor, image, crop, grids[layer], full, p, memory_budget))
    if len(boxes) > 1:
        scores = 1 / amg.box_area(torch.tensor(found.crops, dtype=torch.int64).reshape(-1, 4))
        found = found.select(amg.nms(found.box_tensor(), scores, crop_nms_thresh))
    if min_mask_region_area > 0:
        found = _small_regions(found, min_mask_region_area, max(box_nms_thresh, crop_nms_thresh))
    out = []
    for i, rle in enumerate(found.rles):
        b, c = found.boxes[i].tolist(), found.crops[i]
        seg = amg.rle_to_mask(rle)
        out.append({"segmentation": _anime(seg) if anime_style else seg, "area": amg.rle_area(rle),
                    "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "predicted_iou": found.iou[i],
                    "point_coords": [found.points[i].tolist()], "stability_score": found.stability[i],
                    "crop_box": [c[0], c[1], c[2] - c[0], c[3] - c[1]]})
    return out


def _in_region(model, image: np.ndarray, region, args: dict) -> list[dict]:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in region)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise SegmentError(f"region {list(region)} is not a non-empty box inside the {w}x{h} image")
    kwargs = {k: v for k, v in args.items() if k not in ("model_or_predictor", "image", "region")}
    masks = generate_masks(model, image[y0:y1, x0:x1], **kwargs)
    for m in masks:
        full = np.zeros((h, w), dtype=bool)
        full[y0:y1, x0:x1] = m["segmentation"]
        m["segmentation"] = full
        m["bbox"] = [m["bbox"][0] + x0, m["bbox"][1] + y0, *m["bbox"][2:]]
        m["point_coords"] = [[m["point_coords"][0][0] + x0, m["point_coords"][0][1] + y0]]
        m["crop_box"] = [m["crop_box"][0] + x0, m["crop_box"][1] + y0, *m["crop_box"][2:]]
    return masks
