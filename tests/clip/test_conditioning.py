"""A1111 conditioning: chunking with comma back-off, BREAK, emphasis with mean restoration, textual inversion.

Chunk contents are checked against hand-derived token lists. Encodings are checked against an independent,
straightforward computation (encoder called on the hand-built token rows through its plain token path, weights and
mean ratio applied in float64), with a random stand-in encoder and with the real CLIPTextTransformer at a tiny size.
Embedding insertion is checked against the same encoder with the embedding vectors appended to its vocabulary.
"""
import copy
import dataclasses
import logging

import pytest
import torch
from torch import nn

from inpaintlab.clip import Tokenizer, encode_prompt, encode_prompts, load_embeddings, tokenize_prompt
from inpaintlab.clip.conditioning import empty_chunk, load_embedding_file

BOS, EOS, COMMA = 49406, 49407, 267
CAT, DOG, A, PHOTO, OF, RED, DOOR, OLD, BREAK_WORD = 2368, 1929, 320, 1125, 539, 736, 2489, 896, 2568
R, S = 1.1, 1 / 1.1
WIDTH = 8
# float32 encoder output vs a float64 re-computation of weights and means
RTOL, ATOL = 1e-5, 1e-6


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


def cats(n, word="cat"):
    return " ".join([word] * n)


def row(ids):
    """A closed chunk: BOS, ids, EOS padding to 75, EOS."""
    assert len(ids) <= 75
    return [BOS] + list(ids) + [EOS] * (75 - len(ids)) + [EOS]


def wrow(weights):
    return [1.0] + list(weights) + [1.0] * (75 - len(weights)) + [1.0]


def chunk_ids(chunks):
    return [c.tokens for c in chunks]


