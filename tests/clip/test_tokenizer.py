"""Tokenizer ids against OpenAI CLIP's SimpleTokenizer (clip-anytorch) and transformers' CLIPTokenizer.

Oracles are exact: every id must be equal. clip-anytorch's package __init__ imports torchvision, so its
simple_tokenizer.py is loaded by file path.
"""
import gzip
import hashlib
import importlib.util
import random
from pathlib import Path

import pytest

from inpaintlab.clip.tokenizer import BOS, COMMA, EOS, VOCAB_FILE, VOCAB_SIZE, Tokenizer, byte_symbols

TUTORIAL_PROMPTS = [
    "a photo of a cat",
    "a woman in a red dress, masterpiece, best quality, highly detailed",
    "(blue eyes:1.3), portrait of a young woman, [freckles]",
    "a (red:1.3) door, [old]",
    "lowres, bad anatomy, bad hands, text, error, missing fingers, extra digit, fewer digits, cropped, worst quality",
    "A majestic lion jumping from a big stone at night",
    "photograph of an astronaut riding a horse",
]
# Plain text: transformers 5's tokenizer (NFC + lower, no ftfy / html.unescape) agrees with OpenAI on these.
PLAIN_CASES = TUTORIAL_PROMPTS + [
    "",
    "   leading and trailing   spaces\t\nand\ttabs  ",
    "Café naïve résumé Ångström Straße",
    "東京タワー の 夜景, 中文提示词, 한국어",
    "a cat 🐱 with a paint brush 🎨👩‍🎨 and flags 🇫🇷",
    "wow!!! really?!... ---- ((( ))) [[[ ]]] {{}} <<>> ~~~ @@ ## $$ %% ^^ && ** __ ++ == || ;; ::",
    "born in 2024, 3.14159, 1e10, 007, #42",
    "it's they're we've i'm you'll he'd don't",
    "UPPER Case MiXeD",
    "8k uhd, dslr, soft lighting, high quality, film grain, Fujifilm XT3",
    "a" * 300,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "<|startoftext|>a cat<|endoftext|>",
]
# Cases where ftfy / html.unescape change the text, so only OpenAI is the oracle.
CLEANING_CASES = [
    "fish &amp; chips &lt;3 &gt; &quot;quoted&quot; &#39;single&#39; &eacute;",
    "double escaped &amp;amp; and &amp;lt;tag&amp;gt;",
    "<b>bold</b> &amp; text",
    "\u201ccurly quotes\u201d and \u2018single\u2019 ones",
    "\uff21\uff22\uff23 full-width \uff11\uff12\uff13",
    "\ufb01ne \ufb02ower ligatures",
    "mojibake: cafÃ© dÃ©jÃ  vu",
    "Ä°stanbul ǅ ǈ",
]


def _load_reference():
    clip_dir = Path(importlib.util.find_spec("clip").submodule_search_locations[0])
    spec = importlib.util.spec_from_file_location("_openai_simple_tokenizer", clip_dir / "simple_tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(str(clip_dir / "bpe_simple_vocab_16e6.txt.gz"))


@pytest.fixture(scope="module")
def reference():
    if importlib.util.find_spec("clip") is None:
        pytest.skip("clip-anytorch is not installed")
    return _load_reference()


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer()


@pytest.fixture(scope="module")
def hf_tokenizer():
    transformers = pytest.importorskip("transformers")
    # The tokenizer built from the vocabulary file alone.
    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")[1 : 1 + 48894]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(byte_symbols())
    # the visible byte characters in byte order, then the remapped ones (code points 256+)
    order = sorted(s for s in symbols if ord(s) < 256) + sorted(s for s in symbols if ord(s) >= 256)
    strings = order + [s + "</w>" for s in order] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    tok = transformers.CLIPTokenizer(vocab={s: i for i, s in enumerate(strings)}, merges=merges)
    assert len(tok) == VOCAB_SIZE and tok.bos_token_id == BOS and tok.eos_token_id == EOS and tok.pad_token_id == EOS
    return tok


def _random_texts(n, seed):
    rng = random.Random(seed)
    alphabet = (
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        "     ,,,..!?()[]:;'\"-_/\\&#<>|*~"
        "éèêëàâäôöüçñßøåæœ" "日本語中文한국어" "🐱🎨🌅✨" "\u201c\u201d\u2018\u2019\u2026\t\n"
    )
    words = ["cat", "masterpiece", "best", "quality", "&amp;", "&lt;", "BREAK", "1.3", "(", ")", "it's", "photo"]
    texts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            if rng.random() < 0.4:
                parts.append(rng.choice(words))
            else:
                parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))))
        texts.append(rng.choice([" ", "", ", "]).join(parts))
    return texts


