"""Prompted masks from a SAM 2 / 2.1 model, with `SAM2ImagePredictor`'s semantics (sam2==1.1.0).

The image is stretched to 1024 x 1024 (no aspect preservation: bilinear with antialiasing, as torchvision's tensor
Resize), normalised with ImageNet statistics, and encoded once by `set_image`. Point coordinates are divided by the
image size and multiplied by 1024 in float32; a box becomes two points labelled 2 and 3 placed before the clicks, and
the padding point is always appended (unlike SAM v1 with a box). Low-res logits [K, 256, 256] are resized to the
image size in one bilinear step; they are returned clamped to +-32, as the reference does.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .config import IMAGE_SIZE, Sam2Error
from .model import SAM2Model

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
LOW_RES_CLAMP = 32.0


def as_rgb_array(image) -> np.ndarray:
    """HxWx3 uint8 RGB from a PIL image or an HxW / HxWx1 / HxWx3 / HxWx4 uint8 array (alpha is dropped)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise Sam2Error(f"image must be uint8 RGB, got dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4) or 0 in a.shape[:2]:
        raise Sam2Error(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[:, :, :3]


def preprocess(rgb: np.ndarray, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """SAM2Transforms: /255 -> square 1024 bilinear antialiased resize -> ImageNet normalisation -> [1,3,1024,1024]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(MEAN, device=device).reshape(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).reshape(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


class SAM2Predictor:
    """`set_image(image)` once, then `predict(...)` any number of times.

    dynamic_multimask: with `multimask=False`, replace an unstable single mask by the best of the three multimask
        outputs (SAM 2's `apply_postprocessing=True` build); off by default, as Inpaint Anything builds SAM 2.
    """

    points_dtype = np.float32  # the generator's grid points are float32 before they are scaled, as in sam2's AMG

    def __init__(self, model: SAM2Model, dynamic_multimask: bool = False):
        if not isinstance(model, SAM2Model):
            raise Sam2Error(f"SAM2Predictor needs a SAM 2 model (build_sam2), got {type(model).__name__}")
        self.model = model
        self.dynamic_multimask = dynamic_multimask
        self.mask_threshold = model.mask_threshold
        self.reset_image()

    def reset_image(self) -> None:
        self.features: dict | None = None
        self.original_size: tuple[int, int] | None = None

    @torch.no_grad()
    def set_image(self, image) -> None:
        """Encode an RGB image (PIL, or uint8 HxWx3 array; gray and RGBA are converted). The array is not modified."""
        rgb = as_rgb_array(image)
        self.reset_image()
        x = preprocess(rgb, self.model.device, self.model.dtype)
        self.features = self.model.image_features(x)
        self.original_size = rgb.shape[:2]

    def _require_image(self) -> tuple[int, int]:
        if self.features is None or self.original_size is None:
            raise Sam2Error("no image set: call set_image(image) before predict")
        return self.original_size

    def _to_frame(self, coords: torch.Tensor) -> torch.Tensor:
        """Pixel (x, y) of the set image -> the 1024 frame, in float32 as SAM2Transforms.transform_coords."""
        h, w = self.original_size
        coords = coords.to(torch.float32)
        return torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1) * IMAGE_SIZE

    @torch.no_grad()
    def _decode(self, coords: torch.Tensor | None, labels: torch.Tensor | None, mask_input: torch.Tensor | None,
                multimask: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts already in the 1024 frame ([B,N,2] float32, [B,N] int) -> low-res logits [B,K,256,256], IoU."""
        model = self.model
        points = None if coords is None else (coords.to(model.device), labels.to(model.device))
        dense_in = None if mask_input is None else mask_input.to(model.device, model.dtype)
        sparse, dense = model.sam_prompt_encoder(points, None, dense_in)
        f = self.features
        return model.sam_mask_decoder(f["image_embed"], model.sam_prompt_encoder.get_dense_pe().to(model.dtype),
                                      sparse.to(model.dtype), dense.to(model.dtype), f["high_res_feats"],
                                      multimask_output=multimask, dynamic_multimask=self.dynamic_multimask)

    @torch.no_grad()
    def _upscale_logits(self, low_res: torch.Tensor) -> torch.Tensor:
        """Low-res logits [..., 256, 256] (unclamped) -> [..., H, W] at the set image's size in one bilinear step,
        float32 (SAM2Transforms.postprocess_masks without hole filling)."""
        h, w = self._require_image()
        lead = low_res.shape[:-2]
        x = low_res.float().reshape(-1, 1, *low_res.shape[-2:])
        return F.interpolate(x, (h, w), mode="bilinear", align_corners=False).reshape(*lead, h, w)

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask: bool = True,
                return_logits: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one set of prompts -> (masks [K,H,W] bool, or float32 logits with return_logits; iou [K] float32;
        low-res logits [K,256,256] float32), K = 3 with multimask else 1.

        points: [N,2] (x, y) pixels of the set image, inside [0, W] x [0, H]; labels: [N] of 1 (object) / 0
        (background); box: [4] x0, y0, x1, y1 pixels; mask_input: [1,256,256] or [256,256] low-res logits, e.g. a
        previous call's `low_res_logits[best][None]`. Prompts are not modified.
        """
        h, w = self._require_image()
        coords = lab = None
        if (points is None) != (labels is None):
            raise Sam2Error("points and labels go together: give both or neither")
        if points is not None:
            p = np.asarray(points, dtype=np.float64)
            lab_np = np.asarray(labels)
            if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
                raise Sam2Error(f"points must be an [N,2] array of (x, y), got shape {p.shape}")
            if lab_np.shape != (p.shape[0],) or not np.isin(lab_np, (0, 1)).all():
                raise Sam2Error(f"labels must be {p.shape[0]} values of 0 (background) or 1 (object), got {lab_np}")
            outside = ~((p[:, 0] >= 0) & (p[:, 0] <= w) & (p[:, 1] >= 0) & (p[:, 1] <= h))
            if outside.any():
                raise Sam2Error(f"point {p[outside][0].tolist()} is outside the {w}x{h} image")
            coords, lab = self._to_frame(torch.from_numpy(p)[None]), torch.from_numpy(lab_np.astype(np.int32))[None]
        if box is not None:
            b = np.asarray(box, dtype=np.float64)
            if b.shape != (4,) or not (b[0] <= b[2] and b[1] <= b[3]):
                raise Sam2Error(f"box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1, got {b.tolist()}")
            box_xy = self._to_frame(torch.from_numpy(b).reshape(1, 2, 2))
            box_lab = torch.tensor([[2, 3]], dtype=torch.int32)
            coords = box_xy if coords is None else torch.cat([box_xy, coords], dim=1)
            lab = box_lab if lab is None else torch.cat([box_lab, lab], dim=1)
        m = None
        if mask_input is not None:
            m = torch.as_tensor(np.asarray(mask_input, dtype=np.float32))
            if m.shape not in ((256, 256), (1, 256, 256)):
                raise Sam2Error(f"mask_input must be low-res logits [1,256,256] or [256,256], got {tuple(m.shape)}")
            m = m.reshape(1, 1, 256, 256)
        low, iou = self._decode(coords, lab, m, multimask)
        masks = self._upscale_logits(low)[0]
        masks = masks if return_logits else masks > self.mask_threshold
        low = low.float().clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)
        return masks.cpu().numpy(), iou[0].float().cpu().numpy(), low[0].cpu().numpy()

    @torch.no_grad()
    def _predict_points_batch(self, coords, labels=None, multimask: bool = True
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The automatic mask generator's call (SAM2AutomaticMaskGenerator._process_batch), no input checks.

        coords: [B,2] (one positive click per prompt, the generator's case) or [B,N,2] (x, y) pixels of the set image,
        taken as float32 first like the reference's grid points; labels: [B,N] ints (default: all 1).
        Returns torch tensors on the model's device: low-res logits [B,K,256,256] float32, *unclamped*, so that
        `_upscale_logits` on any slice of them gives the reference's full-size logits (chunk by chunk, bounded
        memory); IoU [B,K] float32. K = 3 with multimask, else 1.
        """
        self._require_image()
        c = torch.as_tensor(np.asarray(coords, dtype=np.float32))
        if c.dim() == 2:
            c = c[:, None, :]
        lab = torch.ones(c.shape[:2], dtype=torch.int32) if labels is None else \
            torch.as_tensor(np.asarray(labels)).to(torch.int32).reshape(c.shape[:2])
        low, iou = self._decode(self._to_frame(c), lab, None, multimask)
        return low.float(), iou.float()
