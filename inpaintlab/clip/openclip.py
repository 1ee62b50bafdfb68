"""OpenCLIP text transformer: SD 2.x's ViT-H/14 and SDXL's ViT-bigG/14 text towers.

Attribute names reproduce the checkpoint keys after the prefix (``cond_stage_model.model.`` in SD 2.x files,
``conditioner.embedders.1.model.`` in SDXL files): ``token_embedding``, ``positional_embedding``,
``transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc,
mlp.c_proj}``, ``ln_final`` and ``text_projection``, so the weights load with ``load_state_dict(strict=True)`` once
the scalar ``logit_scale`` is dropped (``split_state_dict``). The q/k/v projection stays fused as in the file.

Semantics of OpenCLIP's ``TextTransformer`` (open_clip 2.20, as A1111 v1.10 pins): token embedding plus learned
absolute positions, pre-LN residual blocks ``x += attn(ln_1 x); x += mlp(ln_2 x)`` with causal self-attention
(no padding mask), MLP ``c_fc -> GELU (exact, not CLIP's quick-GELU) -> c_proj``, LayerNorm eps 1e-5, head dim 64
(ViT-H 16 heads, bigG 20), ``text_projection`` a ``[width, embed_dim]`` matrix applied on the right.

The two ways Stable Diffusion reads the tower:

* SD 2.x (ldm ``FrozenOpenCLIPEmbedder``, ``layer="penultimate"``): run all blocks but the last, then ``ln_final``
  (``forward(tokens, clip_skip=2)``). The last block and ``text_projection`` are in the file but unused.
* SDXL (sgm ``FrozenOpenCLIPEmbedder2``, ``layer="penultimate"``, ``always_return_pooled``): the sequence is the
  input of the last block *without* ``ln_final``; the pooled vector is ``ln_final`` of the last block's output at
  the position of the largest token id (the end token), times ``text_projection`` (``forward_penultimate_pooled``).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import check_backend

HEAD_DIM = 64  # ViT-H/14 1024 / 16 and bigG/14 1280 / 20; head counts are not in the weights
SD2_PREFIX = "cond_stage_model.model."
SDXL_G_PREFIX = "conditioner.embedders.1.model."
IGNORED_KEYS = ("logit_scale",)  # CLIP's contrastive temperature: stored in the files, no role in text encoding


@dataclass(frozen=True)
class OpenCLIPTextConfig:
    """Text-tower sizes; defaults are OpenCLIP ViT-H/14 (SD 2.x). ``projection_dim`` None: no ``text_projection``."""

    vocab_size: int = 49408
    max_positions: int = 77
    width: int = 1024
    layers: int = 24
    mlp_dim: int = 4096
    projection_dim: int | None = 1024

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_positions", "width", "layers", "mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"OpenCLIPTextConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"OpenCLIPTextConfig: projection_dim must be >= 1 or None, got {self.projection_dim}")
        if self.width % HEAD_DIM:
            raise ValueError(f"OpenCLIPTextConfig: width {self.width} is not a multiple of the head dim {HEAD_DIM}")

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> OpenCLIPTextConfig:
        """Infer the config from keys relative to the prefix (``token_embedding.weight``, ``transformer.*``, ...).

        ``logit_scale`` must already be dropped (``split_state_dict`` does it): it is not a parameter of this model.
        """
        for key in IGNORED_KEYS:
            if key in sd:
                raise ValueError(f"OpenCLIPTextConfig.from_state_dict: drop {key!r} first (it plays no part in "
                                 "text encoding; split_state_dict removes it)")

        def shape(key: str) -> tuple[int, ...]:
            if key not in sd:
                raise KeyError(f"OpenCLIPTextConfig.from_state_dict: missing key {key!r} (expected keys relative to "
                               f"{SD2_PREFIX!r} or {SDXL_G_PREFIX!r}, e.g. 'token_embedding.weight')")
            return tuple(sd[key].shape)

        vocab_size, width = shape("token_embedding.weight")
        max_positions = shape("positional_embedding")[0]
        layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))})
        if not layers or layers != list(range(len(layers))):
            raise ValueError(f"OpenCLIPTextConfig.from_state_dict: transformer.resblocks indices are {layers}, "
                             "expected 0..N-1")
        mlp_dim = shape("transformer.resblocks.0.mlp.c_fc.weight")[0]
        projection_dim = shape("text_projection")[1] if "text_projection" in sd else None
        return cls(vocab_size=vocab_size, max_positions=max_positions, width=width, layers=len(layers),
                   mlp_dim=mlp_dim, projection_dim=projection_dim)


# Full-size towers as Stable Diffusion files carry them.
VIT_H_14 = OpenCLIPTextConfig()
VIT_BIGG_14 = OpenCLIPTextConfig(width=1280, layers=32, mlp_dim=5120, projection_dim=1280)


def split_state_dict(checkpoint: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tower's tensors from a whole-checkpoint dict: keys under ``prefix`` with it stripped, ``logit_scale``
    dropped. Raises KeyError if no key has the prefix."""
    sd = {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}
    if not sd:
        raise KeyError(f"no OpenCLIP text-tower keys under {prefix!r}")
    for key in IGNORED_KEYS:
        sd.pop(key, None)
    return sd


