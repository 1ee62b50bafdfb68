"""UNet architecture config (SD1.5 defaults, CompVis `v1-inference.yaml`) and its inference from checkpoint weights."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

_NORM_GROUPS = 32


@dataclass(frozen=True)
class UNetConfig:
    """Parameters of ldm's `openaimodel.UNetModel` as SD1.x uses it (spatial transformer, 1x1-conv projections).

    `attention_resolutions` holds downsampling factors (1 = full latent resolution), as in the yaml; it is stored
    sorted high to low like the yaml's [4, 2, 1].
    """

    in_channels: int = 4  # 9 for inpainting: noisy latent, mask, masked-image latent
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_heads: int = 8  # at every level, so the head dim grows with the width (40/80/160 in SD1.5)
    transformer_depth: int = 1
    context_dim: int = 768

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_resolutions",
                           tuple(sorted({int(r) for r in self.attention_resolutions}, reverse=True)))
        for name in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "num_heads",
                     "transformer_depth", "context_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be positive, got {getattr(self, name)}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be non-empty and positive, got {self.channel_mult}")
        for width in self.widths:
            if width % _NORM_GROUPS:
                raise ValueError(f"UNet width {width} is not a multiple of {_NORM_GROUPS} (GroupNorm groups)")
            if width % self.num_heads:
                raise ValueError(f"UNet width {width} does not split into {self.num_heads} heads")

    @property
    def is_inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each resolution level."""
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        """Latent height and width must be multiples of this."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> UNetConfig:
        """Infer the config from a UNet state dict with the `model.diffusion_model.` prefix already stripped.

        Widths, input channels, levels, res blocks per level, attention levels, transformer depth and context width
        come from weight shapes and keys; the head count cannot be recovered and is the SD1 convention, 8.
        Raises ValueError for SD2-style (linear proj_in, 1024-wide context) and SDXL-style (label_emb) layouts.
        """
        if "input_blocks.0.0.weight" not in sd:
            prefixed = [k for k in sd if k.endswith("input_blocks.0.0.weight")]
            hint = f"; found {prefixed[0]!r}: strip the prefix first" if prefixed else ""
            raise ValueError(f"not a UNet state dict: no 'input_blocks.0.0.weight'{hint}")
        if any(k.startswith("label_emb.") for k in sd):
            raise ValueError("unsupported architecture: SDXL-style UNet (label_emb present); only SD1.x is supported")
        proj_in = [k for k in sd if k.endswith(".proj_in.weight")]
        linear = [k for k in proj_in if sd[k].ndim == 2]
        if linear:
            raise ValueError(f"unsupported architecture: SD2-style UNet (linear proj_in, {linear[0]} has shape "
                             f"{list(sd[linear[0]].shape)}); only SD1.x (1x1-conv proj_in) is supported")
        to_k = sorted(k for k in sd if k.endswith(".attn2.to_k.weight"))
        if not to_k:
            raise ValueError("not an SD1.x UNet: no cross-attention weights (*.attn2.to_k.weight) found")
        context_dims = {sd[k].shape[1] for k in to_k}
        if len(context_dims) != 1:
            raise ValueError(f"unsupported architecture: mixed cross-attention widths {sorted(context_dims)}")
        context_dim = context_dims.pop()
        if context_dim == 1024:
            raise ValueError("unsupported architecture: SD2-style UNet (context width 1024, OpenCLIP-H); "
                             "only SD1.x (context 768) is supported")

        if "out.2.weight" not in sd:
            raise ValueError("not a UNet state dict: no output conv 'out.2.weight'")
        conv_in = sd["input_blocks.0.0.weight"]
        model_channels, in_channels = conv_in.shape[0], conv_in.shape[1]
        n_input = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.", k)))
        # Walk ldm's input blocks: per level num_res_blocks x (ResBlock [+ SpatialTransformer]), then a Downsample
        # (`.0.op`) except after the last level.
        levels: list[list[tuple[int, bool]]] = [[]]
        for n in range(1, n_input):
            if f"input_blocks.{n}.0.op.weight" in sd:
                levels.append([])
                continue
            key = f"input_blocks.{n}.0.out_layers.3.weight"
            if key not in sd:
                raise ValueError(f"unsupported architecture: input block {n} is neither a ResBlock nor a Downsample")
            levels[-1].append((sd[key].shape[0], f"input_blocks.{n}.1.proj_in.weight" in sd))
        res_counts = {len(level) for level in levels}
        if len(res_counts) != 1 or 0 in res_counts:
            raise ValueError(f"unsupported architecture: res blocks per level {[len(v) for v in levels]}")
        channel_mult, attention_resolutions = [], []
        for i, level in enumerate(levels):
            widths, attns = {w for w, _ in level}, {a for _, a in level}
            if len(widths) != 1 or len(attns) != 1:
                raise ValueError(f"unsupported architecture: level {i} mixes widths {sorted(widths)} "
                                 f"or attention {sorted(attns)}")
            width = widths.pop()
            if width % model_channels:
                raise ValueError(f"unsupported architecture: level {i} width {width} is not a multiple of "
                                 f"model_channels {model_channels}")
            channel_mult.append(width // model_channels)
            if attns.pop():
                attention_resolutions.append(2 ** i)
        depths = set()
        for key in proj_in:  # "<block>.proj_in.weight" -> count "<block>.transformer_blocks.<j>." indices
            block = re.escape(key[: -len("proj_in.weight")])
            depths.add(len({m.group(1) for k in sd if (m := re.match(block + r"transformer_blocks\.(\d+)\.", k))}))
        if len(depths) != 1:
            raise ValueError(f"unsupported architecture: transformer depths {sorted(depths)} differ between blocks")
        return cls(
            in_channels=in_channels,
            out_channels=sd["out.2.weight"].shape[0],
            model_channels=model_channels,
            channel_mult=tuple(channel_mult),
            num_res_blocks=res_counts.pop(),
            attention_resolutions=tuple(attention_resolutions),
            num_heads=8,
            transformer_depth=depths.pop(),
            context_dim=context_dim,
        )
