"""Token merging (ToMe for SD, Bolya & Hoffman 2023) with tomesd 0.1.3's semantics and A1111's arguments:
``max_downsample=1, sx=2, sy=2, use_rand=False, merge_attn=True, merge_crossattn=False, merge_mlp=False``.

In every transformer block at full latent resolution, the self-attention runs on fewer tokens: the top-left token of
each 2×2 cell is a destination, every other token a source; the ``int(N·ratio)`` sources most similar (cosine, on
the raw block input) to some destination are averaged into it, and the attention output is copied back to them.
SD1/SD2 have five such blocks (input blocks 1–2, output blocks 9–11); SDXL has none (no attention at full
resolution), so merging changes nothing there.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..unet.attention import BasicTransformerBlock

Merge = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def bipartite_merge(metric: torch.Tensor, height: int, width: int, r: int,
                    sx: int = 2, sy: int = 2) -> tuple[Merge, Merge]:
    """``(merge, unmerge)`` for tokens ``metric`` [B, N, C] laid out row-major on a ``height``×``width`` grid;
    ``merge`` [B, N, C'] → [B, N − r', C'], ``unmerge`` back (r' = min(r, number of sources))."""
    b, n, _ = metric.shape
    if r <= 0:
        return _identity, _identity
    with torch.no_grad():
        # Destinations: the top-left token of every whole sy×sx cell; sources: all the others, in token order.
        rows = torch.arange(height, device=metric.device)[:, None]
        cols = torch.arange(width, device=metric.device)[None, :]
        is_dst = ((rows % sy == 0) & (rows < height // sy * sy) & (cols % sx == 0) & (cols < width // sx * sx))
        is_dst = is_dst.reshape(-1)
        dst_pos = is_dst.nonzero()[:, 0]
        src_pos = (~is_dst).nonzero()[:, 0]
        unit = metric / metric.norm(dim=-1, keepdim=True)
        scores = unit[:, src_pos] @ unit[:, dst_pos].transpose(-1, -2)  # [B, S, D]
        r = min(src_pos.numel(), r)
        best_score, best_dst = scores.max(dim=-1)
        order = best_score.argsort(dim=-1, descending=True)  # [B, S]
        kept, merged = order[:, r:], order[:, :r]
        merged_dst = best_dst.gather(1, merged)  # [B, r]

    def merge(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        src, dst = x[:, src_pos], x[:, dst_pos]
        unm = src.gather(1, kept[..., None].expand(-1, -1, c))
        moving = src.gather(1, merged[..., None].expand(-1, -1, c))
        dst = dst.scatter_reduce(1, merged_dst[..., None].expand(-1, -1, c), moving, reduce="mean")
        return torch.cat([unm, dst], dim=1)

    def unmerge(x: torch.Tensor) -> torch.Tensor:
        c = x.shape[-1]
        n_kept = kept.shape[1]
        unm, dst = x[:, :n_kept], x[:, n_kept:]
        out = x.new_zeros(b, n, c)
        out[:, dst_pos] = dst
        src_kept_pos = src_pos[kept]  # [B, S − r] token positions
        src_merged_pos = src_pos[merged]
        out.scatter_(1, src_kept_pos[..., None].expand(-1, -1, c), unm)
        out.scatter_(1, src_merged_pos[..., None].expand(-1, -1, c), dst.gather(1, merged_dst[..., None].expand(
            -1, -1, c)))
        return out

    return merge, unmerge


def _tome_forward(block: BasicTransformerBlock, state: dict) -> Callable:
    def forward(x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        height, width = state["size"]
        downsample = math.ceil(math.sqrt((height * width) // x.shape[1]))
        if downsample <= 1:
            merge, unmerge = bipartite_merge(x, height, width, int(x.shape[1] * state["ratio"]))
        else:
            merge, unmerge = _identity, _identity
        x = unmerge(block.attn1(merge(block.norm1(x)))) + x
        x = block.attn2(block.norm2(x), context) + x
        return block.ff(block.norm3(x)) + x
    return forward


class TokenMerging:
    """Context manager: token merging at ``ratio`` on every transformer block of ``unet`` (ratio 0: nothing is
    installed and the UNet runs unchanged)."""

    def __init__(self, unet: nn.Module, ratio: float) -> None:
        if not 0 <= ratio < 1:
            raise ValueError(f"token merging ratio must lie in [0, 1), got {ratio}")
        self.unet, self.ratio = unet, float(ratio)
        self._state: dict = {"size": None, "ratio": self.ratio}
        self._blocks: list[BasicTransformerBlock] = []
        self._handle = None

    def __enter__(self) -> "TokenMerging":
        if self.ratio == 0:
            return self

        def record_size(module, args):
            self._state["size"] = (args[0].shape[2], args[0].shape[3])

        self._handle = self.unet.register_forward_pre_hook(record_size)
        for module in self.unet.modules():
            if isinstance(module, BasicTransformerBlock):
                module.forward = _tome_forward(module, self._state)
                self._blocks.append(module)
        return self

    def __exit__(self, *exc) -> None:
        for block in self._blocks:
            del block.forward  # back to the class's forward
        self._blocks.clear()
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def token_merging_ratio(command: str, ratio: float = 0.0, ratio_img2img: float = 0.0, ratio_hr: float = 0.0,
                        hires: bool = False, ratio_overridden: bool = False) -> float:
    """A1111's `get_token_merging_ratio` from the three options (``ratio_overridden``: `token_merging_ratio` came
    from the job's override settings, e.g. a pasted infotext)."""
    if hires:
        return ratio_hr or ratio
    if command in ("img2img", "inpaint"):
        return (ratio if ratio_overridden else 0.0) or ratio_img2img or ratio
    return ratio
