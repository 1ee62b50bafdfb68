"""A1111 conditioning for SD 2.x and SDXL against transformers models loaded through diffusers' converters.

The token rows the encoders must see are written out by hand (BOS, ids, EOS, then id 0 for OpenCLIP or EOS for
CLIP-L); transformers' CLIPTokenizer with SD 2.x's / SDXL's ``pad_token="!"`` independently produces the same
0-padded row. The expected conditioning is composed from the transformers models run on those rows: SD 2.x
``final_layer_norm(hidden_states[-2])``; SDXL ``cat(CLIP-L hidden_states[-2], bigG hidden_states[-2])`` and bigG's
``text_embeds`` of the first chunk; emphasis weights and the mean restore re-applied in float64.
Tolerance: max|Δ| <= 1e-5 * max|expected| (fp32 encoders; measured at most 7e-7 relative).
"""
import gzip
import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from inpaintlab.clip import (
    CLIPTextConfig,
    CLIPTextTransformer,
    OpenCLIPTextConfig,
    OpenCLIPTextTransformer,
    OpenCLIPTokenizer,
    Tokenizer,
    encode_prompts_sd2,
    encode_prompts_sdxl,
    load_sdxl_embeddings,
)
from inpaintlab.clip.openclip import SD2_PREFIX, SDXL_G_PREFIX, split_state_dict
from inpaintlab.clip.sd2_sdxl import load_sdxl_embedding_file
from inpaintlab.clip.tokenizer import VOCAB_FILE, byte_symbols
from inpaintlab.tiny import reinit_

transformers = pytest.importorskip("transformers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")

BOS, EOS, COMMA = 49406, 49407, 267
CAT, DOG, A, PHOTO, OF, RED, DOOR, OLD = 2368, 1929, 320, 1125, 539, 736, 2489, 896
R, S = 1.1, 1 / 1.1
REL_TOL = 1e-5
L_PREFIX = "conditioner.embedders.0.transformer.text_model."
TINY_SD2 = OpenCLIPTextConfig(width=64, layers=3, mlp_dim=256, projection_dim=None)
TINY_L = CLIPTextConfig(width=64, layers=3, mlp_dim=256)
TINY_G = OpenCLIPTextConfig(width=128, layers=3, mlp_dim=512, projection_dim=96)
SPARE_IDS = (49404, 49405)  # rare merges, never produced by the prompts below: carry embedding vectors in oracles


def row(ids, pad):
    assert len(ids) <= 75
    return [BOS] + list(ids) + [EOS] + [pad] * (75 - len(ids))


def wrow(weights):
    return [1.0] + list(weights) + [1.0] * (76 - len(weights))


