"""CLIP byte-pair-encoding tokenizer, as used by SD1's text encoder.

Produces the same ids as OpenAI CLIP's ``simple_tokenizer.SimpleTokenizer`` (credit: openai/CLIP, MIT licence).
The algorithm, in order:

1. clean the text: ``ftfy.fix_text``, ``html.unescape`` twice, collapse whitespace runs to one space, strip,
   lower-case;
2. split it into pieces with a regex: the two special tokens, English contractions, runs of letters, *single*
   digits, runs of other non-space symbols (so ``2024`` is four pieces and ``!!`` one);
3. map each piece's UTF-8 bytes to printable characters (256 distinct ones, so every byte has a symbol);
4. run BPE on the piece with ``</w>`` appended to its last symbol, repeatedly merging the adjacent pair of lowest
   merge rank until no known pair is left; every resulting symbol is one vocabulary entry.

Vocabulary: ``bpe_simple_vocab_16e6.txt.gz`` next to this module, 1,356,917 bytes,
sha256 ``924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a`` (OpenAI CLIP, MIT licence; see
``LICENSE-CLIP.txt``). Of its merge lines only the first 48,894 are used. Ids: 0..255 the byte symbols,
256..511 the same with ``</w>``, 512..49405 one per merge in file order, 49406 ``<|startoftext|>``, 49407
``<|endoftext|>``. Nothing is ever downloaded; the file is read once, on first use.

A1111 (through transformers 4.x's slow ``CLIPTokenizer``) cleans text slightly differently: no explicit
``html.unescape``. ftfy already unescapes entities unless the text contains ``<``, so the two differ only for
entities in such texts (``"<b> &amp;"``). ``Tokenizer(html_unescape=False)`` reproduces A1111 there.
"""
from __future__ import annotations

import functools
import gzip
import html
import itertools
from pathlib import Path

import regex

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
VOCAB_SIZE = 49408
BOS = 49406  # <|startoftext|>
EOS = 49407  # <|endoftext|>; SD1 also pads with it
COMMA = 267  # ",</w>"
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2  # 48,894 merge lines are used; the file holds 262,144
_SPECIAL = {"<|startoftext|>": BOS, "<|endoftext|>": EOS}
# open_clip's SimpleTokenizer spells the same two tokens differently; that only matters for prompts that contain
# the literal text of a special token.
_OPENCLIP_SPECIAL = {"<start_of_text>": BOS, "<end_of_text>": EOS}


def _piece_re(special: dict[str, int]) -> regex.Pattern:
    # \p{L}/\p{N} need the `regex` module. Digits are matched one at a time on purpose (CLIP's training setup).
    return regex.compile(
        "|".join(regex.escape(s) for s in special) + r"|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+",
        regex.IGNORECASE,
    )


_PIECE_RE = _piece_re(_SPECIAL)
_SPACE_RE = regex.compile(r"\s+")
_CACHE_LIMIT = 200_000  # distinct pieces remembered before the cache is cleared


@functools.cache
def byte_symbols() -> tuple[str, ...]:
    """The printable character standing for each byte value 0..255 (GPT-2/CLIP's reversible byte alphabet).

    Bytes that are already visible Latin-1 characters stand for themselves; the 68 others (controls, space, soft
    hyphen, ...) take the code points 256, 257, ... in byte order.
    """
    visible = set(range(ord("!"), ord("~") + 1)) | set(range(ord("¡"), ord("¬") + 1)) | set(range(ord("®"), 256))
    symbols = []
    extra = 0
    for b in range(256):
        if b in visible:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return tuple(symbols)


def _vocab_order() -> list[str]:
    """Byte symbols in the order the vocabulary lists them: visible ones by byte value first, then the rest."""
    symbols = byte_symbols()
    visible = [s for s in symbols if ord(s) < 256]
    return sorted(visible, key=ord) + sorted((s for s in symbols if ord(s) >= 256), key=ord)


