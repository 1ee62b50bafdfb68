"""YOLOv8 prediction as Ultralytics 8.4 ``YOLO(path)(image, conf=c)`` does it: letterbox, forward, NMS, boxes mapped
back to the image, segmentation masks at the letterboxed input size.

Defaults are those ADetailer runs with: ``imgsz 640``, rectangular letterbox (padded only to a multiple of 32,
grey 114), IoU 0.7, at most 300 detections, class-aware NMS, masks not "retina" (built at the input size).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .loader import Detector, DetectorError

MAX_NMS = 30000  # candidates kept before NMS, by score
MAX_WH = 7680  # per-class box offset that keeps NMS within a class


@dataclass(frozen=True)
class Letterbox:
    """Where the image sits in the network input: input size (H, W), resized size (h, w) and the top/left pad."""
    input_size: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int


def letterbox_geometry(height: int, width: int, imgsz: int = 640, stride: int = 32) -> Letterbox:
    """Ultralytics LetterBox(auto=True, center=True, scaleup=True): long side to imgsz, pad to a multiple of stride."""
    r = min(imgsz / height, imgsz / width)
    new_w, new_h = max(round(width * r), 1), max(round(height * r), 1)
    dw, dh = (imgsz - new_w) % stride / 2, (imgsz - new_h) % stride / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    return Letterbox((new_h + top + bottom, new_w + left + right), (new_h, new_w), top, left)


def letterbox(image: Image.Image, imgsz: int = 640, stride: int = 32) -> tuple[torch.Tensor, Letterbox]:
    """The network input, 1×3×H×W float32 RGB in [0, 1], and its geometry (bilinear resize as cv2 INTER_LINEAR)."""
    rgb = np.asarray(image.convert("RGB"))
    geo = letterbox_geometry(rgb.shape[0], rgb.shape[1], imgsz, stride)
    h, w = geo.resized
    if (h, w) != rgb.shape[:2]:
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    hin, win = geo.input_size
    rgb = cv2.copyMakeBorder(rgb, geo.top, hin - h - geo.top, geo.left, win - w - geo.left, cv2.BORDER_CONSTANT,
                             value=(114, 114, 114))
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float() / 255
    return x, geo


def xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    half = b[..., 2:] / 2
    return torch.cat((b[..., :2] - half, b[..., :2] + half), -1)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS, highest score first; a box goes when its IoU with a kept box exceeds ``iou`` (torchvision rule).

    float32 arithmetic in torchvision's order; numpy keeps the per-box overhead low (a random-weight model can hand
    NMS thousands of candidates).
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float().numpy()
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    alive = np.ones(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = b[i + 1:]
        w = np.clip(np.minimum(b[i, 2], rest[:, 2]) - np.maximum(b[i, 0], rest[:, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], rest[:, 3]) - np.maximum(b[i, 1], rest[:, 1]), 0, None)
        inter = w * h
        alive[i + 1:] &= ~(inter / (area[i] + area[i + 1:] - inter) > iou)
    return order[torch.tensor(keep, dtype=torch.int64)]


def non_max_suppression(pred: torch.Tensor, nc: int, conf: float = 0.25, iou: float = 0.7, max_det: int = 300,
                        classes: list[int] | None = None) -> torch.Tensor:
    """pred: (4+nc+extra)×A for one image → N×(6+extra) rows ``x1, y1, x2, y2, score, class, extra…``.

    Candidates have a best class score > conf (strict); each keeps its best class only; class-aware NMS.
    """
    x = pred.transpose(0, 1)
    x = x[x[:, 4:4 + nc].amax(1) > conf]
    box, cls, extra = x[:, :4], x[:, 4:4 + nc], x[:, 4 + nc:]
    score, j = cls.max(1, keepdim=True)
    x = torch.cat((xywh_to_xyxy(box), score, j.float(), extra), 1)[score.view(-1) > conf]
    if classes is not None:
        x = x[(x[:, 5:6] == torch.tensor(classes, dtype=x.dtype)).any(1)]
    if not len(x):
        return x
    if len(x) > MAX_NMS:
        x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]
    keep = nms(x[:, :4] + x[:, 5:6] * MAX_WH, x[:, 4], iou)
    return x[keep[:max_det]]


def scale_boxes(boxes: torch.Tensor, geo: Letterbox, height: int, width: int) -> torch.Tensor:
    """Input-pixel xyxy boxes → image pixels: remove the pad, divide by each axis' own gain, clip to the image."""
    h, w = geo.resized
    gain_y, gain_x = h / height, w / width
    boxes = boxes.clone()
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - geo.left) / gain_x).clamp(0, width)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - geo.top) / gain_y).clamp(0, height)
    return boxes


