"""Text conditioning as A1111 builds it for SD1: 75-token chunks, emphasis weights, textual-inversion embeddings.

Follows A1111 v1.10 ``sd_hijack_clip`` and ``textual_inversion``:

1. the prompt is split into weighted fragments (``prompts.parse_prompt_attention``);
2. each fragment is tokenized on its own and the ids are poured into chunks of 75. When a chunk is full and the
   current token is not a comma, the tokens after the chunk's last comma move to the next chunk if that comma is
   within ``comma_padding_backtrack`` (20) tokens of the end. ``BREAK`` closes the current chunk at once, even an
   empty one. A textual-inversion embedding is inserted as one block of placeholder ids (0) and opens a new chunk
   if it does not fit;
3. each chunk is closed as ``[BOS] + 75 ids padded with EOS + [EOS]``, weight 1.0 on BOS, EOS and padding;
4. each chunk is encoded separately, embedding vectors written over their placeholders in the token embeddings;
5. emphasis "Original": ``z *= weights`` per token, then ``z *= mean(z_before) / mean(z_after)`` with both means
   taken over the whole ``[B, 77, C]`` tensor of the chunk;
6. the chunks are concatenated on the token axis: ``[B, 77 * k, C]``.

A1111 quirks kept on purpose:

* when the back-off moves an embedding's placeholders to the next chunk, the embedding stays attached to the chunk
  it was first placed in: its vectors overwrite that chunk's padding, and the moved placeholders keep the plain
  embedding of token 0;
* an embedding name only matches inside a single fragment (``(my-emb)`` works, ``my-(emb)`` does not), and a name
  that matches no loaded embedding is ordinary text;
* with an fp16/bf16 encoder the weights are float32, so emphasis returns float32 (as A1111's tensors are).

Negative prompts go through the same path (embeddings included). For A1111's exact text cleaning in the rare case of
HTML entities in a prompt containing ``<``, pass ``Tokenizer(html_unescape=False)`` (see ``tokenizer.py``).
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..names import EMPHASIS_MODES  # noqa: F401 (A1111's emphasis modes)
from .prompts import BREAK_WEIGHT, parse_prompt_attention
from .tokenizer import BOS, COMMA, EOS, Tokenizer

logger = logging.getLogger(__name__)

CHUNK_LENGTH = 75  # prompt tokens per chunk; with BOS and EOS the encoder sees 77
EMBEDDING_PLACEHOLDER = 0  # id written where embedding vectors go; its own embedding is overwritten
_EMBEDDING_SUFFIXES = (".pt", ".bin", ".safetensors")
_IMAGE_SUFFIXES = (".png", ".webp", ".jxl", ".avif")


@dataclass
class EmbeddingFix:
    """Embedding vectors to write into a chunk's token embeddings, starting at ``position`` (0 = BOS)."""

    position: int
    name: str
    vectors: torch.Tensor  # [n, C]


@dataclass
class PromptChunk:
    """One encoder call's worth of prompt: 77 token ids, their emphasis weights and embedding insertions."""

    tokens: list[int]
    multipliers: list[float]
    fixes: list[EmbeddingFix] = field(default_factory=list)


def empty_chunk() -> PromptChunk:
    """The chunk a shorter prompt is padded with in a batch: BOS then 76 EOS, all weights 1.0."""
    return PromptChunk([BOS] + [EOS] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))


class _EmbeddingIndex:
    """Embedding names as token-id sequences, grouped by first id, longest first (A1111's lookup order)."""

    def __init__(self, tokenizer: Tokenizer, embeddings: Mapping[str, torch.Tensor] | None) -> None:
        self.by_first: dict[int, list[tuple[list[int], str, torch.Tensor]]] = {}
        for name, vectors in (embeddings or {}).items():
            if not isinstance(vectors, torch.Tensor) or vectors.ndim != 2 or vectors.shape[0] == 0:
                shape = tuple(vectors.shape) if isinstance(vectors, torch.Tensor) else type(vectors).__name__
                raise ValueError(f"embedding {name!r} must be a tensor [n_vectors, width], got {shape}")
            ids = tokenizer.encode(name)
            if not ids:
                logger.warning("embedding %r has a name with no tokens; it can never match a prompt", name)
                continue
            self.by_first.setdefault(ids[0], []).append((ids, name, vectors))
        for candidates in self.by_first.values():
            candidates.sort(key=lambda c: len(c[0]), reverse=True)  # stable: ties keep mapping order

    def find(self, ids: list[int], position: int) -> tuple[int, str, torch.Tensor] | None:
        """(number of prompt ids matched, name, vectors) of the embedding starting at ``position``, if any."""
        for name_ids, name, vectors in self.by_first.get(ids[position], ()):
            if ids[position : position + len(name_ids)] == name_ids:
                return len(name_ids), name, vectors
        return None


