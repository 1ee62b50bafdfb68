"""The SDXL refiner's conditioning (sgm `sd_xl_refiner.yaml` as A1111 v1.10 drives it).

    crossattn = OpenCLIP bigG hidden states after the penultimate block (no ln_final), [B, 77k, 1280]
    vector    = [pooled (1280) | E(h) | E(w) | E(crop top) | E(crop left) | E(aesthetic score)]   -> [B, 2560]

E is the UNet's 256-wide sinusoidal embedding (sgm ConcatTimestepEmbedderND, outdim 256) of each number; (h, w) is
the processing size, the crop A1111's `sdxl_crop_top/left` (0, 0), and the aesthetic score A1111's options
`sdxl_refiner_high_aesthetic_score` (6.0, prompts) and `sdxl_refiner_low_aesthetic_score` (2.5, negative prompts).
There is no target-size embedder (the base model has one). Prompts are read as SDXL's bigG reads them
(`clip.sd2_sdxl`: A1111's chunks, padding with id 0 after the end token, emphasis, pooled from the first chunk);
Clip skip does not apply. A negative prompt whose texts are all empty gives zero crossattn and pooled vectors
(sgm force_zero_embeddings); its size and aesthetic parts stay.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..clip.conditioning import _check_emphasis, _check_texts, _encode_batch, _Reader, _tokenize_batch
from ..clip.openclip import OpenCLIPTextTransformer
from ..clip.sd2_sdxl import OPENCLIP_PAD, _default_openclip_tokenizer
from ..clip.tokenizer import Tokenizer
from ..unet.blocks import timestep_embedding
from ..unet.config import SDXL_SIZE_EMBED_DIM

AESTHETIC_SCORE = 6.0            # A1111 option sdxl_refiner_high_aesthetic_score (prompts)
NEGATIVE_AESTHETIC_SCORE = 2.5   # A1111 option sdxl_refiner_low_aesthetic_score (negative prompts)
REFINER_SIZE_FEATURES = 5 * SDXL_SIZE_EMBED_DIM


@torch.no_grad()
def encode_prompts_refiner(clip_g: OpenCLIPTextTransformer, texts: Sequence[str],
                           embeddings: Mapping[str, torch.Tensor] | None = None, *, tokenizer: Tokenizer | None = None,
                           negative: bool = False, comma_padding_backtrack: int = 20,
                           emphasis: str = "Original") -> tuple[torch.Tensor, torch.Tensor]:
    """(crossattn [B, 77k, width], pooled [B, projection]) of a batch of prompts for the SDXL refiner."""
    if not isinstance(clip_g, OpenCLIPTextTransformer):
        raise TypeError(f"clip_g must be an OpenCLIPTextTransformer, got {type(clip_g).__name__}")
    if clip_g.text_projection is None:
        raise ValueError("clip_g has no text_projection: the refiner's pooled output needs it")
    _check_emphasis(emphasis)
    _check_texts(texts, "encode_prompts_refiner")
    tokenizer = tokenizer if tokenizer is not None else _default_openclip_tokenizer()
    chunks = _tokenize_batch(tokenizer, texts, embeddings, comma_padding_backtrack, emphasis)
    reader = _Reader(clip_g.token_embedding, OPENCLIP_PAD, clip_g.forward_penultimate_pooled)
    context, pooled = _encode_batch(reader, chunks, emphasis)
    if negative and all(text == "" for text in texts):
        context, pooled = torch.zeros_like(context), torch.zeros_like(pooled)
    return context, pooled


def refiner_size_embedding(size: Sequence[int], crop_top_left: Sequence[int], aesthetic_score: float,
                           batch: int = 1) -> torch.Tensor:
    """[batch, 5 * 256] float32: E(h), E(w), E(crop top), E(crop left), E(aesthetic score)."""
    numbers = [*size, *crop_top_left, aesthetic_score]
    if len(numbers) != 5:
        raise ValueError(f"need an (h, w) size and a (top, left) crop, got {size}, {crop_top_left}")
    emb = timestep_embedding(torch.tensor(numbers, dtype=torch.float32), SDXL_SIZE_EMBED_DIM)
    return emb.reshape(1, REFINER_SIZE_FEATURES).expand(batch, -1)


def refiner_adm_vector(pooled: torch.Tensor, size: Sequence[int], crop_top_left: Sequence[int],
                       aesthetic_score: float) -> torch.Tensor:
    """y [B, pooled width + 1280] from the pooled text [B, P], the (h, w) size, the crop and the aesthetic score."""
    if pooled.ndim != 2:
        raise ValueError(f"pooled must be [B, P], got {tuple(pooled.shape)}")
    extra = refiner_size_embedding(size, crop_top_left, aesthetic_score, pooled.shape[0])
    return torch.cat([pooled.float(), extra.to(pooled.device)], dim=1)