def randn(*shape, seed):
    """Seeded normal draws (own generator), so a failure reproduces whatever ran before it."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class StandInEncoder(nn.Module):
    """Random encoder with CLIPTextTransformer's interface: causal running mean, then tanh layers (offset so the
    output mean is far from 0). Records what it was called with."""

    def __init__(self, width=WIDTH, vocab=49408, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = nn.Embedding(vocab, width)
        with torch.no_grad():
            self.embeddings.token_embedding.weight.copy_(torch.randn(vocab, width, generator=g))
        self.position = nn.Parameter(torch.randn(77, width, generator=g))
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        with torch.no_grad():
            for layer in self.layers:
                layer.weight.copy_(torch.randn(width, width, generator=g) / width**0.5)
                layer.bias.copy_(torch.randn(width, generator=g))
        self.calls = []

    def forward(self, tokens, clip_skip=1, inputs_embeds=None):
        self.calls.append({"tokens": tokens.clone(), "clip_skip": clip_skip,
                           "inputs_embeds": None if inputs_embeds is None else inputs_embeds.clone()})
        x = self.embeddings.token_embedding(tokens) if inputs_embeds is None else inputs_embeds
        length = x.shape[1]
        x = x + self.position[:length].to(x)
        x = x.cumsum(1) / torch.arange(1, length + 1, dtype=x.dtype)[:, None]
        hidden = [x]
        for layer in self.layers:
            x = torch.tanh(layer(x)) + 0.5
            hidden.append(x)
        return hidden[-clip_skip]


def reference_encoding(encoder, token_rows, weight_rows, clip_skip=1):
    """[B, 77] ids and weights of one chunk -> A1111 'Original' emphasis, computed plainly in float64."""
    with torch.no_grad():
        z = encoder(torch.tensor(token_rows), clip_skip=clip_skip).double()
    w = torch.tensor(weight_rows, dtype=torch.float64)[:, :, None]
    zw = z * w
    return zw * (z.mean() / zw.mean())


def with_extra_vocab(encoder, vectors):
    """Copy of ``encoder`` whose vocabulary has ``vectors`` appended; returns (encoder, first new id)."""
    new = copy.deepcopy(encoder)
    old = new.embeddings.token_embedding.weight.detach()
    table = torch.cat([old, vectors.to(old)])
    new.embeddings.token_embedding = nn.Embedding.from_pretrained(table, freeze=True)
    return new, old.shape[0]


# --- chunking -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "()", "[]"])
def test_empty_prompt_is_one_padding_chunk(tok, text):
    chunks = tokenize_prompt(tok, text)
    assert len(chunks) == 1
    assert chunks[0].tokens == [49406] + [49407] * 76
    assert chunks[0].multipliers == [1.0] * 77 and chunks[0].fixes == []
    assert chunks[0].tokens == empty_chunk().tokens


def test_75_tokens_fit_one_chunk_76_spill(tok):
    assert chunk_ids(tokenize_prompt(tok, cats(75))) == [row([CAT] * 75)]
    assert chunk_ids(tokenize_prompt(tok, cats(76))) == [row([CAT] * 75), row([CAT])]
    assert chunk_ids(tokenize_prompt(tok, cats(151))) == [row([CAT] * 75)] * 2 + [row([CAT])]


@pytest.mark.parametrize(
    "before,after,expected",
    [
        # comma at index 55: 75 - 55 = 20 <= 20 -> the 19 cats after it move on
        (55, 30, [[CAT] * 55 + [COMMA], [CAT] * 30]),
        # comma at index 54: 21 > 20 -> no back-off, plain cut at 75
        (54, 30, [[CAT] * 54 + [COMMA] + [CAT] * 20, [CAT] * 10]),
        (60, 20, [[CAT] * 60 + [COMMA], [CAT] * 20]),
        (30, 60, [[CAT] * 30 + [COMMA] + [CAT] * 44, [CAT] * 16]),
        # comma is the 75th token: nothing to move
        (74, 5, [[CAT] * 74 + [COMMA], [CAT] * 5]),
        # comma is the 76th token: it arrives when the chunk is full and opens the next one
        (75, 5, [[CAT] * 75, [COMMA] + [CAT] * 5]),
        # exactly 75 tokens: back-off only happens when a further token arrives
        (60, 14, [[CAT] * 60 + [COMMA] + [CAT] * 14]),
    ],
)
def test_comma_back_off(tok, before, after, expected):
    text = cats(before) + ", " + cats(after)
    assert chunk_ids(tokenize_prompt(tok, text)) == [row(ids) for ids in expected]


def test_comma_back_off_uses_the_last_comma_and_can_be_disabled(tok):
    text = cats(40) + ", " + cats(20) + ", " + cats(30)
    assert chunk_ids(tokenize_prompt(tok, text)) == [
        row([CAT] * 40 + [COMMA] + [CAT] * 20 + [COMMA]), row([CAT] * 30)]
    text = cats(60) + ", " + cats(20)
    assert chunk_ids(tokenize_prompt(tok, text, comma_padding_backtrack=0)) == [
        row([CAT] * 60 + [COMMA] + [CAT] * 14), row([CAT] * 6)]
    # a smaller window: comma 15 from the end is too far for 10
    text = cats(60) + ", " + cats(20)
    assert chunk_ids(tokenize_prompt(tok, text, comma_padding_backtrack=10)) == [
        row([CAT] * 60 + [COMMA] + [CAT] * 14), row([CAT] * 6)]


def test_moved_tokens_keep_their_weights(tok):
    text = cats(60) + ", (" + cats(20, "dog") + ":1.5)"
    chunks = tokenize_prompt(tok, text)
    assert chunk_ids(chunks) == [row([CAT] * 60 + [COMMA]), row([DOG] * 20)]
    assert chunks[0].multipliers == [1.0] * 77
    assert chunks[1].multipliers == wrow([1.5] * 20)


def test_weights_follow_fragments(tok):
    (chunk,) = tokenize_prompt(tok, "a (red:1.3) door, [old]")
    assert chunk.tokens == row([A, RED, DOOR, COMMA, OLD])
    assert chunk.multipliers == wrow([1.0, 1.3, 1.0, 1.0, S])


def test_break(tok):
    assert chunk_ids(tokenize_prompt(tok, "cat BREAK dog")) == [row([CAT]), row([DOG])]
    assert chunk_ids(tokenize_prompt(tok, "BREAK")) == [row([])]
    assert chunk_ids(tokenize_prompt(tok, "BREAK cat")) == [row([]), row([CAT])]
    assert chunk_ids(tokenize_prompt(tok, "cat BREAK")) == [row([CAT])]
    assert chunk_ids(tokenize_prompt(tok, "cat BREAK BREAK dog")) == [row([CAT]), row([]), row([DOG])]
    # a full chunk is closed by the BREAK itself, without an extra empty chunk
    assert chunk_ids(tokenize_prompt(tok, cats(75) + " BREAK dog")) == [row([CAT] * 75), row([DOG])]
    assert chunk_ids(tokenize_prompt(tok, cats(76) + " BREAK dog")) == [row([CAT] * 75), row([CAT]), row([DOG])]
    # inside brackets BREAK is just the word, with a negative weight (A1111 quirk)
    (chunk,) = tokenize_prompt(tok, "(cat BREAK dog)")
    assert chunk.tokens == row([CAT, BREAK_WORD, DOG])
    assert chunk.multipliers == wrow([R, -1.0 * R, R])


def test_emphasis_none_keeps_brackets_as_text(tok):
    (chunk,) = tokenize_prompt(tok, "(red:1.3) BREAK door", emphasis="None")
    assert chunk.tokens == row(tok.encode("(red:1.3) BREAK door"))
    assert chunk.multipliers == [1.0] * 77
    with pytest.raises(ValueError, match="unknown emphasis"):
        tokenize_prompt(tok, "a", emphasis="original")


# --- embeddings in chunks -------------------------------------------------------------------------------------------


def test_embedding_insertion_and_weight(tok):
    vec = randn(3, WIDTH, seed=101)
    (chunk,) = tokenize_prompt(tok, "a photo of (myemb:1.2) cat", {"myemb": vec})
    assert chunk.tokens == row([A, PHOTO, OF, 0, 0, 0, CAT])
    assert chunk.multipliers == wrow([1.0, 1.0, 1.0, 1.2, 1.2, 1.2, 1.0])
    assert [(f.position, f.name) for f in chunk.fixes] == [(4, "myemb")] and chunk.fixes[0].vectors is vec
    # the name is matched after lower-casing, like any prompt text
    (chunk,) = tokenize_prompt(tok, "MyEmb", {"myemb": vec})
    assert chunk.tokens == row([0, 0, 0])


def test_embedding_spills_into_next_chunk(tok):
    emb = {"myemb": randn(3, WIDTH, seed=102)}
    chunks = tokenize_prompt(tok, cats(72) + " myemb", emb)
    assert chunk_ids(chunks) == [row([CAT] * 72 + [0, 0, 0])]
    assert [(f.position, f.name) for f in chunks[0].fixes] == [(73, "myemb")]
    chunks = tokenize_prompt(tok, cats(73) + " myemb dog", emb)
    assert chunk_ids(chunks) == [row([CAT] * 73), row([0, 0, 0, DOG])]
    assert chunks[0].fixes == [] and [(f.position, f.name) for f in chunks[1].fixes] == [(1, "myemb")]


def test_longest_embedding_name_wins(tok):
    emb = {"cat": randn(1, WIDTH, seed=103), "cat dog": randn(2, WIDTH, seed=104)}
    (chunk,) = tokenize_prompt(tok, "cat dog cat dog", emb)
    assert chunk.tokens == row([0, 0, 0, 0])
    assert [(f.position, f.name) for f in chunk.fixes] == [(1, "cat dog"), (3, "cat dog")]
    (chunk,) = tokenize_prompt(tok, "dog cat", emb)
    assert chunk.tokens == row([DOG, 0])
    assert [(f.position, f.name) for f in chunk.fixes] == [(2, "cat")]


def test_unknown_names_and_split_names_are_text(tok):
    emb = {"cat dog": randn(2, WIDTH, seed=105)}
    (chunk,) = tokenize_prompt(tok, "a photo of otheremb", emb)
    assert chunk.tokens == row(tok.encode("a photo of otheremb")) and chunk.fixes == []
    # a name only matches inside one fragment
    (chunk,) = tokenize_prompt(tok, "cat (dog)", emb)
    assert chunk.tokens == row([CAT, DOG]) and chunk.fixes == []


def test_back_off_leaves_embedding_fix_behind(tok):
    # 56 cats, comma at 56, embedding at 57..59, 15 cats -> full; the next cat moves everything after the comma.
    vec = randn(3, WIDTH, seed=106)
    chunks = tokenize_prompt(tok, cats(56) + ", myemb " + cats(20), {"myemb": vec})
    assert chunk_ids(chunks) == [row([CAT] * 56 + [COMMA]), row([0, 0, 0] + [CAT] * 20)]
    assert [(f.position, f.name) for f in chunks[0].fixes] == [(58, "myemb")]  # stale, over the padding (A1111)
    assert chunks[1].fixes == []


def test_embedding_errors(tok):
    with pytest.raises(ValueError, match="at most 75"):
        tokenize_prompt(tok, "huge", {"huge": randn(76, WIDTH, seed=107)})
    with pytest.raises(ValueError, match=r"\[n_vectors, width\]"):
        tokenize_prompt(tok, "x", {"flat": randn(WIDTH, seed=108)})


# --- encoding with a stand-in encoder --------------------------------------------------------------------------------


@pytest.mark.parametrize("clip_skip", [1, 2])
def test_weighting_and_mean_restoration(tok, clip_skip):
    enc = StandInEncoder()
    z = encode_prompt(enc, tok, "a (red:1.3) door, [old]", clip_skip=clip_skip)
    assert z.shape == (1, 77, WIDTH) and z.dtype == torch.float32
    expected = reference_encoding(enc, [row([A, RED, DOOR, COMMA, OLD])], [wrow([1.0, 1.3, 1.0, 1.0, S])], clip_skip)
    torch.testing.assert_close(z.double(), expected, rtol=RTOL, atol=ATOL)
    assert enc.calls[-1]["clip_skip"] == clip_skip
    # the weighting is visible: without it the result differs
    plain = reference_encoding(enc, [row([A, RED, DOOR, COMMA, OLD])], [[1.0] * 77], clip_skip)
    assert (z.double() - plain).abs().max() > 1e-2


def test_emphasis_modes(tok):
    enc = StandInEncoder()
    ids = torch.tensor([row([A, RED, DOOR])])
    with torch.no_grad():
        z = enc(ids)
    w = torch.tensor([wrow([1.0, 1.5, 1.0])])[:, :, None]
    torch.testing.assert_close(encode_prompt(enc, tok, "a (red:1.5) door", emphasis="No norm"), z * w)
    assert torch.equal(encode_prompt(enc, tok, "a (red:1.5) door", emphasis="Ignore"), z)


def test_unweighted_prompt_is_the_plain_encoding(tok):
    enc = StandInEncoder()
    z = encode_prompt(enc, tok, "a photo of a cat")
    with torch.no_grad():
        plain = enc(torch.tensor([row([A, PHOTO, OF, A, CAT])]))
    assert torch.equal(z, plain)  # weights 1.0 and a mean ratio of exactly 1


def test_multi_chunk_concatenation(tok):
    enc = StandInEncoder()
    text = "(" + cats(50) + ":1.4) " + cats(50, "dog")
    z = encode_prompt(enc, tok, text)
    assert z.shape == (1, 154, WIDTH)
    first = reference_encoding(enc, [row([CAT] * 50 + [DOG] * 25)], [wrow([1.4] * 50 + [1.0] * 25)])
    second = reference_encoding(enc, [row([DOG] * 25)], [[1.0] * 77])
    torch.testing.assert_close(z.double(), torch.cat([first, second], 1), rtol=RTOL, atol=ATOL)


def test_batch_pads_with_empty_chunks_and_shares_means(tok):
    enc = StandInEncoder()
    short, long = "(cat:1.3) dog", cats(80)
    z = encode_prompts(enc, tok, [short, long, short])
    assert z.shape == (3, 154, WIDTH)
    ids0 = [row([CAT, DOG]), row([CAT] * 75), row([CAT, DOG])]
    w0 = [wrow([1.3, 1.0]), [1.0] * 77, wrow([1.3, 1.0])]
    ids1 = [empty_chunk().tokens, row([CAT] * 5), empty_chunk().tokens]
    expected = torch.cat([reference_encoding(enc, ids0, w0), reference_encoding(enc, ids1, [[1.0] * 77] * 3)], 1)
    torch.testing.assert_close(z.double(), expected, rtol=RTOL, atol=ATOL)
    assert torch.equal(z[0], z[2])
    # the means are shared across the batch, so a prompt encoded alone comes out differently (as in A1111)
    alone = encode_prompt(enc, tok, short)
    assert (alone[0] - z[0, :77]).abs().max() > 1e-4


def test_embedding_vectors_reach_the_encoder(tok):
    enc = StandInEncoder()
    vec = randn(3, WIDTH, seed=109)
    before = vec.clone()
    z = encode_prompt(enc, tok, "a photo of (myemb:1.2) cat", embeddings={"myemb": vec})
    call = enc.calls[-1]
    ids = row([A, PHOTO, OF, 0, 0, 0, CAT])
    assert call["tokens"].tolist() == [ids]
    table = enc.embeddings.token_embedding.weight.detach()
    expected_embeds = table[torch.tensor(ids)].clone()
    expected_embeds[4:7] = vec
    assert torch.equal(call["inputs_embeds"][0], expected_embeds)
    assert torch.equal(vec, before)  # input not modified
    # independent check: the same encoder with the vectors appended to its vocabulary, plain token path
    extended, first = with_extra_vocab(enc, vec)
    oracle = reference_encoding(extended, [row([A, PHOTO, OF, first, first + 1, first + 2, CAT])],
                                [wrow([1.0, 1.0, 1.0, 1.2, 1.2, 1.2, 1.0])])
    torch.testing.assert_close(z.double(), oracle, rtol=RTOL, atol=ATOL)


def test_spilled_and_stale_embeddings_are_encoded_as_a1111(tok):
    enc = StandInEncoder()
    vec = randn(3, WIDTH, seed=110)
    z = encode_prompt(enc, tok, cats(56) + ", myemb " + cats(20), embeddings={"myemb": vec})
    assert z.shape == (1, 154, WIDTH)
    extended, first = with_extra_vocab(enc, vec)
    # chunk 1: the vectors land on the padding after the comma; chunk 2: placeholders keep token 0's embedding
    ids1 = row([CAT] * 56 + [COMMA])
    ids1[58:61] = [first, first + 1, first + 2]
    expected = torch.cat([reference_encoding(extended, [ids1], [[1.0] * 77]),
                          reference_encoding(extended, [row([0, 0, 0] + [CAT] * 20)], [[1.0] * 77])], 1)
    torch.testing.assert_close(z.double(), expected, rtol=RTOL, atol=ATOL)


def test_half_precision_encoder_returns_float32(tok):
    enc = StandInEncoder().to(torch.bfloat16)
    z = encode_prompt(enc, tok, "a (red:1.3) door")
    assert z.dtype == torch.float32  # float32 weights promote, as A1111's do
    assert encode_prompt(enc, tok, "a red door", emphasis="Ignore").dtype == torch.bfloat16


def test_embedding_width_mismatch(tok):
    with pytest.raises(ValueError, match="width 4"):
        encode_prompt(StandInEncoder(), tok, "myemb", embeddings={"myemb": randn(2, 4, seed=111)})


def test_bad_arguments(tok):
    enc = StandInEncoder()
    with pytest.raises(TypeError, match="sequence of prompts"):
        encode_prompts(enc, tok, "a cat")
    with pytest.raises(ValueError, match="at least one"):
        encode_prompts(enc, tok, [])
    with pytest.raises(TypeError):
        encode_prompt(enc, tok, ["a cat"])


# --- the real text encoder, tiny ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip():
    from inpaintlab.clip import CLIPTextConfig, CLIPTextTransformer

    torch.manual_seed(0)
    model = CLIPTextTransformer(CLIPTextConfig(width=64, layers=2, mlp_dim=128)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


def test_with_clip_text_transformer(tok, tiny_clip):
    text = "a photo of (myemb:1.2), [old] door"
    vec = randn(2, 64, seed=112)
    for clip_skip in (1, 2):
        z = encode_prompt(tiny_clip, tok, text, clip_skip=clip_skip, embeddings={"myemb": vec})
        assert z.shape == (1, 77, 64)
        cfg = dataclasses.replace(tiny_clip.config, vocab_size=tiny_clip.config.vocab_size + 2)
        extended = type(tiny_clip)(cfg).eval()
        state = tiny_clip.state_dict()
        state["embeddings.token_embedding.weight"] = torch.cat([state["embeddings.token_embedding.weight"], vec])
        extended.load_state_dict(state)
        first = tiny_clip.config.vocab_size
        expected = reference_encoding(extended, [row([A, PHOTO, OF, first, first + 1, COMMA, OLD, DOOR])],
                                      [wrow([1.0, 1.0, 1.0, 1.2, 1.2, 1.0, S, 1.0])], clip_skip)
        torch.testing.assert_close(z.double(), expected, rtol=RTOL, atol=ATOL)


def test_clip_text_transformer_plain_prompt_is_exact(tok, tiny_clip):
    z = encode_prompt(tiny_clip, tok, "a photo of a cat")
    with torch.no_grad():
        assert torch.equal(z, tiny_clip(torch.tensor([row([A, PHOTO, OF, A, CAT])])))
    assert encode_prompt(tiny_clip, tok, cats(100)).shape == (1, 154, 64)


# --- embedding files -------------------------------------------------------------------------------------------------


class Opaque:
    """An arbitrary class: a file that pickles one must be refused."""

    def __init__(self):
        self.payload = torch.zeros(2, WIDTH)


def _write_formats(directory, w=WIDTH):
    import safetensors.torch

    vecs = {
        "a1111": randn(2, w, seed=113),
        "emb-params": randn(4, w, seed=114),
        "concept": randn(w, seed=115),
        "paramdict": randn(3, w, seed=116),
        "half": randn(1, w, seed=117).half(),
        "nested": randn(2, w, seed=118),
    }
    torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": vecs["a1111"]}, "name": "other-name",
                "step": 100, "sd_checkpoint": "abc", "sd_checkpoint_name": "model"}, directory / "a1111.pt")
    safetensors.torch.save_file({"emb_params": vecs["emb-params"]}, str(directory / "emb-params.safetensors"))
    torch.save({"<concept>": vecs["concept"]}, directory / "concept.bin")
    pdict = nn.ParameterDict({"*": nn.Parameter(vecs["paramdict"].clone())})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": pdict}, directory / "paramdict.PT")
    safetensors.torch.save_file({"anything": vecs["half"]}, str(directory / "half.safetensors"))
    (directory / "sub").mkdir()
    torch.save({"string_to_param": {"*": vecs["nested"]}}, directory / "sub" / "nested.pt")
    return vecs


def test_load_embeddings_formats(tmp_path, caplog):
    import safetensors.torch

    vecs = _write_formats(tmp_path)
    safetensors.torch.save_file({"emb_params": randn(2, 1024, seed=119)}, str(tmp_path / "sd2.safetensors"))
    safetensors.torch.save_file({"clip_g": randn(2, 1280, seed=120), "clip_l": randn(2, WIDTH, seed=121)},
                                str(tmp_path / "sdxl.safetensors"))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an embedding")
    (tmp_path / "a1111.preview.png").write_bytes(b"\x89PNG")
    files_before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with caplog.at_level(logging.WARNING, logger="inpaintlab.clip.conditioning"):
        loaded = load_embeddings(tmp_path, width=WIDTH)
    assert sorted(loaded) == ["a1111", "concept", "emb-params", "half", "nested", "paramdict"]
    for name, vec in loaded.items():
        assert vec.dtype == torch.float32 and vec.ndim == 2
        torch.testing.assert_close(vec, vecs[name].float().reshape(-1, WIDTH), rtol=0, atol=0)
    assert "sd2.safetensors" in caplog.text and "width 1024" in caplog.text
    assert "sdxl.safetensors" in caplog.text and "SDXL" in caplog.text
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files_before


def test_loaded_embedding_is_used_by_name(tmp_path, tok):
    torch.save({"string_to_param": {"*": randn(2, WIDTH, seed=122)}}, tmp_path / "my-style.pt")
    emb = load_embeddings(tmp_path, width=WIDTH)
    (chunk,) = tokenize_prompt(tok, "a cat, my-style", emb)
    assert chunk.tokens == row([A, CAT, COMMA, 0, 0])
    assert chunk.fixes[0].name == "my-style" and torch.equal(chunk.fixes[0].vectors, emb["my-style"])


def _write(path, obj):
    if path.suffix == ".safetensors":
        import safetensors.torch

        safetensors.torch.save_file(obj, str(path))
    else:
        torch.save(obj, path)
    return path


@pytest.mark.parametrize(
    "name,obj,message",
    [
        ("two.safetensors", {"a": randn(1, WIDTH, seed=123), "b": randn(1, WIDTH, seed=124)}, "2 entries"),
        ("two.pt", {"string_to_param": {"*": randn(1, WIDTH, seed=125), "x": randn(1, WIDTH, seed=126)}},
         "exactly one"),
        ("nothing.pt", {"foo": "bar"}, "neither a textual-inversion"),
        ("list.bin", [randn(1, WIDTH, seed=127)], "neither a textual-inversion"),
        ("cube.pt", {"emb": randn(1, 2, WIDTH, seed=128)}, "float tensor"),
        ("ints.pt", {"emb": torch.ones(2, WIDTH, dtype=torch.int64)}, "float tensor"),
        ("opaque.pt", {"string_to_param": {"*": Opaque()}}, "refusing to load"),
        ("sdxl.safetensors", {"clip_g": randn(1, 16, seed=129), "clip_l": randn(1, WIDTH, seed=130)}, "SDXL"),
    ],
)
def test_malformed_embedding_files(tmp_path, name, obj, message):
    path = _write(tmp_path / name, obj)
    with pytest.raises(ValueError, match=message) as info:
        load_embedding_file(path)
    assert str(path) in str(info.value)
    if not name.startswith("sdxl"):
        with pytest.raises(ValueError, match=message):
            load_embeddings(tmp_path, width=WIDTH)


def test_corrupt_files(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file at all")
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_embedding_file(tmp_path / "bad.pt")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_embedding_file(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="unsupported embedding file type"):
        load_embedding_file(tmp_path / "x.txt")
    with pytest.raises(NotADirectoryError):
        load_embeddings(tmp_path / "missing")


def test_clip_text_transformer_against_transformers(tok, tiny_clip):
    """End to end against transformers' CLIPTextModel carrying the same weights (the stack diffusers uses)."""
    transformers = pytest.importorskip("transformers")
    cfg = tiny_clip.config
    hf = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_positions, hidden_act="quick_gelu",
        layer_norm_eps=1e-5)).eval()
    hf.load_state_dict(tiny_clip.state_dict())
    text = "(blue eyes:1.3), portrait of a young woman, [freckles]"
    # blue eyes | , portrait of a young woman , | freckles
    ids = [row([1746, 3095, COMMA, 5352, OF, A, 1888, 2308, COMMA, 48036])]
    weights = [wrow([1.3, 1.3] + [1.0] * 7 + [S])]
    (chunk,) = tokenize_prompt(tok, text)
    assert chunk.tokens == ids[0] and chunk.multipliers == weights[0]
    with torch.no_grad():
        out = hf(input_ids=torch.tensor(ids), output_hidden_states=True)
        by_skip = {1: out.last_hidden_state.double(), 2: hf.final_layer_norm(out.hidden_states[-2]).double()}
    for clip_skip, z in by_skip.items():
        w = torch.tensor(weights, dtype=torch.float64)[:, :, None]
        expected = z * w * (z.mean() / (z * w).mean())
        got = encode_prompt(tiny_clip, tok, text, clip_skip=clip_skip)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