def tokenize_prompt(
    tokenizer: Tokenizer,
    text: str,
    embeddings: Mapping[str, torch.Tensor] | None = None,
    *,
    comma_padding_backtrack: int = 20,
    emphasis: str = "Original",
) -> list[PromptChunk]:
    """Split one prompt into A1111's 77-token chunks (steps 1-3 of the module docstring); no model needed.

    ``embeddings`` maps names to ``[n, C]`` vectors (``load_embeddings``). ``emphasis="None"`` treats brackets as
    plain text with weight 1.0, like A1111's emphasis option of that name.
    """
    _check_emphasis(emphasis)
    if comma_padding_backtrack < 0:
        raise ValueError(f"comma_padding_backtrack must be >= 0, got {comma_padding_backtrack}")
    fragments = parse_prompt_attention(text) if emphasis != "None" else [[text, 1.0]]
    index = _EmbeddingIndex(tokenizer, embeddings)

    chunks: list[PromptChunk] = []
    tokens: list[int] = []
    weights: list[float] = []
    fixes: list[EmbeddingFix] = []
    last_comma = -1  # index in `tokens` of the most recent comma of this chunk

    def close_chunk() -> None:
        nonlocal tokens, weights, fixes, last_comma
        pad = max(CHUNK_LENGTH - len(tokens), 0)
        chunks.append(
            PromptChunk([BOS] + tokens + [EOS] * pad + [EOS], [1.0] + weights + [1.0] * pad + [1.0], fixes)
        )
        tokens, weights, fixes, last_comma = [], [], [], -1

    for fragment, weight in fragments:
        if fragment == "BREAK" and weight == BREAK_WEIGHT:
            close_chunk()
            continue
        ids = tokenizer.encode(fragment)
        position = 0
        while position < len(ids):
            token = ids[position]
            if token == COMMA:
                last_comma = len(tokens)
            elif (
                comma_padding_backtrack
                and len(tokens) == CHUNK_LENGTH
                and last_comma != -1
                and len(tokens) - last_comma <= comma_padding_backtrack
            ):
                # Move the words after the last comma to the next chunk. Their embedding fixes stay behind (quirk).
                moved_tokens, moved_weights = tokens[last_comma + 1 :], weights[last_comma + 1 :]
                del tokens[last_comma + 1 :], weights[last_comma + 1 :]
                close_chunk()
                tokens, weights = moved_tokens, moved_weights
            if len(tokens) == CHUNK_LENGTH:
                close_chunk()

            match = index.find(ids, position)
            if match is None:
                tokens.append(token)
                weights.append(weight)
                position += 1
                continue
            n_ids, name, vectors = match
            n_vectors = vectors.shape[0]
            if n_vectors > CHUNK_LENGTH:
                raise ValueError(f"embedding {name!r} has {n_vectors} vectors; at most {CHUNK_LENGTH} fit in a chunk")
            if len(tokens) + n_vectors > CHUNK_LENGTH:
                close_chunk()
            fixes.append(EmbeddingFix(len(tokens) + 1, name, vectors))  # +1: BOS comes first
            tokens += [EMBEDDING_PLACEHOLDER] * n_vectors
            weights += [weight] * n_vectors
            position += n_ids

    if tokens or not chunks:
        close_chunk()
    return chunks


def _check_emphasis(emphasis: str) -> None:
    if emphasis not in EMPHASIS_MODES:
        raise ValueError(f"unknown emphasis mode {emphasis!r}; expected one of {EMPHASIS_MODES}")