@functools.lru_cache(maxsize=4)
def _load_vocab(path: str) -> tuple[tuple[str, ...], dict[tuple[str, str], int]]:
    """Read the merges file once: returns (id -> string, merge pair -> rank)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"CLIP vocabulary file not found: {p}")
    with gzip.open(p, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merge_lines = lines[1 : 1 + _NUM_MERGES]  # line 0 is the "#version" header
    if len(merge_lines) != _NUM_MERGES:
        raise ValueError(f"{p}: expected at least {_NUM_MERGES} merge lines, found {len(merge_lines)}")
    merges = []
    for n, line in enumerate(merge_lines, start=2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise ValueError(f"{p}: line {n} is not a merge pair: {line!r}")
        merges.append(pair)
    base = _vocab_order()
    strings = base + [s + "</w>" for s in base] + [a + b for a, b in merges] + list(_SPECIAL)  # ids 49406, 49407
    return tuple(strings), {pair: rank for rank, pair in enumerate(merges)}


class Tokenizer:
    """CLIP BPE tokenizer with OpenAI ``SimpleTokenizer`` semantics (see the module docstring).

    ``encode`` returns ids without BOS/EOS and never truncates; SD1's 77-token layout is built by the caller
    (``conditioning.py``).
    """

    bos = BOS
    eos = EOS
    comma = COMMA
    vocab_size = VOCAB_SIZE
    special_tokens = _SPECIAL  # text -> id of the special tokens recognised inside a prompt
    _pieces = _PIECE_RE

    def __init__(self, vocab_file: str | Path | None = None, *, html_unescape: bool = True) -> None:
        self.vocab_file = Path(vocab_file) if vocab_file is not None else VOCAB_FILE
        self.html_unescape = html_unescape
        self._strings: tuple[str, ...] | None = None
        self._ids: dict[str, int] = {}
        self._ranks: dict[tuple[str, str], int] = {}
        self._cache: dict[str, tuple[int, ...]] = {}

    def _ensure_loaded(self) -> None:
        if self._strings is None:
            strings, ranks = _load_vocab(str(self.vocab_file))
            self._ids = {s: i for i, s in enumerate(strings)}
            self._ranks = ranks
            self._strings = strings

    def clean(self, text: str) -> str:
        """Text normalisation applied before splitting (ftfy, HTML entities, whitespace, lower case)."""
        import ftfy  # imported on first use: it is slow to import and only needed here

        text = ftfy.fix_text(text)
        if self.html_unescape:
            text = html.unescape(html.unescape(text))
        return _SPACE_RE.sub(" ", text.strip()).strip().lower()

    def _bpe(self, piece: str) -> tuple[int, ...]:
        """Ids of one pre-tokenised piece (already mapped to byte symbols)."""
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        word = list(piece)
        word[-1] += "</w>"
        ranks = self._ranks
        while len(word) > 1:
            best, best_rank = None, None
            for pair in itertools.pairwise(word):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = pair, rank
            if best is None:
                break
            first, second = best
            merged = []
            i = 0
            while i < len(word):
                # Left to right, non-overlapping: "a a a" with merge (a, a) gives "aa a".
                if i + 1 < len(word) and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        ids = tuple(self._ids[s] for s in word)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without BOS/EOS and without truncation."""
        if not isinstance(text, str):
            raise TypeError(f"Tokenizer.encode expects a str, got {type(text).__name__}")
        self._ensure_loaded()
        symbols = byte_symbols()
        ids: list[int] = []
        for piece in self._pieces.findall(self.clean(text)):
            special = self.special_tokens.get(piece)
            if special is not None:
                ids.append(special)
                continue
            ids.extend(self._bpe("".join(symbols[b] for b in piece.encode("utf-8"))))
        return ids

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; word ends become spaces, invalid UTF-8 is replaced (as OpenAI's decoder does)."""
        self._ensure_loaded()
        strings = self._strings
        parts = []
        for i in ids:
            i = int(i)
            if not 0 <= i < VOCAB_SIZE:
                raise ValueError(f"token id {i} is outside the vocabulary (0..{VOCAB_SIZE - 1})")
            parts.append(strings[i])
        byte_of = {s: b for b, s in enumerate(byte_symbols())}
        data = bytes(byte_of[c] for c in "".join(parts))
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def token_to_id(self, token: str) -> int:
        """Id of a vocabulary string such as ``",</w>"``; KeyError if absent."""
        self._ensure_loaded()
        return self._ids[token]


class OpenCLIPTokenizer(Tokenizer):
    """open_clip's ``SimpleTokenizer``, which A1111 uses for SD 2.x's and SDXL's OpenCLIP towers.

    Same vocabulary, cleaning (ftfy, ``html.unescape`` twice) and ids as ``Tokenizer``; only the special tokens a
    prompt can spell out are ``<start_of_text>`` / ``<end_of_text>`` instead of ``<|startoftext|>`` /
    ``<|endoftext|>``. The 0-padding of OpenCLIP prompts is applied when a chunk is encoded
    (``conditioning.py``), not here.
    """

    special_tokens = _OPENCLIP_SPECIAL
    _pieces = _piece_re(_OPENCLIP_SPECIAL)

    def __init__(self, vocab_file: str | Path | None = None) -> None:
        super().__init__(vocab_file, html_unescape=True)
