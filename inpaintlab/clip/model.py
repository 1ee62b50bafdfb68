"""CLIP ViT-L/14 text transformer as used by SD1.x (`FrozenCLIPEmbedder` = HF `CLIPTextModel`).

Attribute names reproduce the checkpoint keys after `cond_stage_model.transformer.text_model.`, so the weights load
with `load_state_dict(strict=True)` once the stored `embeddings.position_ids` is dropped (it is always `arange(77)`).
Pre-LN blocks, quick-GELU, LayerNorm eps 1e-5, causal self-attention without a padding mask, head dim 64.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import check_backend

HEAD_DIM = 64  # SD1 convention: heads are not recorded in the weights, so heads = width // 64 (768 -> 12)


@dataclass(frozen=True)
class CLIPTextConfig:
    """Text-transformer sizes; defaults are CLIP ViT-L/14 (SD1.x)."""

    vocab_size: int = 49408
    max_positions: int = 77
    width: int = 768
    layers: int = 12
    mlp_dim: int = 3072

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_positions", "width", "layers", "mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"CLIPTextConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.width % HEAD_DIM:
            raise ValueError(f"CLIPTextConfig: width {self.width} is not a multiple of the head dim {HEAD_DIM}")

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor]) -> CLIPTextConfig:
        """Infer the config from a state dict whose keys are relative to `text_model.` (`embeddings.*`, ...).

        `embeddings.position_ids` must already be dropped: it is not a parameter of this model.
        """
        if "embeddings.position_ids" in sd:
            raise ValueError("CLIPTextConfig.from_state_dict: drop 'embeddings.position_ids' first "
                             "(the stored value is ignored; the model always uses arange(max_positions))")

        def shape(key: str) -> tuple[int, ...]:
            if key not in sd:
                raise KeyError(f"CLIPTextConfig.from_state_dict: missing key {key!r} "
                               "(expected keys relative to 'text_model.', e.g. 'embeddings.token_embedding.weight')")
            return tuple(sd[key].shape)

        vocab_size, width = shape("embeddings.token_embedding.weight")
        max_positions = shape("embeddings.position_embedding.weight")[0]
        layers = sorted({int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
        if not layers or layers != list(range(len(layers))):
            raise ValueError(f"CLIPTextConfig.from_state_dict: encoder.layers indices are {layers}, expected 0..N-1")
        mlp_dim = shape("encoder.layers.0.mlp.fc1.weight")[0]
        return cls(vocab_size=vocab_size, max_positions=max_positions, width=width, layers=len(layers),
                   mlp_dim=mlp_dim)


class CLIPTextEmbeddings(nn.Module):
    """Token embedding plus learned absolute position embedding."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(config.vocab_size, config.width)
        self.position_embedding = nn.Embedding(config.max_positions, config.width)
        # Non-persistent, as in transformers >= 4.31: checkpoints store it (sometimes as drifted floats) but the
        # value is always arange, so it is never loaded.
        self.register_buffer("position_ids", torch.arange(config.max_positions).unsqueeze(0), persistent=False)

    def forward(self, tokens: torch.Tensor | None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.token_embedding(tokens)
        # Looking up arange(L) is a slice of the table. Slicing also stays right for a model materialised from the
        # meta device with to_empty(), where the non-persistent buffer would hold uninitialised memory.
        return inputs_embeds + self.position_embedding.weight[: inputs_embeds.shape[1]]


class CLIPAttention(nn.Module):
    """Multi-head causal self-attention with separate q/k/v/out projections (all with bias)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.heads = config.heads
        self.k_proj = nn.Linear(config.width, config.width)
        self.v_proj = nn.Linear(config.width, config.width)
        self.q_proj = nn.Linear(config.width, config.width)
        self.out_proj = nn.Linear(config.width, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [B,L,Hd*D] -> [B,Hd,L,D]
            return t.view(b, length, self.heads, width // self.heads).transpose(1, 2)

        # Torch SDPA directly: the causal mask is not part of inpaintlab.kernels.attention, and the text encoder runs
        # once per prompt on 77 tokens, a negligible share of an inpainting run.
        h = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)),
                                           is_causal=True)
        return self.out_proj(h.transpose(1, 2).reshape(b, length, width))  # [B,Hd,L,D] -> [B,L,Hd*D]


class CLIPMLP(nn.Module):
    """fc1 -> quick-GELU (x * sigmoid(1.702 x), the activation CLIP was trained with) -> fc2."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.width, config.mlp_dim)
        self.fc2 = nn.Linear(config.mlp_dim, config.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))


