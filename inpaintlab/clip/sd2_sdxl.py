"""A1111 v1.10 text conditioning for SD 2.x (OpenCLIP ViT-H/14) and SDXL (CLIP ViT-L/14 + OpenCLIP ViT-bigG/14).

API for the pipeline::

    encode_prompts_sd2(text_encoder, tokenizer, texts, clip_skip=1, embeddings=None)
        -> context [B, 77k, 1024]
    encode_prompts_sdxl(clip_l, clip_g, tokenizer, texts, clip_skip=1, embeddings=None,
                        *, tokenizer_g=None, clip_l_skip=False, negative=False)
        -> (context [B, 77k, 2048], pooled [B, 1280])
    load_sdxl_embeddings(directory) -> {name: {"clip_l": [n, 768], "clip_g": [n, 1280]}}
    SD 2.x embeddings: conditioning.load_embeddings(directory, width=1024)

``text_encoder`` / ``clip_g`` are ``OpenCLIPTextTransformer``, ``clip_l`` a ``CLIPTextTransformer``; ``tokenizer``
for SD 2.x should be an ``OpenCLIPTokenizer``. Both functions also take ``comma_padding_backtrack=20`` and
``emphasis="Original"`` as ``conditioning.encode_prompts`` does, and group prompts the same way: one call per
prompt with its prompt-schedule variants, because emphasis means are taken over the whole batch of a chunk.

What A1111 does, reproduced here:

1. A prompt becomes chunks exactly as for SD1 (attention weights, 75-token chunks with the comma back-off,
   ``BREAK``, textual-inversion blocks); every chunk is ``[start] + 75 ids + [end]``, padded with the end token.
2. OpenCLIP towers (SD 2.x, SDXL's bigG) see every position after the chunk's first end token replaced by id 0
   (``!``); SDXL's CLIP-L keeps end-token padding, as SD1.
3. SD 2.x: ``ln_final`` of the penultimate block's output (ldm ``FrozenOpenCLIPEmbedder``, "penultimate").
   A1111 never applies "Clip skip" to OpenCLIP, so ``clip_skip`` is checked and otherwise unused (the infotext
   still records it).
4. SDXL CLIP-L: ``hidden_states[-2]`` without the final LayerNorm (sgm ``layer="hidden", layer_idx=11``); with
   A1111's option "sdxl_clip_l_skip" (``clip_l_skip=True``) ``hidden_states[-clip_skip]``, still without it.
   SDXL bigG: the penultimate block's output without ``ln_final``, whatever the clip skip.
5. Emphasis acts on each encoder's output separately (each with its own mean restore); the pooled vector never
   sees it. The context is ``cat([CLIP-L, bigG], -1)``.
6. Pooled: bigG's ``ln_final`` output at the end token (``argmax`` of the ids) ``@ text_projection``, from the
   first chunk only.
7. A negative prompt (``negative=True``) whose texts are all empty gives an all-zero context and pooled vector
   (sgm ``force_zero_embeddings=["txt"]``).
8. Textual inversion: an SDXL embedding holds ``clip_l`` and ``clip_g`` vectors; each encoder writes its own into
   the same placeholder positions.
9. Tokenizers: A1111 tokenizes for CLIP-L with transformers' ``CLIPTokenizer`` (``Tokenizer(html_unescape=False)``
   reproduces it) and for bigG with open_clip's (``OpenCLIPTokenizer``, the default ``tokenizer_g``).

Choices where A1111 has no answer: prompts whose two tokenizations give different chunk counts (only possible with
HTML entities in text containing ``<``, or a spelled-out special token) raise ValueError (A1111 fails to
concatenate them); SDXL embeddings whose ``clip_l`` and ``clip_g`` vector counts differ are refused on loading.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from .conditioning import (
    _check_emphasis,
    _check_texts,
    _embedding_paths,
    _encode_batch,
    _read_embedding_data,
    _Reader,
    _tokenize_batch,
    _vectors_from_data,
)
from .model import CLIPTextTransformer
from .openclip import OpenCLIPTextTransformer
from .tokenizer import EOS, OpenCLIPTokenizer, Tokenizer

logger = logging.getLogger(__name__)

OPENCLIP_PAD = 0  # A1111's pad id for OpenCLIP prompts (the "!" token)
SDXL_EMBEDDING_KEYS = ("clip_l", "clip_g")


@functools.cache
def _default_openclip_tokenizer() -> OpenCLIPTokenizer:
    return OpenCLIPTokenizer()


def _check_clip_skip(clip_skip: int) -> None:
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or clip_skip < 1:
        raise ValueError(f"clip_skip must be an int >= 1 (1 = last layer), got {clip_skip!r}")


def _check_module(module: object, cls: type, name: str) -> None:
    if not isinstance(module, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, got {type(module).__name__}")


@torch.no_grad()
def encode_prompts_sd2(
    text_encoder: OpenCLIPTextTransformer,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    clip_skip: int = 1,
    embeddings: Mapping[str, torch.Tensor] | None = None,
    *,
    comma_padding_backtrack: int = 20,
    emphasis: str = "Original",
) -> torch.Tensor:
    """SD 2.x conditioning of a batch of prompts, ``[B, 77 * k, width]`` (rules 1-3 and 5 of the module docstring).

    ``embeddings``: ``{name: [n, width]}`` (``conditioning.load_embeddings(directory, width=1024)``).
    """
    _check_module(text_encoder, OpenCLIPTextTransformer, "text_encoder")
    _check_emphasis(emphasis)
    _check_texts(texts, "encode_prompts_sd2")
    _check_clip_skip(clip_skip)
    if text_encoder.config.layers < 2:
        raise ValueError("SD 2.x reads the penultimate block: the text encoder needs at least 2 blocks")
    per_prompt = _tokenize_batch(tokenizer, texts, embeddings, comma_padding_backtrack, emphasis)

    def encode(ids: torch.Tensor, inputs_embeds: torch.Tensor) -> tuple[torch.Tensor, None]:
        return text_encoder(ids, clip_skip=2, inputs_embeds=inputs_embeds), None

    return _encode_batch(_Reader(text_encoder.token_embedding, OPENCLIP_PAD, encode), per_prompt, emphasis)[0]


def _split_sdxl_embeddings(
    embeddings: Mapping[str, Mapping[str, torch.Tensor]] | None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    by_key: dict[str, dict[str, torch.Tensor]] = {key: {} for key in SDXL_EMBEDDING_KEYS}
    for name, pair in (embeddings or {}).items():
        if not isinstance(pair, Mapping) or any(key not in pair for key in SDXL_EMBEDDING_KEYS):
            raise ValueError(f"SDXL embedding {name!r} must be a mapping with 'clip_l' and 'clip_g' tensors "
                             "(load_sdxl_embeddings)")
        counts = {key: pair[key].shape[0] if isinstance(pair[key], torch.Tensor) else None
                  for key in SDXL_EMBEDDING_KEYS}
        if counts["clip_l"] != counts["clip_g"]:
            raise ValueError(f"SDXL embedding {name!r}: clip_l and clip_g hold different numbers of vectors "
                             f"({counts['clip_l']} and {counts['clip_g']})")
        for key in SDXL_EMBEDDING_KEYS:
            by_key[key][name] = pair[key]
    return by_key["clip_l"], by_key["clip_g"]


@torch.no_grad()
def encode_prompts_sdxl(
    clip_l: CLIPTextTransformer,
    clip_g: OpenCLIPTextTransformer,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    clip_skip: int = 1,
    embeddings: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    *,
    tokenizer_g: Tokenizer | None = None,
    clip_l_skip: bool = False,
    negative: bool = False,
    comma_padding_backtrack: int = 20,
    emphasis: str = "Original",
) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL conditioning of a batch of prompts: (context ``[B, 77 * k, 768 + 1280]``, pooled ``[B, 1280]``).

    tokenizer: CLIP-L's tokenizer; tokenizer_g: bigG's (default ``OpenCLIPTokenizer()``).
    clip_l_skip: A1111's "sdxl_clip_l_skip" option (default off): apply ``clip_skip`` to CLIP-L.
    negative: the texts are a negative prompt; all-empty ones then give zeros (rule 7).
    embeddings: ``{name: {"clip_l": [n, 768], "clip_g": [n, 1280]}}`` (``load_sdxl_embeddings``).
    """
    _check_module(clip_l, CLIPTextTransformer, "clip_l")
    _check_module(clip_g, OpenCLIPTextTransformer, "clip_g")
    _check_emphasis(emphasis)
    _check_texts(texts, "encode_prompts_sdxl")
    _check_clip_skip(clip_skip)
    if clip_g.text_projection is None:
        raise ValueError("clip_g has no text_projection: SDXL's pooled output needs it")
    embeddings_l, embeddings_g = _split_sdxl_embeddings(embeddings)
    tokenizer_g = tokenizer_g if tokenizer_g is not None else _default_openclip_tokenizer()
    chunks_l = _tokenize_batch(tokenizer, texts, embeddings_l, comma_padding_backtrack, emphasis)
    chunks_g = _tokenize_batch(tokenizer_g, texts, embeddings_g, comma_padding_backtrack, emphasis)
    for text, a, b in zip(texts, chunks_l, chunks_g):
        if len(a) != len(b):
            raise ValueError(f"prompt {text!r} gives {len(a)} chunks for CLIP-L and {len(b)} for OpenCLIP bigG; "
                             "their contexts cannot be concatenated")
    skip_l = clip_skip if clip_l_skip else 2

    def encode_l(ids: torch.Tensor, inputs_embeds: torch.Tensor) -> tuple[torch.Tensor, None]:
        return clip_l(ids, clip_skip=skip_l, inputs_embeds=inputs_embeds, final_norm=False), None

    def encode_g(ids: torch.Tensor, inputs_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return clip_g.forward_penultimate_pooled(ids, inputs_embeds)

    z_l, _ = _encode_batch(_Reader(clip_l.embeddings.token_embedding, EOS, encode_l), chunks_l, emphasis)
    z_g, pooled = _encode_batch(_Reader(clip_g.token_embedding, OPENCLIP_PAD, encode_g), chunks_g, emphasis)
    dtype = torch.promote_types(z_l.dtype, z_g.dtype)
    context = torch.cat([z_l.to(dtype), z_g.to(dtype)], dim=-1)
    if negative and all(text == "" for text in texts):
        context, pooled = torch.zeros_like(context), torch.zeros_like(pooled)
    return context, pooled


# --- SDXL textual-inversion files ----------------------------------------------------------------------------------


def _pair_from_data(data: object, path: Path) -> dict[str, torch.Tensor] | None:
    """The ``{"clip_l", "clip_g"}`` vectors of an SDXL embedding file, or None for a single-encoder embedding
    (after checking that it is a well-formed one, so malformed files raise either way)."""
    if not isinstance(data, Mapping) or "string_to_param" in data or not all(k in data for k in SDXL_EMBEDDING_KEYS):
        _vectors_from_data(data, path)  # A1111 checks the single-encoder layouts first
        return None
    pair = {}
    for key in SDXL_EMBEDDING_KEYS:
        vectors = data[key]
        if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or vectors.shape[0] == 0 \
                or not vectors.is_floating_point():
            found = f"{vectors.dtype} {tuple(vectors.shape)}" if isinstance(vectors, torch.Tensor) \
                else type(vectors).__name__
            raise ValueError(f"{path}: {key} must be a float tensor [n_vectors, width], got {found}")
        pair[key] = vectors.detach().to(torch.float32).contiguous()  # A1111 keeps embeddings in float32
    if pair["clip_l"].shape[0] != pair["clip_g"].shape[0]:
        raise ValueError(f"{path}: clip_l has {pair['clip_l'].shape[0]} vectors and clip_g "
                         f"{pair['clip_g'].shape[0]}; an SDXL embedding needs the same number in both")
    return pair


def load_sdxl_embedding_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read one SDXL textual-inversion file as ``{"clip_l": [n, 768], "clip_g": [n, 1280]}`` float32."""
    path = Path(path)
    pair = _pair_from_data(_read_embedding_data(path), path)
    if pair is None:
        raise ValueError(f"{path}: single-encoder embedding (SD1/SD2 layout); an SDXL embedding holds clip_l and "
                         "clip_g vectors")
    return pair


def load_sdxl_embeddings(directory: str | os.PathLike, width_l: int = 768,
                         width_g: int = 1280) -> dict[str, dict[str, torch.Tensor]]:
    """Load every SDXL textual-inversion embedding under ``directory`` (recursively), named by file stem.

    As A1111 lists them as skipped, single-encoder embeddings (SD1/SD2) and pairs whose widths are not
    ``width_l``/``width_g`` are skipped with a warning; otherwise the rules of ``conditioning.load_embeddings``.
    """
    root = Path(directory)
    found: dict[str, dict[str, torch.Tensor]] = {}
    for path in _embedding_paths(root):
        pair = _pair_from_data(_read_embedding_data(path), path)
        if pair is None:
            logger.warning("skipping embedding %s: single-encoder embedding, SDXL needs clip_l and clip_g", path)
            continue
        widths = (pair["clip_l"].shape[1], pair["clip_g"].shape[1])
        if widths != (width_l, width_g):
            logger.warning("skipping embedding %s: widths clip_l %d, clip_g %d; the text encoders need %d and %d",
                           path, *widths, width_l, width_g)
            continue
        if path.stem in found:
            logger.warning("embedding %r from %s replaces an earlier file of the same name", path.stem, path)
        found[path.stem] = pair
    logger.info("loaded %d SDXL textual-inversion embeddings from %s", len(found), root)
    return found
