"""Prompted masks for one image: `Predictor(model).set_image(image)` then `.predict(points, labels, box, ...)`.

SAM v1 / HQ-SAM / MobileSAM follow segment_anything's SamPredictor step by step: resize the longest side to the
encoder size with PIL bilinear, normalise, zero-pad to a square, encode once; prompts are scaled by the same factors;
the 256×256 logits are upscaled to the padded square, cropped and resized to the image (bilinear both times).

`Predictor(model)` for a SAM 2 model returns `inpaintlab.segment.sam2.SAM2Predictor(model)`, which has the same
`set_image` / `predict` signature and the batch protocol below (SAM 2's own box/point encoding and single resize).

Batch protocol used by `generate_masks` (both predictors implement it):
    original_size                         (H, W) of the image set
    mask_threshold                        float, 0.0
    points_dtype                          np.float64 (v1: points stay float64 up to the encoder) or np.float32 (SAM 2)
    _predict_points_batch(coords)         coords [B, 2] (x, y) image pixels, one positive point each
                                          -> (low_res_logits torch [B, K, h, w], iou torch [B, K]); K = 3 (multimask),
                                          1 for HQ-SAM (its multimask output is one fused mask)
    _upscale_logits(low_res)              torch [n, h, w] -> torch [n, H, W] logits at original_size
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .common import SegmentError


def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """segment_anything's ResizeLongestSide shape: (int(h·s + 0.5), int(w·s + 0.5)) with s = long_side / max(h, w)."""
    s = long_side * 1.0 / max(h, w)
    return int(h * s + 0.5), int(w * s + 0.5)


