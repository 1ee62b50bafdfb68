"""UNet architecture config (SD1.5 defaults, CompVis `v1-inference.yaml`) and its inference from checkpoint weights.

The same ldm/sgm `openaimodel.UNetModel` serves SD1.x, SD2.x and SDXL; the families differ only in the fields below
(`SD2_UNET`, `SDXL_UNET` are the published configs).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

_NORM_GROUPS = 32
# SDXL's ADM vector: pooled text embedding, then three size pairs (original, crop top-left, target), each number as a
# 256-wide sinusoidal embedding (sgm ConcatTimestepEmbedderND, outdim 256).
SDXL_SIZE_EMBED_DIM = 256
SDXL_SIZE_FEATURES = 6 * SDXL_SIZE_EMBED_DIM


@dataclass(frozen=True)
class UNetConfig:
    """Parameters of ldm's / sgm's `openaimodel.UNetModel` as SD uses it (spatial transformers).

    `attention_resolutions` holds downsampling factors (1 = full latent resolution), as in the yaml; it is stored
    sorted high to low like the yaml's [4, 2, 1].

    Heads: `num_head_channels > 0` fixes the head width (SD2/SDXL: 64, so heads = width // 64); otherwise every level has
    `num_heads` heads (SD1: 8). `transformer_depth` is one depth for every attention level or one per level (SDXL
    (0, 2, 10); levels without attention hold 0); the middle block uses `transformer_depth_middle`, by default the
    last level's depth. `use_linear_in_transformer`: Linear proj_in/proj_out (SD2/SDXL) instead of 1x1 convs.
    `adm_in_channels`: width of the vector added to the timestep embedding through `label_emb` (SDXL 2816).
    """

    in_channels: int = 4  # 9 for inpainting: noisy latent, mask, masked-image latent
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_heads: int = 8  # at every level, so the head dim grows with the width (40/80/160 in SD1.5)
    transformer_depth: int | tuple[int, ...] = 1
    context_dim: int = 768
    num_head_channels: int = -1
    use_linear_in_transformer: bool = False
    transformer_depth_middle: int | None = None
    adm_in_channels: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_resolutions",
                           tuple(sorted({int(r) for r in self.attention_resolutions}, reverse=True)))
        if not isinstance(self.transformer_depth, int):
            depths = tuple(int(d) for d in self.transformer_depth)
            if len(depths) != len(self.channel_mult):
                raise ValueError(f"UNetConfig.transformer_depth needs one depth per level ({len(self.channel_mult)}), "
                                 f"got {depths}")
            object.__setattr__(self, "transformer_depth", depths)
        for name in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "num_heads", "context_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be positive, got {getattr(self, name)}")
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNetConfig.channel_mult must be non-empty and positive, got {self.channel_mult}")
        if self.adm_in_channels is not None and self.adm_in_channels < 1:
            raise ValueError(f"UNetConfig.adm_in_channels must be positive or None, got {self.adm_in_channels}")
        for level, width in enumerate(self.widths):
            if width % _NORM_GROUPS:
                raise ValueError(f"UNet width {width} is not a multiple of {_NORM_GROUPS} (GroupNorm groups)")
            if self.has_attention(level) or level == len(self.widths) - 1:
                if self.depth_at(level) < 1 and self.has_attention(level):
                    raise ValueError(f"UNetConfig.transformer_depth must be positive at attention level {level}")
                heads, d_head = self.heads_at(width)
                if heads * d_head != width:
                    unit = (f"heads of {self.num_head_channels} channels" if self.num_head_channels > 0
                            else f"{self.num_heads} heads")
                    raise ValueError(f"UNet width {width} does not split into {unit}")
        if self.middle_depth < 1:
            raise ValueError(f"UNetConfig.transformer_depth_middle must be positive, got {self.middle_depth}")

    @property
    def is_inpainting(self) -> bool:
        return self.in_channels == 9

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each resolution level."""
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def downsample_factor(self) -> int:
        """Overall downscale of the encoder; other latent sizes resize at the skips (`unet.model.skip_cat`)."""
        return 2 ** (len(self.channel_mult) - 1)

    def has_attention(self, level: int) -> bool:
        return 2 ** level in self.attention_resolutions

    def depth_at(self, level: int) -> int:
        """Transformer blocks per spatial transformer at `level`."""
        d = self.transformer_depth
        return d if isinstance(d, int) else d[level]

    @property
    def middle_depth(self) -> int:
        if self.transformer_depth_middle is not None:
            return self.transformer_depth_middle
        return self.depth_at(len(self.channel_mult) - 1)

    def heads_at(self, width: int) -> tuple[int, int]:
        """(heads, head width) of the attention layers of a `width`-channel transformer."""
        if self.num_head_channels > 0:
            return width // self.num_head_channels, self.num_head_channels
        return self.num_heads, width // self.num_heads

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> UNetConfig:
        """Infer the config from a UNet state dict with the `model.diffusion_model.` prefix already stripped.

        Widths, input channels, levels, res blocks per level, attention levels, transformer depths (per level and
        middle), projection kind, context width and the ADM width come from weight shapes and keys. Head counts cannot
        be recovered and follow the family conventions: 8 heads at every level for SD1-style UNets (1x1-conv
        projections), 64-channel heads for SD2/SDXL-style ones (Linear projections).
        """
        if "input_blocks.0.0.weight" not in sd:
            prefixed = [k for k in sd if k.endswith("input_blocks.0.0.weight")]
            hint = f"; found {prefixed[0]!r}: strip the prefix first" if prefixed else ""
            raise ValueError(f"not a UNet state dict: no 'input_blocks.0.0.weight'{hint}")
        proj_in = [k for k in sd if k.endswith(".proj_in.weight")]
        kinds = {sd[k].ndim for k in proj_in}
        if len(kinds) > 1:
            raise ValueError("unsupported architecture: mixed Linear and 1x1-conv proj_in weights")
        linear = kinds == {2}
        to_k = sorted(k for k in sd if k.endswith(".attn2.to_k.weight"))
        if not to_k:
            raise ValueError("not a Stable Diffusion UNet: no cross-attention weights (*.attn2.to_k.weight) found")
        context_dims = {sd[k].shape[1] for k in to_k}
        if len(context_dims) != 1:
            raise ValueError(f"unsupported architecture: mixed cross-attention widths {sorted(context_dims)}")
        context_dim = context_dims.pop()
        adm_in_channels = None
        if any(k.startswith("label_emb.") for k in sd):
            if "label_emb.0.0.weight" not in sd or "label_emb.0.2.weight" not in sd:
                raise ValueError("unsupported architecture: label_emb is not the sequential ADM embedding "
                                 "(label_emb.0.0 / label_emb.0.2)")
            adm_in_channels = sd["label_emb.0.0.weight"].shape[1]

        if "out.2.weight" not in sd:
            raise ValueError("not a UNet state dict: no output conv 'out.2.weight'")
        conv_in = sd["input_blocks.0.0.weight"]
        model_channels, in_channels = conv_in.shape[0], conv_in.shape[1]
        n_input = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"input_blocks\.(\d+)\.", k)))
        # Walk ldm's input blocks: per level num_res_blocks x (ResBlock [+ SpatialTransformer]), then a Downsample
        # (`.0.op`) except after the last level.
        levels: list[list[tuple[int, bool]]] = [[]]
        block_level: dict[str, int] = {}
        for n in range(1, n_input):
            if f"input_blocks.{n}.0.op.weight" in sd:
                levels.append([])
                continue
            key = f"input_blocks.{n}.0.out_layers.3.weight"
            if key not in sd:
                raise ValueError(f"unsupported architecture: input block {n} is neither a ResBlock nor a Downsample")
            levels[-1].append((sd[key].shape[0], f"input_blocks.{n}.1.proj_in.weight" in sd))
            block_level[f"input_blocks.{n}.1."] = len(levels) - 1
        res_counts = {len(level) for level in levels}
        if len(res_counts) != 1 or 0 in res_counts:
            raise ValueError(f"unsupported architecture: res blocks per level {[len(v) for v in levels]}")
        num_res_blocks = res_counts.pop()
        for n in range(len(levels) * (num_res_blocks + 1)):
            block_level[f"output_blocks.{n}.1."] = len(levels) - 1 - n // (num_res_blocks + 1)
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
        # "<block>.proj_in.weight" -> count "<block>.transformer_blocks.<j>." indices, grouped by level.
        level_depths: dict[int, set[int]] = {}
        middle_depths = set()
        for key in proj_in:
            block = key[: -len("proj_in.weight")]
            pattern = re.escape(block) + r"transformer_blocks\.(\d+)\."
            depth = len({m.group(1) for k in sd if (m := re.match(pattern, k))})
            if block == "middle_block.1.":
                middle_depths.add(depth)
            elif block in block_level:
                level_depths.setdefault(block_level[block], set()).add(depth)
            else:
                raise ValueError(f"unsupported architecture: spatial transformer at unexpected place {block[:-1]!r}")
        if any(len(d) != 1 for d in level_depths.values()) or len(middle_depths) != 1:
            raise ValueError(f"unsupported architecture: transformer depths differ within a level "
                             f"({ {lv: sorted(d) for lv, d in level_depths.items()} }, middle {sorted(middle_depths)})")
        per_level = tuple(level_depths[i].pop() if i in level_depths else 0 for i in range(len(levels)))
        attn_depths = {d for d in per_level if d}
        middle = middle_depths.pop()
        if len(attn_depths) == 1 and (depth := attn_depths.pop()) == middle:
            transformer_depth, transformer_depth_middle = depth, None
        else:
            transformer_depth = per_level
            transformer_depth_middle = None if middle == per_level[-1] else middle
        return cls(
            in_channels=in_channels,
            out_channels=sd["out.2.weight"].shape[0],
            model_channels=model_channels,
            channel_mult=tuple(channel_mult),
            num_res_blocks=num_res_blocks,
            attention_resolutions=tuple(attention_resolutions),
            num_heads=8,
            transformer_depth=transformer_depth,
            context_dim=context_dim,
            num_head_channels=64 if linear else -1,
            use_linear_in_transformer=linear,
            transformer_depth_middle=transformer_depth_middle,
            adm_in_channels=adm_in_channels,
        )


# The published UNet configs: SD 2.x (v2-inference.yaml and v2-inference-v.yaml share it) and SDXL base 1.0
# (sd_xl_base.yaml); the inpainting variants differ only in in_channels = 9.
SD2_UNET = UNetConfig(num_head_channels=64, use_linear_in_transformer=True, context_dim=1024)
SDXL_UNET = UNetConfig(channel_mult=(1, 2, 4), attention_resolutions=(4, 2), num_head_channels=64,
                       use_linear_in_transformer=True, transformer_depth=(0, 2, 10), context_dim=2048,
                       adm_in_channels=2816)
