"""ADetailer's mask pipeline (Bing-su/adetailer 25.3.0 ``pred_preprocessing``), as pure functions on PIL masks.

Order: keep detections whose *bbox* area ratio lies in [min, max]; keep the top k by area or confidence; sort by the
global order option; then per mask offset (wrapping around the edges), dilate/erode with a rectangular kernel (all-black
results dropped), and finally merge / merge-and-invert.
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .unit import FILTER_METHODS, MERGE_MODES  # noqa: F401  (re-exported: the mask pipeline's choices)

SORT_ORDERS = ("None", "Position (left to right)", "Position (center to edge)", "Area (large to small)")


@dataclasses.dataclass
class Prediction:
    """A detector's answer: boxes (x1, y1, x2, y2 in image pixels), one L mask (0-255) and one confidence each."""
    bboxes: list[list[float]]
    masks: list[Image.Image]
    confidences: list[float]

    def __len__(self) -> int:
        return len(self.bboxes)

    def take(self, order: list[int]) -> Prediction:
        return Prediction([self.bboxes[i] for i in order], [self.masks[i] for i in order],
                          [self.confidences[i] for i in order])


def rectangle_masks(bboxes: list[list[float]], size: tuple[int, int]) -> list[Image.Image]:
    """One filled rectangle per box, drawn by Pillow (float corners truncated, both corners included)."""
    out = []
    for box in bboxes:
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).rectangle(list(box), fill=255)
        out.append(mask)
    return out


def masks_from_images(masks: list[Image.Image]) -> Prediction:
    """A Prediction for masks given directly (e.g. a Python detector): each box is its mask's bounding box."""
    masks = [m.convert("L") for m in masks]
    keep = [m for m in masks if m.getbbox() is not None]
    return Prediction([list(m.getbbox()) for m in keep], keep, [1.0] * len(keep))


def bbox_area(box: list[float]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def filter_by_ratio(pred: Prediction, low: float, high: float, size: tuple[int, int]) -> Prediction:
    """Keep detections with low <= bbox area / image area <= high (the box's area, not the mask's)."""
    area = size[0] * size[1]
    return pred.take([i for i, box in enumerate(pred.bboxes) if low <= bbox_area(box) / area <= high])


def filter_k_by(pred: Prediction, k: int, by: str = "Area") -> Prediction:
    """The k largest boxes (or k most confident), largest first; k <= 0 keeps all.

    numpy's default argsort (not stable) taken from the end, as ADetailer does: ties can come out in either order.
    """
    if k <= 0 or not len(pred):
        return pred
    key = [bbox_area(b) for b in pred.bboxes] if by == "Area" else list(pred.confidences)
    order = np.argsort(np.asarray(key))[-k:][::-1]
    return pred.take([int(i) for i in order])


def sort_bboxes(pred: Prediction, order: str, size: tuple[int, int]) -> Prediction:
    """ADetailer's "Sort bbox" option; Python's stable sort."""
    if order == "None" or not len(pred):
        return pred
    if order == "Position (left to right)":
        key = [b[0] for b in pred.bboxes]
    elif order == "Position (center to edge)":
        cx, cy = size[0] / 2, size[1] / 2
        key = [((b[0] + b[2]) / 2 - cx) ** 2 + ((b[1] + b[3]) / 2 - cy) ** 2 for b in pred.bboxes]
    elif order == "Area (large to small)":
        key = [-bbox_area(b) for b in pred.bboxes]
    else:
        raise ValueError(f"unknown bbox sort order {order!r}; expected one of {', '.join(SORT_ORDERS)}")
    return pred.take(sorted(range(len(pred)), key=lambda i: key[i]))


def offset(mask: Image.Image, x: int = 0, y: int = 0) -> Image.Image:
    """Move the mask x right and y *up*, wrapping around the edges (Pillow's ImageChops.offset)."""
    return ImageChops.offset(mask, x, -y)


def dilate_erode(mask: Image.Image, value: int) -> Image.Image:
    """value > 0 dilates, < 0 erodes, with a |value|×|value| rectangle (OpenCV; an even size grows |v|/2 right/down
    and |v|/2 - 1 left/up)."""
    if value == 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (abs(value), abs(value)))
    op = cv2.dilate if value > 0 else cv2.erode
    return Image.fromarray(op(np.asarray(mask), kernel, iterations=1))


def is_all_black(mask: Image.Image) -> bool:
    return mask.getbbox() is None


def merge_invert(masks: list[Image.Image], mode: str = "None") -> list[Image.Image]:
    """"None": separate masks; "Merge": one mask, their union (bitwise OR); "Merge and Invert": 255 - the union."""
    if mode == "None" or not masks:
        return list(masks)
    if mode not in MERGE_MODES:
        raise ValueError(f"unknown mask merge mode {mode!r}; expected one of {', '.join(MERGE_MODES)}")
    merged = np.bitwise_or.reduce([np.asarray(m) for m in masks])
    if mode == "Merge and Invert":
        merged = 255 - merged
    return [Image.fromarray(merged)]


def mask_preprocess(masks: list[Image.Image], kernel: int = 0, x_offset: int = 0, y_offset: int = 0,
                    merge_mode: str = "None") -> list[Image.Image]:
    """Offset, then dilate/erode (dropping masks that become all black), then merge/invert."""
    if x_offset or y_offset:
        masks = [offset(m, x_offset, y_offset) for m in masks]
    if kernel:
        masks = [dilate_erode(m, kernel) for m in masks]
        masks = [m for m in masks if not is_all_black(m)]
    return merge_invert(masks, merge_mode)


def intersecting(masks: list[Image.Image], user_mask: Image.Image) -> list[Image.Image]:
    """Masks that share a pixel with the user's inpaint mask ("Only masked" img2img inpaint jobs): ADetailer's
    ``has_intersection``, a bitwise AND of the two 8-bit masks that is not all zero (so soft values such as 64 and
    128 do not meet). The user mask is resized (Lanczos) to the masks' size first."""
    if masks and user_mask.size != masks[0].size:
        user_mask = user_mask.resize(masks[0].size, Image.Resampling.LANCZOS)
    user = np.asarray(user_mask.convert("L"))
    return [m for m in masks if np.any(np.bitwise_and(np.asarray(m.convert("L")), user))]


def pred_preprocessing(pred: Prediction, size: tuple[int, int], *, min_ratio: float = 0.0, max_ratio: float = 1.0,
                       k: int = 0, filter_method: str = "Area", sort_by: str = "None", dilate: int = 4,
                       x_offset: int = 0, y_offset: int = 0, merge_mode: str = "None",
                       user_mask: Image.Image | None = None) -> tuple[list[Image.Image], Prediction]:
    """The masks ADetailer inpaints, in order, and the filtered, sorted prediction (its boxes, index for index
    before any merge or dropped mask: ADetailer pairs mask j with box j even when they disagree)."""
    pred = filter_by_ratio(pred, min_ratio, max_ratio, size)
    pred = filter_k_by(pred, k, filter_method)
    pred = sort_bboxes(pred, sort_by, size)
    masks = mask_preprocess(pred.masks, dilate, x_offset, y_offset, merge_mode)
    if user_mask is not None:
        masks = intersecting(masks, user_mask)
    return masks, pred