def hf_config(width, layers, mlp, act, projection_dim=512):
    config = transformers.CLIPTextConfig(
        vocab_size=49408, hidden_size=width, intermediate_size=mlp, num_hidden_layers=layers,
        num_attention_heads=width // 64, max_position_embeddings=77, hidden_act=act, layer_norm_eps=1e-5,
        projection_dim=projection_dim, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    config._attn_implementation = "eager"
    return config


def flat(converted):
    return {k.removeprefix("text_model."): v for k, v in converted.items() if not k.endswith("position_ids")}


@pytest.fixture(scope="module")
def tok():
    return Tokenizer()


@pytest.fixture(scope="module")
def otok():
    return OpenCLIPTokenizer()


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    """(ours, transformers CLIPTextModel) from one SD 2.x-layout file."""
    path = tmp_path_factory.mktemp("sd2") / "sd2.safetensors"
    source = reinit_(OpenCLIPTextTransformer(TINY_SD2), seed=21)
    save_file({SD2_PREFIX + k: v.contiguous() for k, v in source.state_dict().items()}
              | {SD2_PREFIX + "logit_scale": torch.tensor(4.6)}, str(path))
    checkpoint = load_file(str(path))
    sd = split_state_dict(checkpoint, SD2_PREFIX)
    ours = OpenCLIPTextTransformer(OpenCLIPTextConfig.from_state_dict(sd)).eval()
    ours.load_state_dict(sd, strict=True)
    hf = transformers.CLIPTextModel(hf_config(64, 3, 256, "gelu")).eval()
    hf.load_state_dict(flat(single_file_utils.convert_open_clip_checkpoint(hf, checkpoint, prefix=SD2_PREFIX)),
                       strict=True)
    return ours, hf


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    """(clip_l, clip_g, hf_l, hf_g) from one SDXL-layout file holding both text encoders."""
    path = tmp_path_factory.mktemp("sdxl") / "sdxl.safetensors"
    source_l = reinit_(CLIPTextTransformer(TINY_L), seed=22)
    source_g = reinit_(OpenCLIPTextTransformer(TINY_G), seed=23)
    save_file({L_PREFIX + k: v.contiguous() for k, v in source_l.state_dict().items()}
              | {L_PREFIX + "embeddings.position_ids": torch.arange(77)[None]}
              | {SDXL_G_PREFIX + k: v.contiguous() for k, v in source_g.state_dict().items()}
              | {SDXL_G_PREFIX + "logit_scale": torch.tensor(4.6)}, str(path))
    checkpoint = load_file(str(path))
    sd_l = {k[len(L_PREFIX):]: v for k, v in checkpoint.items()
            if k.startswith(L_PREFIX) and not k.endswith("position_ids")}
    clip_l = CLIPTextTransformer(CLIPTextConfig.from_state_dict(sd_l)).eval()
    clip_l.load_state_dict(sd_l, strict=True)
    sd_g = split_state_dict(checkpoint, SDXL_G_PREFIX)
    clip_g = OpenCLIPTextTransformer(OpenCLIPTextConfig.from_state_dict(sd_g)).eval()
    clip_g.load_state_dict(sd_g, strict=True)
    hf_l = transformers.CLIPTextModel(hf_config(64, 3, 256, "quick_gelu")).eval()
    hf_l.load_state_dict(flat(single_file_utils.convert_ldm_clip_checkpoint(checkpoint)), strict=True)
    hf_g = transformers.CLIPTextModelWithProjection(hf_config(128, 3, 512, "gelu", projection_dim=96)).eval()
    hf_g.load_state_dict(single_file_utils.convert_open_clip_checkpoint(hf_g, checkpoint, prefix=SDXL_G_PREFIX),
                         strict=True)
    return clip_l, clip_g, hf_l, hf_g


def emphasised(z, weights):
    """A1111 emphasis "Original" in float64: z * w, rescaled so the mean over the chunk tensor is unchanged."""
    z = z.double()
    w = torch.tensor(weights, dtype=torch.float64)[:, :, None]
    return z * w * (z.mean() / (z * w).mean())


def assert_close(got, expected, what):
    assert got.shape == expected.shape, f"{what}: {tuple(got.shape)} != {tuple(expected.shape)}"
    err, scale = (got.double() - expected.double()).abs().max().item(), expected.abs().max().item()
    assert scale > 0.5, f"{what}: reference too small for a meaningful comparison"
    assert err <= REL_TOL * scale, f"{what}: max|Δ| {err:.3g} > {REL_TOL} * {scale:.3g}"


def hf_sd2(hf, rows):
    with torch.no_grad():
        return hf.final_layer_norm(hf(input_ids=torch.tensor(rows), output_hidden_states=True).hidden_states[-2])


def hf_hidden(hf, rows, n=2):
    with torch.no_grad():
        return hf(input_ids=torch.tensor(rows), output_hidden_states=True).hidden_states[-n]


def hf_pooled(hf_g, rows):
    with torch.no_grad():
        return hf_g(input_ids=torch.tensor(rows)).text_embeds


# --- SD 2.x ---------------------------------------------------------------------------------------------------------


def test_sd2_pads_with_token_zero_after_the_end_token(sd2, otok):
    ours, hf = sd2
    expected_row = [BOS, A, PHOTO, OF, A, CAT, EOS] + [0] * 70
    assert row([A, PHOTO, OF, A, CAT], 0) == expected_row
    got = encode_prompts_sd2(ours, otok, ["a photo of a cat"])
    assert got.shape == (1, 77, 64)
    assert_close(got, hf_sd2(hf, [expected_row]), "SD2 'a photo of a cat'")
    # End-token padding (SD1's rule) gives a clearly different conditioning: the padding matters.
    assert (got - hf_sd2(hf, [row([A, PHOTO, OF, A, CAT], EOS)])).abs().max() > 1e-2


def test_zero_padded_row_is_what_transformers_sd2_tokenizer_produces():
    """transformers' CLIPTokenizer configured like SD 2.x's / SDXL's second tokenizer (pad_token "!" = id 0)."""
    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1 : 1 + 48894]]
    symbols = list(byte_symbols())
    order = sorted(s for s in symbols if ord(s) < 256) + sorted(s for s in symbols if ord(s) >= 256)
    strings = order + [s + "</w>" for s in order] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    hf_tok = transformers.CLIPTokenizer(vocab={s: i for i, s in enumerate(strings)}, merges=merges, pad_token="!")
    assert hf_tok.pad_token_id == 0
    for text, ids in (("a photo of a cat", [A, PHOTO, OF, A, CAT]), ("", []), ("a red door, old", [A, RED, DOOR, COMMA, OLD])):
        assert hf_tok(text, padding="max_length", max_length=77)["input_ids"] == row(ids, 0)


