"""Builds sam2==1.1.0 reference models (test oracle) with the tiny Hiera of `HIERA_SIZES["tiny"]`."""
from __future__ import annotations

import torch
from shims import use_torchvision_shim

from inpaintlab.segment.sam2 import HIERA_SIZES, randomize_sam2

class _TensorResize(torch.nn.Module):
    """torchvision's tensor Resize((s, s)): bilinear, antialiased, align_corners=False (what the shim's resize does)."""

    def __init__(self, size):
        super().__init__()
        self.size: list[int] = [int(size[0]), int(size[1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False,
                                               antialias=True)[0]


class _TensorNormalize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def use_sam2_transforms():
    """SAM2Transforms scripts `nn.Sequential(Resize, Normalize)`: it needs nn.Module transforms, which the
    torchvision shim's plain classes are not; give sam2's transforms module scriptable equivalents."""
    use_torchvision_shim()
    import sam2.utils.transforms as transforms

    transforms.Resize, transforms.Normalize = _TensorResize, _TensorNormalize


CONFIGS = {"sam2": "configs/sam2/sam2_hiera_t.yaml", "sam2.1": "configs/sam2.1/sam2.1_hiera_t.yaml"}


def hiera_overrides(size: str) -> list[str]:
    h = HIERA_SIZES[size]
    trunk = "++model.image_encoder.trunk."

    def seq(v):
        return "[" + ",".join(str(x) for x in v) + "]"

    return [f"{trunk}embed_dim={h.embed_dim}", f"{trunk}num_heads={h.num_heads}", f"{trunk}stages={seq(h.stages)}",
            f"{trunk}global_att_blocks={seq(h.global_att_blocks)}", f"{trunk}window_spec={seq(h.window_spec)}",
            f"{trunk}window_pos_embed_bkg_spatial_size={seq(h.window_pos_embed_bkg_spatial_size)}",
            f"++model.image_encoder.neck.backbone_channel_list={seq(reversed(h.channels))}"]


def reference_sam2(family: str = "sam2", size: str = "tiny", seed: int = 0, dynamic_multimask: bool = False):
    """A randomised reference SAM2Base (every zero/one-initialised tensor re-drawn) in eval mode."""
    use_sam2_transforms()
    from sam2.build_sam import build_sam2

    model = build_sam2(CONFIGS[family], None, device="cpu", apply_postprocessing=dynamic_multimask,
                       hydra_overrides_extra=hiera_overrides(size))
    randomize_sam2(model, seed)
    return model.eval()


def reference_meta_state(family: str, size: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a released-size reference model, built on the meta device (nothing allocated)."""
    use_torchvision_shim()
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    name = {"t": "t", "s": "s", "b+": "b+", "l": "l"}[size]
    cfg = compose(config_name=CONFIGS[family].replace("_t.yaml", f"_{name}.yaml"))
    OmegaConf.resolve(cfg)
    linspace = torch.linspace  # Hiera reads its drop-path rates with .item(), which meta tensors cannot do
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    try:
        with torch.device("meta"):
            model = instantiate(cfg.model, _recursive_=True)
    finally:
        torch.linspace = linspace
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