class OpenCLIPAttention(nn.Module):
    """Causal multi-head self-attention with the fused q/k/v projection of ``nn.MultiheadAttention``."""

    def __init__(self, config: OpenCLIPTextConfig):
        super().__init__()
        self.heads = config.heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * config.width, config.width))  # rows: q, k, v
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * config.width))
        self.out_proj = nn.Linear(config.width, config.width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)

        def split(t: torch.Tensor) -> torch.Tensor:  # [B,L,Hd*D] -> [B,Hd,L,D]
            return t.reshape(b, length, self.heads, width // self.heads).transpose(1, 2)

        # Torch SDPA, as in the SD1 text encoder: 77 tokens once per prompt is a negligible share of a run.
        h = F.scaled_dot_product_attention(split(q), split(k), split(v), is_causal=True)
        return self.out_proj(h.transpose(1, 2).reshape(b, length, width))  # [B,Hd,L,D] -> [B,L,Hd*D]


class OpenCLIPMLP(nn.Module):
    """c_fc -> exact GELU -> c_proj (OpenCLIP's ViT-H/bigG text towers do not use quick-GELU)."""

    def __init__(self, config: OpenCLIPTextConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.width, config.mlp_dim)
        self.c_proj = nn.Linear(config.mlp_dim, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Follows open_clip ``ResidualAttentionBlock`` (no layer scale): x += attn(ln_1 x); x += mlp(ln_2 x)."""

    def __init__(self, config: OpenCLIPTextConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.width, eps=1e-5)
        self.attn = OpenCLIPAttention(config)
        self.ln_2 = nn.LayerNorm(config.width, eps=1e-5)
        self.mlp = OpenCLIPMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class OpenCLIPTransformer(nn.Module):
    def __init__(self, config: OpenCLIPTextConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(config) for _ in range(config.layers))


class OpenCLIPTextTransformer(nn.Module):
    """The text half of an OpenCLIP model (``open_clip.CLIP`` without ``visual``), returning hidden states.

    Same calling convention as ``CLIPTextTransformer``, so A1111's conditioning code drives both: ``tokens`` [B,L],
    optional ``inputs_embeds`` [B,L,width] replacing the token-embedding lookup (textual inversion), ``clip_skip``
    N selecting ``hidden_states[-N]`` (embeddings plus every block's output; 1 = last block).
    """

    def __init__(self, config: OpenCLIPTextConfig | None = None, kernels: str = "torch"):
        super().__init__()
        self.config = config = config if config is not None else OpenCLIPTextConfig()
        # Accepted for a uniform model constructor; the text encoder has no GroupNorm and uses torch ops throughout.
        self.kernels = check_backend(kernels)
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.positional_embedding = nn.Parameter(torch.empty(config.max_positions, config.width))
        self.transformer = OpenCLIPTransformer(config)
        self.ln_final = nn.LayerNorm(config.width, eps=1e-5)
        if config.projection_dim is not None:
            self.text_projection = nn.Parameter(torch.empty(config.width, config.projection_dim))
            nn.init.normal_(self.text_projection, std=config.width**-0.5)
        else:
            self.register_parameter("text_projection", None)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)

    def _embed(self, tokens: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        cfg = self.config
        if inputs_embeds is not None:
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[2] != cfg.width:
                raise ValueError(f"inputs_embeds must be [B,L,{cfg.width}], got shape {tuple(inputs_embeds.shape)}")
            shape = tuple(inputs_embeds.shape[:2])
            if tokens is not None and tuple(tokens.shape) != shape:
                raise ValueError(f"tokens shape {tuple(tokens.shape)} does not match inputs_embeds shape {shape}")
        else:
            if tokens is None:
                raise ValueError("OpenCLIPTextTransformer: give tokens or inputs_embeds")
            shape = tuple(tokens.shape)
        if tokens is not None:
            if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"tokens must be integer ids [B,L], got {tokens.dtype} of shape {tuple(tokens.shape)}")
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
                raise ValueError(f"token ids must lie in 0..{cfg.vocab_size - 1}, "
                                 f"got {int(tokens.min())}..{int(tokens.max())}")
        if not 1 <= shape[1] <= cfg.max_positions:
            raise ValueError(f"sequence length must be 1..{cfg.max_positions}, got {shape[1]}")
        if inputs_embeds is None:
            inputs_embeds = self.token_embedding(tokens)
        return inputs_embeds + self.positional_embedding[: shape[1]]

    def forward(self, tokens: torch.Tensor | None, clip_skip: int = 1, inputs_embeds: torch.Tensor | None = None,
                *, final_norm: bool = True) -> torch.Tensor:
        """Hidden states [B,L,width]: ``hidden_states[-clip_skip]``, then ``ln_final`` if ``final_norm``.

        SD 2.x's conditioning is ``forward(tokens, clip_skip=2)`` (penultimate block, then ln_final).
        Valid ``clip_skip``: 1 .. layers + 1 (layers + 1 = the embeddings).
        """
        cfg = self.config
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= cfg.layers + 1:
            raise ValueError(f"clip_skip must be an int in 1..{cfg.layers + 1} (1 = last layer), got {clip_skip!r}")
        x = self._embed(tokens, inputs_embeds)
        # hidden_states[-N] is the output after (layers + 1 - N) blocks; later blocks are never computed.
        for block in self.transformer.resblocks[: cfg.layers + 1 - clip_skip]:
            x = block(x)
        return self.ln_final(x) if final_norm else x

    def forward_penultimate_pooled(self, tokens: torch.Tensor,
                                   inputs_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """SDXL's reading: (penultimate hidden states [B,L,width] without ln_final, pooled [B,projection_dim]).

        pooled = ``ln_final(last block output)`` at ``tokens.argmax(-1)`` (the end token: OpenCLIP prompts are
        padded with 0 after it) ``@ text_projection``. ``tokens`` is needed even with ``inputs_embeds`` to find it.
        """
        if self.text_projection is None:
            raise ValueError("this OpenCLIP text tower has no text_projection, so it has no pooled output")
        if tokens is None:
            raise ValueError("forward_penultimate_pooled needs the token ids to locate the end token")
        if self.config.layers < 2:
            raise ValueError("the penultimate hidden state needs at least 2 blocks")
        x = self._embed(tokens, inputs_embeds)
        blocks = self.transformer.resblocks
        for block in blocks[:-1]:
            x = block(x)
        penultimate = x
        last = self.ln_final(blocks[-1](x))
        pooled = last[torch.arange(last.shape[0], device=last.device), tokens.argmax(dim=-1)] @ self.text_projection
        return penultimate, pooled

    def extra_repr(self) -> str:
        return f"heads={self.config.heads}, kernels={self.kernels!r}"
