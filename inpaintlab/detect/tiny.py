"""A random-weight YOLOv8n detector file for trying ``inpaintlab detect`` and ADetailer without real weights."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..files import atomic_path
from .model import YOLOConfig, YOLOv8

TINY_DETECTOR = "tiny-yolov8n.safetensors"


def randomise_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded random weights and BatchNorm statistics in place, by state-dict name, for any module keyed like
    Ultralytics' files (ours or Ultralytics' own): BN is otherwise identity and some biases constants, which would
    hide a misplaced BN or bias. The DFL's fixed 0…15 weights stay."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if "dfl" in name or not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.5)
            elif name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 0.75)
            elif t.ndim == 4:
                t.copy_(torch.randn(t.shape, generator=g) * (1.5 / t[0].numel()) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model


def random_yolo(config: YOLOConfig | None = None, seed: int = 0) -> YOLOv8:
    """YOLOv8 (default: n, one class) with seeded random weights and BatchNorm statistics (`randomise_`)."""
    return randomise_(YOLOv8(config or YOLOConfig("n", 1)).eval(), seed)


def make_tiny_detector(path: str | Path, *, segment: bool = False, seed: int = 0) -> Path:
    """Write a random YOLOv8n (one class, "face") as fp16 ``.safetensors`` with Ultralytics' key names."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: the tiny detector is written as .safetensors")
    model = random_yolo(YOLOConfig("n", 1, segment), seed)
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "names": json.dumps({"0": "face"})})
    return path