@dataclass(frozen=True)
class _Reader:
    """How A1111 reads one text encoder: its token-embedding table, the id it pads prompts with after the first end
    token, and ``encode(ids, inputs_embeds) -> (z [B,77,C], pooled [B,P] or None)``."""

    token_embedding: torch.nn.Embedding
    pad_id: int
    encode: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]


def _encode_chunks(reader: _Reader, batch: Sequence[PromptChunk],
                   emphasis: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode one chunk per prompt: [B, 77] ids -> [B, 77, C], embeddings inserted, emphasis applied."""
    token_embedding = reader.token_embedding
    device = token_embedding.weight.device
    ids = torch.tensor([chunk.tokens for chunk in batch], dtype=torch.long, device=device)  # [B, 77]
    if reader.pad_id != EOS:
        # A1111 (OpenCLIP towers): every position after the first end token becomes the pad id, in the ids the
        # encoder sees; the chunk itself was built with end-token padding like SD1's.
        for b, chunk in enumerate(batch):
            ids[b, chunk.tokens.index(EOS) + 1 :] = reader.pad_id
    inputs_embeds = token_embedding(ids)  # [B, 77, C]
    length, width = inputs_embeds.shape[1:]
    for b, chunk in enumerate(batch):
        for fix in chunk.fixes:
            if fix.vectors.shape[-1] != width:
                raise ValueError(
                    f"embedding {fix.name!r} has width {fix.vectors.shape[-1]}, the text encoder {width}"
                )
            n = min(length - fix.position, fix.vectors.shape[0])
            inputs_embeds[b, fix.position : fix.position + n] = fix.vectors[:n].to(inputs_embeds)
    z, pooled = reader.encode(ids, inputs_embeds)  # [B, 77, C]; the pooled output never sees the emphasis
    if emphasis in ("Original", "No norm"):
        # float32 weights as in A1111 (torch.asarray of Python floats); products promote accordingly.
        multipliers = torch.tensor([chunk.multipliers for chunk in batch], dtype=torch.float32, device=z.device)
        mean_before = z.mean()
        z = z * multipliers[:, :, None]
        if emphasis == "Original":
            z = z * (mean_before / z.mean())
    return z, pooled


def _check_texts(texts: Sequence[str], caller: str) -> None:
    if isinstance(texts, str):
        raise TypeError(f"{caller} expects a sequence of prompts, not a single str")
    if len(texts) == 0:
        raise ValueError(f"{caller} needs at least one prompt")
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"prompt must be a str, got {type(text).__name__}")


def _tokenize_batch(tokenizer: Tokenizer, texts: Sequence[str], embeddings: Mapping[str, torch.Tensor] | None,
                    comma_padding_backtrack: int, emphasis: str) -> list[list[PromptChunk]]:
    """Chunks of every prompt, each distinct prompt tokenized once (as A1111 caches them per call)."""
    tokenized: dict[str, list[PromptChunk]] = {}
    for text in texts:
        if text not in tokenized:
            tokenized[text] = tokenize_prompt(
                tokenizer, text, embeddings, comma_padding_backtrack=comma_padding_backtrack, emphasis=emphasis
            )
    return [tokenized[text] for text in texts]


def _encode_batch(reader: _Reader, per_prompt: list[list[PromptChunk]],
                  emphasis: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[B, 77 * k, C] with shorter prompts padded by empty chunks, and the first chunk's pooled output."""
    n_chunks = max(len(chunks) for chunks in per_prompt)
    outputs, first_pooled = [], None
    for i in range(n_chunks):
        batch = [chunks[i] if i < len(chunks) else empty_chunk() for chunks in per_prompt]
        z, pooled = _encode_chunks(reader, batch, emphasis)
        outputs.append(z)
        if i == 0:
            first_pooled = pooled
    return torch.cat(outputs, dim=1), first_pooled


@torch.no_grad()
def encode_prompts(
    text_encoder: torch.nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    clip_skip: int = 1,
    embeddings: Mapping[str, torch.Tensor] | None = None,
    *,
    comma_padding_backtrack: int = 20,
    emphasis: str = "Original",
) -> torch.Tensor:
    """Encode a batch of prompts as A1111 does in one conditioning call: ``[B, 77 * k, C]``.

    ``k`` is the largest chunk count in the batch; shorter prompts are padded with empty chunks. The emphasis
    means are taken over the whole batch of each chunk, so A1111's numbers come out only for the same grouping:
    A1111 encodes the prompt-schedule variants of one prompt together and different prompts separately.
    ``text_encoder`` is a ``CLIPTextTransformer`` (or anything with ``embeddings.token_embedding`` and
    ``forward(tokens, clip_skip=, inputs_embeds=)``); ``clip_skip`` is A1111's "Clip skip" (1 = last layer).
    """
    _check_emphasis(emphasis)
    if isinstance(texts, str):
        raise TypeError("encode_prompts expects a sequence of prompts; use encode_prompt for a single str")
    _check_texts(texts, "encode_prompts")
    per_prompt = _tokenize_batch(tokenizer, texts, embeddings, comma_padding_backtrack, emphasis)

    def encode(ids: torch.Tensor, inputs_embeds: torch.Tensor) -> tuple[torch.Tensor, None]:
        return text_encoder(ids, clip_skip=clip_skip, inputs_embeds=inputs_embeds), None

    reader = _Reader(text_encoder.embeddings.token_embedding, EOS, encode)
    return _encode_batch(reader, per_prompt, emphasis)[0]


def encode_prompt(
    text_encoder: torch.nn.Module,
    tokenizer: Tokenizer,
    text: str,
    clip_skip: int = 1,
    embeddings: Mapping[str, torch.Tensor] | None = None,
    *,
    comma_padding_backtrack: int = 20,
    emphasis: str = "Original",
) -> torch.Tensor:
    """Encode one prompt: ``[1, 77 * k, C]`` (see ``encode_prompts``)."""
    if not isinstance(text, str):
        raise TypeError(f"prompt must be a str, got {type(text).__name__}")
    return encode_prompts(text_encoder, tokenizer, [text], clip_skip, embeddings,
                          comma_padding_backtrack=comma_padding_backtrack, emphasis=emphasis)


# --- textual-inversion files -------------------------------------------------------------------------------------


def _torch_load(path: Path) -> object:
    """torch.load restricted to tensors and plain containers (never arbitrary objects)."""
    # nn.ParameterDict is allowed because original textual-inversion files store string_to_param as one; loading
    # it only restores attributes, it runs no code from the file.
    allow = getattr(torch.serialization, "safe_globals", None)
    try:
        if allow is not None:
            with allow([torch.nn.ParameterDict]):
                return torch.load(path, map_location="cpu", weights_only=True)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise ValueError(f"{path}: not a readable torch file (corrupt, or not written by torch.save)") from e
        raise ValueError(
            f"{path}: refusing to load: the file contains a {found.group(1)} object, and only tensors and plain "
            f"containers are read (anything else would need full unpickling, which can run arbitrary code). "
            f"Re-save the embedding as .safetensors."
        ) from e
    except Exception as e:  # truncated zip, missing records, ...
        raise ValueError(f"{path}: not a readable torch file: {e}") from e


def _vectors_from_data(data: object, path: Path) -> torch.Tensor | None:
    """Pick the embedding tensor out of a loaded file, in A1111's order of layouts (``textual_inversion.load_from_file``).

    Returns None for an SDXL embedding (``clip_g`` + ``clip_l``), which SD1 cannot use.
    """
    if isinstance(data, Mapping) and "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # nn.ParameterDict keeps its entries there
        if not isinstance(params, Mapping) or len(params) != 1:
            count = len(params) if isinstance(params, Mapping) else type(params).__name__
            raise ValueError(f"{path}: string_to_param must hold exactly one tensor, found {count}")
        vectors = next(iter(params.values()))
    elif isinstance(data, Mapping) and "clip_g" in data and "clip_l" in data:
        return None
    elif isinstance(data, Mapping) and data and isinstance(next(iter(data.values())), torch.Tensor):
        if len(data) != 1:
            raise ValueError(f"{path}: embedding file has {len(data)} entries ({', '.join(map(str, data))}); "
                             f"expected exactly one")
        vectors = next(iter(data.values()))
    else:
        raise ValueError(f"{path}: neither a textual-inversion embedding (string_to_param) nor a single-tensor "
                         f"embedding file")
    if not isinstance(vectors, torch.Tensor):
        raise ValueError(f"{path}: embedding entry is a {type(vectors).__name__}, not a tensor")
    if vectors.ndim == 1:
        vectors = vectors.unsqueeze(0)
    if vectors.ndim != 2 or vectors.shape[0] == 0 or not vectors.is_floating_point():
        raise ValueError(f"{path}: embedding must be a float tensor [n_vectors, width], got "
                         f"{vectors.dtype} {tuple(vectors.shape)}")
    return vectors.detach().to(torch.float32).contiguous()  # A1111 keeps embeddings in float32


def _read_embedding_data(path: Path) -> object:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        import safetensors.torch

        try:
            return safetensors.torch.load_file(str(path), device="cpu")
        except Exception as e:
            raise ValueError(f"{path}: not a readable safetensors file: {e}") from e
    if suffix in (".pt", ".bin"):
        return _torch_load(path)
    raise ValueError(f"{path}: unsupported embedding file type {suffix!r}; expected one of {_EMBEDDING_SUFFIXES}")


def _read_embedding(path: Path) -> torch.Tensor | None:
    return _vectors_from_data(_read_embedding_data(path), path)


def _embedding_paths(root: Path) -> list[Path]:
    """Candidate embedding files under ``root`` in sorted order: known suffixes, non-empty (A1111 ignores empty
    files); image-embedded embeddings are skipped with a warning (previews silently)."""
    if not root.is_dir():
        raise NotADirectoryError(f"embeddings directory not found: {root}")
    paths = []
    for dirpath, _, filenames in os.walk(root, followlinks=True):
        paths += [Path(dirpath) / name for name in filenames]
    found = []
    for path in sorted(paths):
        suffix = path.suffix.lower()
        if suffix in _IMAGE_SUFFIXES:
            if not path.name.lower().endswith(".preview" + suffix):
                logger.warning("skipping %s: embeddings stored in images are not supported", path)
            continue
        if suffix in _EMBEDDING_SUFFIXES and path.stat().st_size > 0:
            found.append(path)
    return found


def load_embedding_file(path: str | os.PathLike) -> torch.Tensor:
    """Read one textual-inversion file (``.pt``/``.bin``/``.safetensors``) as ``[n_vectors, width]`` float32.

    Raises ValueError naming the file if it cannot be read safely or has no recognisable layout.
    """
    path = Path(path)
    vectors = _read_embedding(path)
    if vectors is None:
        raise ValueError(f"{path}: SDXL embedding (clip_g + clip_l), not usable with SD1")
    return vectors


def load_embeddings(directory: str | os.PathLike, width: int = 768, *,
                    files: dict[str, Path] | None = None) -> dict[str, torch.Tensor]:
    """Load every textual-inversion embedding under ``directory`` (recursively) as ``{name: [n, width]}``.

    The name is the file name without its extension, which is what a prompt must contain to use it. Files whose
    width is not ``width`` (SD2's 1024, SDXL pairs) are skipped with a warning, as A1111 lists them as skipped;
    empty files are ignored as in A1111; image-embedded embeddings (.png/.webp) are not supported and are skipped
    with a warning. Later files (in sorted path order) replace earlier ones of the same name. A file that cannot
    be read raises ValueError naming it. ``files``, when given, receives each loaded name's file path (A1111 records
    a hash of the file in the infotext's "TI hashes").
    """
    root = Path(directory)
    found: dict[str, torch.Tensor] = {}
    for path in _embedding_paths(root):
        vectors = _read_embedding(path)
        if vectors is None:
            logger.warning("skipping embedding %s: SDXL embedding (clip_g + clip_l); load_sdxl_embeddings reads it",
                           path)
            continue
        if vectors.shape[1] != width:
            logger.warning("skipping embedding %s: width %d, the text encoder needs %d", path, vectors.shape[1], width)
            continue
        if path.stem in found:
            logger.warning("embedding %r from %s replaces an earlier file of the same name", path.stem, path)
        found[path.stem] = vectors
        if files is not None:
            files[path.stem] = path
    logger.info("loaded %d textual-inversion embeddings from %s", len(found), root)
    return found