def test_sd2_chunks_break_and_batch_padding(sd2, otok):
    ours, hf = sd2
    got = encode_prompts_sd2(ours, otok, ["a cat BREAK a dog", "a cat"])
    assert got.shape == (2, 154, 64)
    first = [row([A, CAT], 0), row([A, CAT], 0)]
    second = [row([A, DOG], 0), row([], 0)]  # the shorter prompt is padded with an empty chunk: BOS, EOS, 0...
    assert_close(got[:, :77], hf_sd2(hf, first), "chunk 1")
    assert_close(got[:, 77:], hf_sd2(hf, second), "chunk 2")


def test_sd2_spelled_out_end_token_zeroes_the_rest_of_the_chunk(sd2, otok):
    """A1111 replaces everything after the *first* end token, so a prompt spelling open_clip's end token loses the
    words after it; transformers' spelling of the end token is ordinary text for open_clip's tokenizer."""
    ours, _ = sd2
    assert otok.encode("a cat <end_of_text> dog") == [A, CAT, EOS, DOG]
    assert otok.encode("<start_of_text>") == [BOS] and len(otok.encode("<|endoftext|>")) == 6
    assert torch.equal(encode_prompts_sd2(ours, otok, ["a cat <end_of_text> dog"]),
                       encode_prompts_sd2(ours, otok, ["a cat"]))


def test_sd2_emphasis_against_float64(sd2, otok):
    ours, hf = sd2
    text = "(blue eyes:1.3), portrait of a young woman, [freckles]"
    ids = [1746, 3095, COMMA, 5352, OF, A, 1888, 2308, COMMA, 48036]
    weights = [wrow([1.3, 1.3] + [1.0] * 7 + [S]), wrow([])]
    z = hf_sd2(hf, [row(ids, 0), row([A, CAT], 0)])
    got = encode_prompts_sd2(ours, otok, [text, "a cat"])
    assert got.dtype == torch.float32
    assert_close(got, emphasised(z, weights), "SD2 emphasis")
    assert_close(encode_prompts_sd2(ours, otok, [text, "a cat"], emphasis="Ignore"), z, "SD2 emphasis Ignore")


def test_sd2_ignores_clip_skip_as_a1111(sd2, otok):
    ours, _ = sd2
    base = encode_prompts_sd2(ours, otok, ["a cat"])
    for clip_skip in (2, 3, 12):
        assert torch.equal(encode_prompts_sd2(ours, otok, ["a cat"], clip_skip=clip_skip), base)
    for bad in (0, -1, True, 1.0):
        with pytest.raises(ValueError, match="clip_skip must be an int >= 1"):
            encode_prompts_sd2(ours, otok, ["a cat"], clip_skip=bad)