def process_masks(proto: torch.Tensor, coef: torch.Tensor, boxes: torch.Tensor,
                  size: tuple[int, int]) -> torch.Tensor:
    """Ultralytics 8.4 masks: coef @ proto, bilinear upsample to the input size, > 0, zero outside each input box.

    proto 32×h×w, coef N×32, boxes N×4 (input pixels) → N×H×W uint8 0/1.
    """
    c, mh, mw = proto.shape
    if not len(coef):
        return torch.zeros((0, *size), dtype=torch.uint8)
    logits = (coef @ proto.float().view(c, -1)).view(-1, mh, mw)
    masks = F.interpolate(logits[None], size, mode="bilinear")[0].gt(0).byte()
    cols = torch.arange(size[1], dtype=boxes.dtype)[None, None, :]
    rows = torch.arange(size[0], dtype=boxes.dtype)[None, :, None]
    x1, y1, x2, y2 = boxes[:, :, None].chunk(4, 1)
    return masks * ((cols >= x1) & (cols < x2)) * ((rows >= y1) & (rows < y2))


@dataclass
class Detections:
    """One image's detections, in NMS order (descending score).

    boxes N×4 float32 xyxy in image pixels; scores N; classes N (int64); masks N×H×W uint8 0/1 at the letterboxed
    input size (segmentation models) or None; names maps class ids to names.
    """
    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor
    masks: torch.Tensor | None
    names: dict[int, str]
    image_size: tuple[int, int]  # (H, W)
    letterbox: Letterbox

    def __len__(self) -> int:
        return len(self.boxes)


@torch.inference_mode()
def detect(detector: Detector, image: Image.Image, conf: float = 0.25, *, iou: float = 0.7, imgsz: int = 640,
           max_det: int = 300, classes: list[int] | None = None) -> Detections:
    """Detect objects in a PIL image (Ultralytics' ``predict``; ADetailer passes its confidence as ``conf``)."""
    if not 0 <= conf <= 1 or not 0 <= iou <= 1:
        raise DetectorError(f"confidence {conf} and IoU {iou} must lie in [0, 1]")
    if imgsz < 32:
        raise DetectorError(f"imgsz {imgsz} is below the network stride 32")
    imgsz = math.ceil(imgsz / 32) * 32  # Ultralytics rounds imgsz up to a multiple of the stride
    model = detector.model
    param = next(model.parameters())
    x, geo = letterbox(image, imgsz)
    out = model(x.to(param.device, param.dtype))
    pred, proto = out if detector.segment else (out, None)
    rows = non_max_suppression(pred[0].float().cpu(), model.config.nc, conf, iou, max_det, classes)
    masks = None
    if proto is not None:
        masks = process_masks(proto[0].float().cpu(), rows[:, 6:], rows[:, :4], geo.input_size)
        keep = masks.amax((-2, -1)) > 0  # Ultralytics drops detections whose mask is empty
        rows, masks = rows[keep], masks[keep]
    boxes = scale_boxes(rows[:, :4], geo, image.height, image.width)
    return Detections(boxes, rows[:, 4].clone(), rows[:, 5].long(), masks, detector.names,
                      (image.height, image.width), geo)