def test_vocabulary_file_is_the_openai_one():
    data = VOCAB_FILE.read_bytes()
    assert len(data) == 1_356_917
    assert hashlib.sha256(data).hexdigest() == "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    assert (VOCAB_FILE.parent / "LICENSE-CLIP.txt").read_text().count("Copyright (c) 2021 OpenAI") == 1


def test_known_ids(tokenizer):
    assert tokenizer.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert tokenizer.encode("") == []
    assert tokenizer.encode(",") == [COMMA] and COMMA == 267
    assert tokenizer.token_to_id("!") == 0
    assert tokenizer.token_to_id("!</w>") == 256
    assert tokenizer.token_to_id("in") == 512
    assert tokenizer.token_to_id("*</w>") == 265
    assert tokenizer.token_to_id("<|startoftext|>") == BOS == 49406
    assert tokenizer.token_to_id("<|endoftext|>") == EOS == 49407
    assert len(tokenizer.encode("2024")) == 4  # digits are split one by one
    assert len(tokenizer.encode("!!")) == 1


@pytest.mark.parametrize("text", PLAIN_CASES + CLEANING_CASES)
def test_matches_openai_simple_tokenizer(tokenizer, reference, text):
    assert tokenizer.encode(text) == reference.encode(text)


def test_matches_openai_on_random_text(tokenizer, reference):
    texts = _random_texts(300, seed=1234)
    mismatches = [t for t in texts if tokenizer.encode(t) != reference.encode(t)]
    assert not mismatches, mismatches[:3]


def test_very_long_prompt_is_not_truncated(tokenizer, reference):
    text = ", ".join(TUTORIAL_PROMPTS * 20)
    ids = tokenizer.encode(text)
    assert len(ids) > 1000
    assert ids == reference.encode(text)


@pytest.mark.parametrize("text", PLAIN_CASES)
def test_matches_transformers_on_plain_text(tokenizer, hf_tokenizer, text):
    assert tokenizer.encode(text) == hf_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_cleaning_cases_differ_from_transformers(tokenizer, hf_tokenizer):
    # The documented disagreement (ftfy and html.unescape run only in ours), so the oracle split above is real.
    for text in ["fish &amp; chips", "\u201ccurly\u201d", "\ufb01ne"]:
        assert tokenizer.encode(text) != hf_tokenizer(text, add_special_tokens=False)["input_ids"]


def test_without_html_unescape_matches_transformers_after_ftfy(hf_tokenizer, reference):
    # A1111's transformers-4 slow tokenizer cleaning = ftfy.fix_text + whitespace + lower, no html.unescape.
    import ftfy

    tok = Tokenizer(html_unescape=False)
    texts = PLAIN_CASES + CLEANING_CASES + _random_texts(100, seed=99)
    for text in texts:
        assert tok.encode(text) == hf_tokenizer(ftfy.fix_text(text), add_special_tokens=False)["input_ids"], text
    assert tok.encode("a <b> &amp; c") != reference.encode("a <b> &amp; c")  # ftfy leaves entities near "<"


def test_decode_matches_openai(tokenizer, reference):
    rng = random.Random(7)
    for text in PLAIN_CASES + CLEANING_CASES:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == reference.decode(ids)
    for _ in range(50):  # arbitrary ids, including ones that cut UTF-8 sequences (replacement characters)
        ids = [rng.randrange(VOCAB_SIZE) for _ in range(rng.randint(0, 20))]
        assert tokenizer.decode(ids) == reference.decode(ids)
    assert tokenizer.decode(tokenizer.encode("a photo of a cat")) == "a photo of a cat "


def test_bad_input():
    tok = Tokenizer()
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([VOCAB_SIZE])


def test_vocabulary_is_read_lazily(tmp_path):
    tok = Tokenizer(vocab_file=tmp_path / "missing.txt.gz")  # construction reads nothing
    with pytest.raises(FileNotFoundError, match="missing.txt.gz"):
        tok.encode("a cat")


def test_truncated_vocabulary_file_is_rejected(tmp_path):
    path = tmp_path / "short.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\ni n\nt h\n")
    with pytest.raises(ValueError, match="merge lines"):
        Tokenizer(vocab_file=path).encode("a")