def test_sd2_textual_inversion(sd2, otok):
    ours, hf = sd2
    vectors = torch.randn(2, 64, generator=torch.Generator().manual_seed(31))
    got = encode_prompts_sd2(ours, otok, ["a cat, my-style"], embeddings={"my-style": vectors})
    patched = transformers.CLIPTextModel(hf.config).eval()
    patched.load_state_dict(hf.state_dict())
    with torch.no_grad():
        patched.embeddings.token_embedding.weight[list(SPARE_IDS)] = vectors
    assert_close(got, hf_sd2(patched, [row([A, CAT, COMMA, *SPARE_IDS], 0)]), "SD2 embedding")
    with pytest.raises(ValueError, match="has width 768, the text encoder 64"):
        encode_prompts_sd2(ours, otok, ["my-style"], embeddings={"my-style": torch.zeros(1, 768)})


def test_sd2_argument_errors(sd2, otok, tok):
    ours, _ = sd2
    with pytest.raises(TypeError, match="not a single str"):
        encode_prompts_sd2(ours, otok, "a cat")
    with pytest.raises(ValueError, match="at least one prompt"):
        encode_prompts_sd2(ours, otok, [])
    with pytest.raises(TypeError, match="text_encoder must be a OpenCLIPTextTransformer"):
        encode_prompts_sd2(CLIPTextTransformer(TINY_L), otok, ["a cat"])
    with pytest.raises(ValueError, match="unknown emphasis mode"):
        encode_prompts_sd2(ours, otok, ["a cat"], emphasis="Strong")


# --- SDXL -----------------------------------------------------------------------------------------------------------


def sdxl_expected(hf_l, hf_g, chunk_rows, chunk_weights, skip_l=2):
    """Compose SDXL's conditioning from the transformers models, chunk by chunk: (context, pooled)."""
    parts = []
    for ids_per_prompt, weights in zip(chunk_rows, chunk_weights):
        z_l = emphasised(hf_hidden(hf_l, [row(ids, EOS) for ids in ids_per_prompt], skip_l), weights)
        z_g = emphasised(hf_hidden(hf_g, [row(ids, 0) for ids in ids_per_prompt]), weights)
        parts.append(torch.cat([z_l, z_g], dim=-1))
    pooled = hf_pooled(hf_g, [row(ids, 0) for ids in chunk_rows[0]])
    return torch.cat(parts, dim=1), pooled


def test_sdxl_context_and_pooled_against_transformers(sdxl, tok):
    clip_l, clip_g, hf_l, hf_g = sdxl
    texts = ["a (red:1.3) door, [old] BREAK a dog", "a cat"]
    chunk_rows = [[[A, RED, DOOR, COMMA, OLD], [A, CAT]], [[A, DOG], []]]
    chunk_weights = [[wrow([1.0, 1.3, 1.0, 1.0, S]), wrow([])], [wrow([]), wrow([])]]
    context, pooled = encode_prompts_sdxl(clip_l, clip_g, tok, texts)
    assert context.shape == (2, 154, 64 + 128) and pooled.shape == (2, 96)
    expected_context, expected_pooled = sdxl_expected(hf_l, hf_g, chunk_rows, chunk_weights)
    assert_close(context, expected_context, "SDXL context")
    assert_close(pooled, expected_pooled, "SDXL pooled (first chunk, no emphasis)")
    # The pooled vector is the first chunk's: the second chunk's would differ.
    assert (pooled - hf_pooled(hf_g, [row(ids, 0) for ids in chunk_rows[1]])).abs().max() > 1e-2


