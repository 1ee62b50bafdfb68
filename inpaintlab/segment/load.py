"""Read a Segment Anything file and build the matching network, telling the family from the keys.

    model = inpaintlab.segment.load("sam_vit_b_01ec64.pth")        # or .safetensors with the same keys

Families: SAM v1 ViT-B/L/H ("sam"), HQ-SAM ViT-B/L/H and light ("sam_hq"), MobileSAM TinyViT ("mobile_sam"), and
SAM 2 / 2.1 Hiera ("sam2" / "sam2.1", built by `inpaintlab.segment.sam2`). Official `.pth`/`.pt` files are read with
torch's weights-only unpickler, so no code in a file runs; SAM 2 files wrap their keys in {"model": ...}. Loading is
strict: every key and shape must fit. The file name plays no part.

Contract with `inpaintlab.segment.sam2` (imported lazily, so SAM v1 works without it): it exports
`is_sam2(keys) -> bool`, `build_sam2(state_dict, kernels=...) -> nn.Module` (with attributes `family` = "sam2" or
"sam2.1" and `image_size`, loaded strictly, in eval mode) and `SAM2Predictor(model)` (see predictor.py).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_component, read_state_dict
from ..kernels import check_backend
from .common import SegmentError
from .model import Sam, SamConfig
from .tiny_vit import Attention as TinyAttention
from .tiny_vit import offset_index

log = logging.getLogger(__name__)

V1_MARKERS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def read_segment_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat state dict of a `.safetensors`, `.pth` or `.pt` file ({"model": sd} unwrapped), never running code."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".safetensors":
            return read_state_dict(path)
        if not path.is_file():
            raise FileNotFoundError(f"segmentation model file not found: {path}")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError as e:
        raise SegmentError(str(e)) from None
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001  torch reports damage and refused classes with several types
        raise SegmentError(f"{path}: not a readable SAM file (torch.load with weights_only=True refused it: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    for key in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in obj.items()):
        raise SegmentError(f"{path}: holds {type(obj).__name__} with non-tensor entries, not a SAM state dict")
    return dict(obj)


def _sam2():
    try:
        from . import sam2
    except ImportError:
        return None
    return sam2


def detect_family(sd: Mapping[str, torch.Tensor]) -> str:
    """"sam2" (either SAM 2 version), "sam_hq", "mobile_sam" or "sam"; SegmentError for anything else."""
    keys = list(sd)
    if any(k.startswith("image_encoder.trunk.") for k in keys) or any(k.startswith("sam_mask_decoder.") for k in keys):
        return "sam2"
    if all(any(k.startswith(p) for k in keys) for p in V1_MARKERS):
        try:
            return SamConfig.from_state_dict(sd).family
        except KeyError as e:
            raise SegmentError(f"a SAM-like file without {e.args[0]!r}; not a SAM, HQ-SAM or MobileSAM model") from None
    sample = ", ".join(repr(k) for k in keys[:3])
    raise SegmentError(f"not a Segment Anything model (no image_encoder/prompt_encoder/mask_decoder keys; "
                       f"first keys: {sample})")


def reset_buffers(model: nn.Module) -> nn.Module:
    """Fill the non-persistent buffers (absent from files) after a meta-device build."""
    if isinstance(model, Sam):
        model.pixel_mean.copy_(torch.tensor((123.675, 116.28, 103.53)).view(-1, 1, 1))
        model.pixel_std.copy_(torch.tensor((58.395, 57.12, 57.375)).view(-1, 1, 1))
    for m in model.modules():
        if isinstance(m, TinyAttention):
            n = m.attention_bias_idxs.shape[0]
            m.attention_bias_idxs.copy_(offset_index(round(n ** 0.5))[0])
    return model


def build_sam(sd: Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, kernels: str = "auto", source: str = "state dict") -> Sam:
    """A SAM v1 / HQ-SAM / MobileSAM model with `sd` loaded strictly, eval mode, no gradients."""
    try:
        config = SamConfig.from_state_dict(sd)
    except KeyError as e:
        raise SegmentError(f"{source}: not a SAM, HQ-SAM or MobileSAM model (no {e.args[0]!r})") from None
    with torch.device("meta"):
        model = Sam(config, kernels=kernels)
    model = model.to_empty(device=torch.device(device))
    with torch.no_grad():
        reset_buffers(model)
    try:
        load_component(model, sd, f"{source} ({config.family} {config.variant})")
    except CheckpointError as e:
        raise SegmentError(str(e)) from None
    model = model.to(dtype=dtype)
    model.eval().requires_grad_(False)
    return model


def load(source: str | Path | Mapping[str, torch.Tensor], *, device: str | torch.device = "cpu",
         dtype: torch.dtype = torch.float32, kernels: str = "auto") -> nn.Module:
    """Build and strictly load the segmentation network in `source` (a file path or a state dict).

    The result has `family` ("sam", "sam_hq", "mobile_sam", "sam2", "sam2.1") and `image_size`; hand it to
    `Predictor` or `generate_masks`. Errors are SegmentError with one line naming the problem.
    """
    check_backend(kernels)
    if isinstance(source, Mapping):
        sd, where = dict(source), "state dict"
        if len(sd) == 1 and isinstance(sd.get("model"), Mapping):
            sd = dict(sd["model"])
    else:
        sd, where = read_segment_file(source), str(source)
    family = detect_family(sd)
    if family == "sam2":
        sam2 = _sam2()
        if sam2 is None:
            raise SegmentError(f"{where}: a SAM 2 model, and this installation has no SAM 2 support")
        try:
            model = sam2.build_sam2(sd, kernels=kernels)
        except CheckpointError as e:
            raise SegmentError(str(e)) from None
        return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return build_sam(sd, device=device, dtype=dtype, kernels=kernels, source=where)