def as_rgb(image) -> np.ndarray:
    """A PIL image or an HxW / HxWx1 / HxWx3 / HxWx4 uint8 array as a new HxWx3 uint8 RGB array (alpha dropped)."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise SegmentError(f"image must be uint8 (0..255), got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or 0 in image.shape[:2]:
        raise SegmentError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def Predictor(model):  # noqa: N802  a factory that reads like the class it returns
    """A predictor for `model`: `SamPredictor` for SAM v1 / HQ-SAM / MobileSAM, SAM2Predictor for SAM 2 / 2.1."""
    if getattr(model, "family", None) in ("sam2", "sam2.1"):
        from .sam2 import SAM2Predictor
        return SAM2Predictor(model)
    return SamPredictor(model)


class SamPredictor:
    points_dtype = np.float64

    def __init__(self, model):
        if getattr(model, "family", None) not in ("sam", "sam_hq", "mobile_sam"):
            raise SegmentError(f"Predictor needs a model from inpaintlab.segment.load, got {type(model).__name__}")
        self.model = model
        self.mask_threshold = model.mask_threshold
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.pixel_mean.dtype

    def reset_image(self) -> None:
        self.features = self.interm_features = self.hq_features = None
        self.original_size = self.input_size = None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Encode an RGB image (uint8 array or PIL image); the image is not modified."""
        image = as_rgb(image)
        h, w = image.shape[:2]
        size = preprocess_shape(h, w, self.model.image_size)
        resized = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
        x = torch.from_numpy(np.array(resized)).to(self.device).permute(2, 0, 1)[None].to(self.dtype)
        self.reset_image()
        self.features, self.interm_features = self.model.image_encoder(self.model.preprocess(x))
        if self.model.family == "sam_hq" or hasattr(self.model.mask_decoder, "hf_token"):
            self.hq_features = self.model.mask_decoder.hq_features(self.features, self.interm_features)
        self.original_size, self.input_size = (h, w), size

    # ------------------------------------------------------------------------------------------- prompts in numpy

    def _check_set(self):
        if self.features is None:
            raise SegmentError("no image set: call set_image(image) before predict")

    def _scale(self, coords: np.ndarray) -> np.ndarray:
        (h, w), (nh, nw) = self.original_size, self.input_size
        coords = np.array(coords, dtype=float)
        coords[..., 0] *= nw / w
        coords[..., 1] *= nh / h
        return coords

    def _inside(self, coords: np.ndarray, what: str) -> None:
        h, w = self.original_size
        bad = (coords[..., 0] < 0) | (coords[..., 0] > w) | (coords[..., 1] < 0) | (coords[..., 1] > h)
        if bad.any():
            first = coords.reshape(-1, 2)[bad.reshape(-1)][0].tolist()
            raise SegmentError(f"{what} {first} lies outside the {w}x{h} image")

    def prompt_tensors(self, points=None, labels=None, box=None, mask_input=None):
        """Checked prompts in the encoder frame, batch of one: (coords, labels) or None, box or None, mask or None."""
        self._check_set()
        pts = box_t = mask_t = None
        if points is not None:
            coords = np.asarray(points, dtype=float).reshape(-1, 2) if np.size(points) else np.zeros((0, 2))
            if labels is None:
                raise SegmentError("points need labels (1 = include, 0 = exclude), one per point")
            lab = np.asarray(labels).reshape(-1)
            if len(lab) != len(coords) or len(coords) == 0:
                raise SegmentError(f"{len(coords)} points and {len(lab)} labels: give one label per point")
            if not np.isin(lab, (0, 1, -1)).all():
                raise SegmentError(f"point labels must be 1 (include) or 0 (exclude), got {sorted(set(lab.tolist()))}")
            self._inside(coords, "point")
            pts = (torch.as_tensor(self._scale(coords), dtype=torch.float, device=self.device)[None],
                   torch.as_tensor(lab, dtype=torch.int, device=self.device)[None])
        if box is not None:
            b = np.asarray(box, dtype=float).reshape(-1)
            if b.shape != (4,) or not (b[0] <= b[2] and b[1] <= b[3]):
                raise SegmentError(f"box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1, got {b.tolist()}")
            self._inside(b.reshape(2, 2), "box corner")
            box_t = torch.as_tensor(self._scale(b.reshape(2, 2)).reshape(1, 4), dtype=torch.float, device=self.device)
        if mask_input is not None:
            m = np.asarray(mask_input, dtype=np.float32)
            size = self.model.prompt_encoder.mask_input_size
            if m.shape not in ((1, *size), size):
                raise SegmentError(f"mask_input must be 1x{size[0]}x{size[1]} low-res logits (predict's third "
                                   f"output), got shape {m.shape}")
            mask_t = torch.as_tensor(m.reshape(1, 1, *size), device=self.device).to(self.dtype)
        return pts, box_t, mask_t

    @torch.no_grad()
    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True,
                return_logits: bool = False):
        """-> (masks [K,H,W] bool, or float logits with return_logits; iou [K]; low_res_logits [K,256,256]) as
        NumPy, K = 3 with multimask (1 for HQ-SAM, which fuses them), else 1. Points are (x, y) image pixels with
        labels 1 (include) / 0 (exclude); box is [x0, y0, x1, y1]; mask_input a previous low_res_logits entry."""
        pts, box_t, mask_t = self.prompt_tensors(points, labels, box, mask_input)
        low, iou = self.decode(pts, box_t, mask_t, multimask)
        masks = self._upscale_logits(low[0])
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks.cpu().numpy(), iou[0].float().cpu().numpy(), low[0].float().cpu().numpy()

    def decode(self, pts, box, mask, multimask: bool):
        """Prompt encoder + mask decoder on the encoded image -> (low-res logits [B,K,h,w], iou [B,K])."""
        sparse, dense = self.model.prompt_encoder(points=pts, boxes=box, masks=mask)
        kwargs = {"hq_features": self.hq_features} if self.hq_features is not None else {}
        return self.model.mask_decoder(self.features, self.model.prompt_encoder.get_dense_pe(), sparse, dense,
                                       multimask, **kwargs)

    # --------------------------------------------------------------------------------------- generator protocol

    @torch.no_grad()
    def _predict_points_batch(self, coords: np.ndarray):
        """One positive point per prompt, multimask; coords [B,2] image pixels kept in float64 like the reference."""
        self._check_set()
        c = torch.as_tensor(self._scale(coords), device=self.device)[:, None, :]
        lab = torch.ones(c.shape[0], 1, dtype=torch.int, device=self.device)
        return self.decode((c, lab), None, None, True)

    @torch.no_grad()
    def _upscale_logits(self, low: torch.Tensor) -> torch.Tensor:
        """[n,h,w] -> [n,H,W]: bilinear to the padded square, crop to the resized image, bilinear to the image."""
        s = self.model.image_size
        x = F.interpolate(low[None].float(), (s, s), mode="bilinear", align_corners=False)
        x = x[..., :self.input_size[0], :self.input_size[1]]
        return F.interpolate(x, self.original_size, mode="bilinear", align_corners=False)[0]