def test_sdxl_single_chunk_matches_diffusers_style_composition(sdxl, tok):
    """Plain prompt, no weights: exactly diffusers' SDXL recipe (hidden_states[-2] of both, concatenated;
    text_embeds of the second encoder), with CLIP-L padded by the end token and bigG by "!"."""
    clip_l, clip_g, hf_l, hf_g = sdxl
    context, pooled = encode_prompts_sdxl(clip_l, clip_g, tok, ["a photo of a cat"])
    ids = [A, PHOTO, OF, A, CAT]
    expected = torch.cat([hf_hidden(hf_l, [row(ids, EOS)]), hf_hidden(hf_g, [row(ids, 0)])], dim=-1)
    assert_close(context, expected, "context")
    assert_close(pooled, hf_pooled(hf_g, [row(ids, 0)]), "pooled")


def test_sdxl_clip_l_skip_option(sdxl, tok):
    clip_l, clip_g, hf_l, hf_g = sdxl
    default = encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"])
    for clip_skip in (1, 3, 4):
        # Option off (A1111's default): clip skip changes nothing for SDXL.
        off = encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"], clip_skip=clip_skip)
        assert torch.equal(off[0], default[0]) and torch.equal(off[1], default[1])
        on, pooled = encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"], clip_skip=clip_skip, clip_l_skip=True)
        assert_close(on[..., :64], hf_hidden(hf_l, [row([A, CAT], EOS)], clip_skip), f"CLIP-L hidden[-{clip_skip}]")
        assert torch.equal(on[..., 64:], default[0][..., 64:]) and torch.equal(pooled, default[1])
    with pytest.raises(ValueError, match=r"clip_skip must be an int in 1\.\.4"):
        encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"], clip_skip=5, clip_l_skip=True)


def test_sdxl_empty_negative_prompt_is_zero(sdxl, tok):
    clip_l, clip_g, _, _ = sdxl
    context, pooled = encode_prompts_sdxl(clip_l, clip_g, tok, ["", ""], negative=True)
    assert context.shape == (2, 77, 192) and pooled.shape == (2, 96)
    assert not context.any() and not pooled.any()
    positive = encode_prompts_sdxl(clip_l, clip_g, tok, [""])
    assert positive[0].abs().max() > 0.5 and positive[1].abs().max() > 0.5
    negative = encode_prompts_sdxl(clip_l, clip_g, tok, ["blurry"], negative=True)
    assert negative[0].abs().max() > 0.5
    mixed = encode_prompts_sdxl(clip_l, clip_g, tok, ["", "blurry"], negative=True)  # not all empty: encoded
    assert torch.equal(mixed[0][0], encode_prompts_sdxl(clip_l, clip_g, tok, ["", "blurry"])[0][0])


def test_sdxl_textual_inversion_writes_each_encoders_vectors(sdxl, tok):
    clip_l, clip_g, hf_l, hf_g = sdxl
    g = torch.Generator().manual_seed(32)
    pair = {"clip_l": torch.randn(2, 64, generator=g), "clip_g": torch.randn(2, 128, generator=g)}
    context, pooled = encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat, my-style"], embeddings={"my-style": pair})
    patched_l = transformers.CLIPTextModel(hf_l.config).eval()
    patched_l.load_state_dict(hf_l.state_dict())
    patched_g = transformers.CLIPTextModelWithProjection(hf_g.config).eval()
    patched_g.load_state_dict(hf_g.state_dict())
    with torch.no_grad():
        patched_l.embeddings.token_embedding.weight[list(SPARE_IDS)] = pair["clip_l"]
        patched_g.text_model.embeddings.token_embedding.weight[list(SPARE_IDS)] = pair["clip_g"]
    ids = [A, CAT, COMMA, *SPARE_IDS]
    expected = torch.cat([hf_hidden(patched_l, [row(ids, EOS)]), hf_hidden(patched_g, [row(ids, 0)])], dim=-1)
    assert_close(context, expected, "SDXL embedding context")
    assert_close(pooled, hf_pooled(patched_g, [row(ids, 0)]), "SDXL embedding pooled")
    with pytest.raises(ValueError, match="must be a mapping with 'clip_l' and 'clip_g'"):
        encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"], embeddings={"x": pair["clip_l"]})
    with pytest.raises(ValueError, match="different numbers of vectors"):
        encode_prompts_sdxl(clip_l, clip_g, tok, ["a cat"],
                            embeddings={"x": {"clip_l": pair["clip_l"][:1], "clip_g": pair["clip_g"]}})