class CLIPEncoderLayer(nn.Module):
    """Pre-LN transformer block: x += attn(ln1 x); x += mlp(ln2 x)."""

    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.self_attn = CLIPAttention(config)
        self.layer_norm1 = nn.LayerNorm(config.width, eps=1e-5)
        self.mlp = CLIPMLP(config)
        self.layer_norm2 = nn.LayerNorm(config.width, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPTextConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.layers))


class CLIPTextTransformer(nn.Module):
    """HF CLIPTextTransformer (the `text_model` of CLIPTextModel) returning hidden states for SD conditioning."""

    def __init__(self, config: CLIPTextConfig | None = None, kernels: str = "torch"):
        super().__init__()
        self.config = config = config if config is not None else CLIPTextConfig()
        # Accepted for a uniform model constructor; the text encoder has no GroupNorm and uses torch ops throughout.
        self.kernels = check_backend(kernels)
        self.embeddings = CLIPTextEmbeddings(config)
        self.encoder = CLIPEncoder(config)
        self.final_layer_norm = nn.LayerNorm(config.width, eps=1e-5)

    def forward(self, tokens: torch.Tensor | None, clip_skip: int = 1,
                inputs_embeds: torch.Tensor | None = None, *, final_norm: bool = True) -> torch.Tensor:
        """Hidden states [B,L,width] for token ids [B,L] (L <= max_positions).

        clip_skip: 1 returns the last hidden state (after final_layer_norm); N > 1 returns
            final_layer_norm(hidden_states[-N]), where hidden_states holds the embeddings and every layer's output
            (13 entries for SD1), as A1111's "Clip skip" does. Valid values are 1 .. layers + 1.
        final_norm: False returns hidden_states[-N] itself, without final_layer_norm (SDXL reads CLIP-L so:
            hidden_states[-2], i.e. ``clip_skip=2, final_norm=False``).
        inputs_embeds: optional [B,L,width] used instead of the token-embedding lookup (e.g. with textual-inversion
            vectors spliced in); position embeddings are still added. `tokens` may then be None; if given, its
            shape must be [B,L].
        """
        cfg = self.config
        if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= cfg.layers + 1:
            raise ValueError(f"clip_skip must be an int in 1..{cfg.layers + 1} (1 = last layer), got {clip_skip!r}")
        if inputs_embeds is not None:
            if inputs_embeds.ndim != 3 or inputs_embeds.shape[2] != cfg.width:
                raise ValueError(f"inputs_embeds must be [B,L,{cfg.width}], got shape {tuple(inputs_embeds.shape)}")
            shape = tuple(inputs_embeds.shape[:2])
            if tokens is not None and tuple(tokens.shape) != shape:
                raise ValueError(f"tokens shape {tuple(tokens.shape)} does not match inputs_embeds shape {shape}")
        else:
            if tokens is None:
                raise ValueError("CLIPTextTransformer: give tokens or inputs_embeds")
            if tokens.ndim != 2 or tokens.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"tokens must be integer ids [B,L], got {tokens.dtype} of shape {tuple(tokens.shape)}")
            if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
                raise ValueError(f"token ids must lie in 0..{cfg.vocab_size - 1}, "
                                 f"got {int(tokens.min())}..{int(tokens.max())}")
            shape = tuple(tokens.shape)
        if not 1 <= shape[1] <= cfg.max_positions:
            raise ValueError(f"sequence length must be 1..{cfg.max_positions}, got {shape[1]}")

        x = self.embeddings(tokens, inputs_embeds)
        # hidden_states[-N] is the output after (layers + 1 - N) layers; later layers are never computed.
        for layer in self.encoder.layers[: cfg.layers + 1 - clip_skip]:
            x = layer(x)
        return self.final_layer_norm(x) if final_norm else x

    def extra_repr(self) -> str:
        return f"heads={self.config.heads}, kernels={self.kernels!r}"