def test_sdxl_argument_errors(sdxl, tok):
    clip_l, clip_g, _, _ = sdxl
    with pytest.raises(TypeError, match="clip_l must be a CLIPTextTransformer"):
        encode_prompts_sdxl(clip_g, clip_l, tok, ["a cat"])
    no_projection = OpenCLIPTextTransformer(TINY_SD2)
    with pytest.raises(ValueError, match="no text_projection"):
        encode_prompts_sdxl(clip_l, no_projection, tok, ["a cat"])
    # transformers' spelling of the end token is 1 token for CLIP-L and 6 ordinary ones for open_clip.
    with pytest.raises(ValueError, match="gives 1 chunks for CLIP-L and 2 for OpenCLIP bigG"):
        encode_prompts_sdxl(clip_l, clip_g, tok, ["<|endoftext|>" * 15])


# --- SDXL embedding files -------------------------------------------------------------------------------------------


def test_load_sdxl_embeddings(tmp_path, caplog):
    g = torch.Generator().manual_seed(33)
    good = {"clip_l": torch.randn(2, 768, generator=g), "clip_g": torch.randn(2, 1280, generator=g)}
    save_file(good, str(tmp_path / "style.safetensors"))
    torch.save({"clip_g": good["clip_g"][:1].half(), "clip_l": good["clip_l"][:1].half()}, tmp_path / "half.pt")
    torch.save({"string_to_param": {"*": torch.randn(1, 768, generator=g)}}, tmp_path / "sd1.pt")
    save_file({"clip_l": torch.randn(1, 64), "clip_g": torch.randn(1, 128)}, str(tmp_path / "tiny.safetensors"))
    (tmp_path / "empty.pt").write_bytes(b"")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    with caplog.at_level(logging.WARNING, logger="inpaintlab.clip.sd2_sdxl"):
        loaded = load_sdxl_embeddings(tmp_path)
    assert sorted(loaded) == ["half", "style"]
    assert all(v.dtype == torch.float32 for pair in loaded.values() for v in pair.values())
    assert torch.equal(loaded["style"]["clip_l"], good["clip_l"]) and torch.equal(loaded["style"]["clip_g"], good["clip_g"])
    assert torch.equal(loaded["half"]["clip_g"], good["clip_g"][:1].half().float())
    assert "sd1.pt" in caplog.text and "single-encoder" in caplog.text
    assert "tiny.safetensors" in caplog.text and "clip_l 64, clip_g 128" in caplog.text
    assert sorted(load_sdxl_embeddings(tmp_path, width_l=64, width_g=128)) == ["tiny"]
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert torch.equal(load_sdxl_embedding_file(tmp_path / "style.safetensors")["clip_g"], good["clip_g"])
    with pytest.raises(ValueError, match="single-encoder embedding"):
        load_sdxl_embedding_file(tmp_path / "sd1.pt")


@pytest.mark.parametrize("obj,message", [
    ({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(1, 1280)}, "same number in both"),
    ({"clip_l": torch.randn(768), "clip_g": torch.randn(1, 1280)}, r"clip_l must be a float tensor \[n_vectors"),
    ({"clip_l": torch.ones(1, 768, dtype=torch.int64), "clip_g": torch.randn(1, 1280)}, "clip_l must be a float"),
    ({"a": torch.randn(1, 768), "b": torch.randn(1, 768)}, "2 entries"),
])
def test_malformed_sdxl_embedding_files(tmp_path, obj, message):
    path = tmp_path / "bad.safetensors"
    save_file(obj, str(path))
    with pytest.raises(ValueError, match=message) as info:
        load_sdxl_embeddings(tmp_path)
    assert str(path) in str(info.value)
