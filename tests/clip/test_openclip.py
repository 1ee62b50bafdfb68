"""OpenCLIP text towers vs transformers 5.24, through diffusers 0.42.1's own single-file converter.

Random re-initialised weights (inpaintlab.tiny.reinit_: ~1/sqrt(fan_in), norm affines away from (1, 0), q/k rows of
the fused in_proj scaled x1.5) in the real OpenCLIP layout are saved with the SD 2.x or SDXL prefix, read back,
loaded strictly into our tower, and converted by ``diffusers.loaders.single_file_utils.convert_open_clip_checkpoint``
into transformers' ``CLIPTextModel`` (SD 2.x: diffusers drops block 23 and reads the 23-block model's
``last_hidden_state``) or ``CLIPTextModelWithProjection`` (SDXL: ``hidden_states[-2]`` and ``text_embeds``).
The oracle runs its eager attention path, ours torch SDPA. Tolerance: fp32 round-off,
max|Δ| <= 1e-5 * max|reference| (measured: at most 9e-7 relative on outputs of magnitude 4-6).
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from inpaintlab.clip.openclip import (
    SD2_PREFIX,
    SDXL_G_PREFIX,
    VIT_BIGG_14,
    VIT_H_14,
    OpenCLIPAttention,
    OpenCLIPMLP,
    OpenCLIPTextConfig,
    OpenCLIPTextTransformer,
    OpenCLIPTransformer,
    ResidualAttentionBlock,
    split_state_dict,
)
from inpaintlab.tiny import reinit_

transformers = pytest.importorskip("transformers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")

REL_TOL = 1e-5
BOS, EOS = 49406, 49407
DATA = Path(__file__).parents[1] / "data"
# SD 2.x tiny: 24 blocks like ViT-H, so diffusers' hard-coded SD 2.x key filter (drop resblocks.23) applies as is.
TINY_SD2 = OpenCLIPTextConfig(width=64, layers=24, mlp_dim=256, projection_dim=64)
# SDXL tiny: 2 heads; projection_dim differs from width so a transposed text_projection cannot pass.
TINY_G = OpenCLIPTextConfig(width=128, layers=3, mlp_dim=512, projection_dim=96)


def hf_config(cfg: OpenCLIPTextConfig, layers: int, projection: bool):
    config = transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=layers,
        num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_positions, hidden_act="gelu",
        layer_norm_eps=1e-5, projection_dim=cfg.projection_dim if projection else 512,
        # eos_token_id 2 = transformers' legacy pooling, argmax of the ids: what sgm's OpenCLIP embedder does
        bos_token_id=0, eos_token_id=2, pad_token_id=1,
    )
    config._attn_implementation = "eager"
    return config


def save_and_reload(model: nn.Module, prefix: str, path: Path) -> dict:
    checkpoint = {prefix + k: v.contiguous() for k, v in model.state_dict().items()}
    checkpoint[prefix + "logit_scale"] = torch.tensor(4.6052)  # stored in SD 2.x / SDXL files
    save_file(checkpoint, str(path))
    return load_file(str(path))


def ours_from(checkpoint: dict, prefix: str) -> OpenCLIPTextTransformer:
    sd = split_state_dict(checkpoint, prefix)
    model = OpenCLIPTextTransformer(OpenCLIPTextConfig.from_state_dict(sd)).eval()
    model.load_state_dict(sd, strict=True)
    return model


def diffusers_convert(checkpoint: dict, prefix: str, hf_model: nn.Module) -> dict:
    converted = single_file_utils.convert_open_clip_checkpoint(hf_model, checkpoint, prefix=prefix)
    if not hasattr(hf_model, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel (as diffusers handles it)
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    return converted


@pytest.fixture(scope="module")
def sd2_pair(tmp_path_factory):
    source = reinit_(OpenCLIPTextTransformer(TINY_SD2), seed=11)
    checkpoint = save_and_reload(source, SD2_PREFIX, tmp_path_factory.mktemp("sd2") / "te.safetensors")
    ours = ours_from(checkpoint, SD2_PREFIX)
    hf = transformers.CLIPTextModel(hf_config(TINY_SD2, 23, projection=False)).eval()
    hf.load_state_dict(diffusers_convert(checkpoint, SD2_PREFIX, hf), strict=True)
    return ours, hf


@pytest.fixture(scope="module")
def g_pair(tmp_path_factory):
    source = reinit_(OpenCLIPTextTransformer(TINY_G), seed=12)
    checkpoint = save_and_reload(source, SDXL_G_PREFIX, tmp_path_factory.mktemp("g") / "te.safetensors")
    ours = ours_from(checkpoint, SDXL_G_PREFIX)
    hf = transformers.CLIPTextModelWithProjection(hf_config(TINY_G, TINY_G.layers, projection=True)).eval()
    hf.load_state_dict(diffusers_convert(checkpoint, SDXL_G_PREFIX, hf), strict=True)
    return ours, hf


def prompt_rows(batch: int, seed: int, pad: int = 0) -> torch.Tensor:
    """Rows laid out like encoder input: BOS, random ids of random length, EOS, then `pad`."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.full((batch, 77), pad, dtype=torch.long)
    for b in range(batch):
        n = int(torch.randint(1, 76, (), generator=g))
        rows[b, 0] = BOS
        rows[b, 1 : n + 1] = torch.randint(1, 49406, (n,), generator=g)
        rows[b, n + 1] = EOS
    return rows


def assert_close(a: torch.Tensor, b: torch.Tensor, what: str) -> float:
    assert a.shape == b.shape, what
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert scale > 0.5, f"{what}: reference too small for a meaningful comparison"
    assert err <= REL_TOL * scale, f"{what}: max|Δ| {err:.3g} > {REL_TOL} * {scale:.3g}"
    return err / scale


def test_sd2_penultimate_matches_diffusers_23_block_model(sd2_pair):
    ours, hf = sd2_pair
    assert ours.config == TINY_SD2
    for tokens in (prompt_rows(3, seed=1), torch.randint(0, 49408, (2, 77), generator=torch.Generator().manual_seed(2)),
                   prompt_rows(2, seed=3)[:, :30]):
        with torch.no_grad():
            assert_close(ours(tokens, clip_skip=2), hf(input_ids=tokens).last_hidden_state, "SD2 penultimate")


def test_sdxl_hidden_states_and_pooled_match_diffusers(g_pair):
    ours, hf = g_pair
    assert ours.config == TINY_G
    tokens = prompt_rows(3, seed=4)
    with torch.no_grad():
        out = hf(input_ids=tokens, output_hidden_states=True)
        assert len(out.hidden_states) == TINY_G.layers + 1
        for n in range(1, TINY_G.layers + 2):
            assert_close(ours(tokens, clip_skip=n, final_norm=False), out.hidden_states[-n], f"hidden_states[-{n}]")
        assert_close(ours(tokens), out.last_hidden_state, "last_hidden_state")
        penultimate, pooled = ours.forward_penultimate_pooled(tokens)
        assert_close(penultimate, out.hidden_states[-2], "penultimate")
        assert_close(pooled, out.text_embeds, "pooled")
        assert pooled.shape == (3, TINY_G.projection_dim)
        embeds = ours.token_embedding(tokens)
        p2, q2 = ours.forward_penultimate_pooled(tokens, embeds)
        assert torch.equal(p2, penultimate) and torch.equal(q2, pooled)


def test_pooled_reads_the_end_token_position(g_pair):
    """The pooled vector follows the end token, not the last position: moving EOS moves it."""
    ours, hf = g_pair
    tokens = prompt_rows(1, seed=5)
    shifted = tokens.clone()
    end = int((tokens[0] == EOS).nonzero())
    shifted[0, end], shifted[0, end + 1] = 0, EOS
    with torch.no_grad():
        a = ours.forward_penultimate_pooled(tokens)[1]
        b = ours.forward_penultimate_pooled(shifted)[1]
        assert_close(b, hf(input_ids=shifted).text_embeds, "pooled after shift")
    assert (a - b).abs().max() > 1e-2


def test_swapped_query_key_is_detected(g_pair, sd2_pair):
    """Negative control: swapping the q and k rows of one fused in_proj is far outside the tolerance."""
    for (ours, hf), block in ((g_pair, 1), (sd2_pair, 5)):
        sd = {k: v.clone() for k, v in ours.state_dict().items()}
        w = ours.config.width
        for kind in ("weight", "bias"):
            t = sd[f"transformer.resblocks.{block}.attn.in_proj_{kind}"]
            q = t[:w].clone()
            t[:w], t[w : 2 * w] = t[w : 2 * w], q
        broken = OpenCLIPTextTransformer(ours.config).eval()
        broken.load_state_dict(sd, strict=True)
        tokens = prompt_rows(2, seed=6)
        with torch.no_grad():
            expected = hf(input_ids=tokens, output_hidden_states=True).hidden_states[-2]
            err = (broken(tokens, clip_skip=2, final_norm=False) - expected).abs().max().item()
        assert err > 1000 * REL_TOL * expected.abs().max().item()


def test_quick_gelu_would_be_detected(g_pair):
    """OpenCLIP's towers use exact GELU; CLIP's quick-GELU in the MLP is outside the tolerance."""
    ours, hf = g_pair
    tokens = prompt_rows(2, seed=7)
    with torch.no_grad():
        expected = hf(input_ids=tokens).last_hidden_state
        original = OpenCLIPMLP.forward
        try:
            OpenCLIPMLP.forward = lambda self, x: self.c_proj((h := self.c_fc(x)) * torch.sigmoid(1.702 * h))
            err = (ours(tokens) - expected).abs().max().item()
        finally:
            OpenCLIPMLP.forward = original
    assert err > 100 * REL_TOL * expected.abs().max().item()


def test_materialised_from_meta_device(g_pair):
    ours, _ = g_pair
    with torch.device("meta"):
        model = OpenCLIPTextTransformer(ours.config)
    model = model.to_empty(device="cpu").eval()
    model.load_state_dict(ours.state_dict(), strict=True)
    tokens = prompt_rows(2, seed=8)
    with torch.no_grad():
        assert torch.equal(model(tokens), ours(tokens))


def read_manifest(name: str) -> dict[str, tuple[int, ...]]:
    manifest = {}
    for line in (DATA / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, shape = line.split(" ")
            inner = shape.strip("[]")
            manifest[key] = tuple(int(s) for s in inner.split(",")) if inner else ()
    return manifest


@pytest.mark.parametrize(
    "cfg,prefix,manifest,n_params,hf_layers,projection",
    [
        # ViT-H/14 text tower: 24 blocks x 12 tensors + 5 = 293 parameter tensors + logit_scale
        (VIT_H_14, SD2_PREFIX, "sd2_openclip_keys.txt", 354_032_640, 23, False),
        # ViT-bigG/14 text tower: 32 blocks x 12 tensors + 5 = 389 parameter tensors + logit_scale
        (VIT_BIGG_14, SDXL_G_PREFIX, "sdxl_openclip_g_keys.txt", 694_659_840, 32, True),
    ],
)
def test_full_size_keys_shapes_and_diffusers_conversion(cfg, prefix, manifest, n_params, hf_layers, projection):
    with torch.device("meta"):
        model = OpenCLIPTextTransformer(cfg)
        cls = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
        reference = cls(hf_config(cfg, hf_layers, projection))
    sd = model.state_dict()
    assert len(sd) == 12 * cfg.layers + 5
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert OpenCLIPTextConfig.from_state_dict(sd) == cfg
    assert cfg.heads == {1024: 16, 1280: 20}[cfg.width]

    expected = read_manifest(manifest)
    assert expected.pop(prefix + "logit_scale") == ()
    assert expected == {prefix + k: tuple(v.shape) for k, v in sd.items()}

    # diffusers' converter maps the full key set onto transformers' model, shape for shape (SD 2.x: minus the
    # unused last block and text_projection).
    checkpoint = {prefix + k: v for k, v in sd.items()}
    checkpoint[prefix + "logit_scale"] = torch.empty((), device="meta")
    converted = diffusers_convert(checkpoint, prefix, reference)
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_sdxl_clip_l_manifest_is_sd1_clip_under_the_sdxl_prefix():
    sd1 = read_manifest("sd15_clip_keys.txt")
    sdxl = read_manifest("sdxl_clip_l_keys.txt")
    old, new = "cond_stage_model.transformer.", "conditioner.embedders.0.transformer."
    assert len(sdxl) == 197 and sdxl == {new + k.removeprefix(old): v for k, v in sd1.items()}


def test_split_state_dict_and_config_errors():
    model = OpenCLIPTextTransformer(OpenCLIPTextConfig(vocab_size=300, max_positions=40, width=128, layers=2,
                                                       mlp_dim=100, projection_dim=None))
    sd = model.state_dict()
    assert "text_projection" not in sd and model.text_projection is None
    assert OpenCLIPTextConfig.from_state_dict(sd).projection_dim is None
    checkpoint = {"x." + k: v for k, v in sd.items()} | {"x.logit_scale": torch.tensor(1.0), "y.other": torch.ones(1)}
    assert split_state_dict(checkpoint, "x.").keys() == sd.keys()
    with pytest.raises(KeyError, match="no OpenCLIP text-tower keys under 'z.'"):
        split_state_dict(checkpoint, "z.")
    with pytest.raises(ValueError, match="drop 'logit_scale' first"):
        OpenCLIPTextConfig.from_state_dict({**sd, "logit_scale": torch.tensor(1.0)})
    with pytest.raises(KeyError, match="missing key 'token_embedding.weight'"):
        OpenCLIPTextConfig.from_state_dict({"model." + k: v for k, v in sd.items()})
    with pytest.raises(ValueError, match=r"indices are \[1\]"):
        OpenCLIPTextConfig.from_state_dict({k: v for k, v in sd.items() if not k.startswith("transformer.resblocks.0.")})
    with pytest.raises(ValueError, match="multiple of the head dim 64"):
        OpenCLIPTextConfig(width=100)
    with pytest.raises(ValueError, match="projection_dim must be >= 1 or None"):
        OpenCLIPTextConfig(projection_dim=0)
    with pytest.raises(ValueError, match="no text_projection"):
        model.forward_penultimate_pooled(torch.zeros(1, 4, dtype=torch.long))


def test_bad_inputs_are_named():
    model = OpenCLIPTextTransformer(OpenCLIPTextConfig(vocab_size=1000, width=128, layers=3, mlp_dim=256,
                                                       projection_dim=64))
    with pytest.raises(ValueError, match=r"clip_skip must be an int in 1\.\.4"):
        model(torch.zeros(1, 4, dtype=torch.long), clip_skip=5)
    with pytest.raises(ValueError, match="integer ids"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"sequence length must be 1\.\.77"):
        model(torch.zeros(1, 78, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in 0\.\.999"):
        model(torch.tensor([[1, 1000]]))
    with pytest.raises(ValueError, match="give tokens or inputs_embeds"):
        model(None)
    with pytest.raises(ValueError, match=r"inputs_embeds must be \[B,L,128\]"):
        model(None, inputs_embeds=torch.zeros(1, 4, 64))
    with pytest.raises(ValueError, match="does not match inputs_embeds"):
        model(torch.zeros(1, 5, dtype=torch.long), inputs_embeds=torch.zeros(1, 4, 128))
    with pytest.raises(ValueError, match="needs the token ids"):
        model.forward_penultimate_pooled(None, torch.zeros(1, 4, 128))
    with pytest.raises(ValueError, match="unknown kernel backend"):
        OpenCLIPTextTransformer(TINY_G, kernels="fast")


def test_construct_and_repr_every_module():
    model = OpenCLIPTextTransformer(OpenCLIPTextConfig(vocab_size=100, width=128, layers=1, mlp_dim=64))
    text = repr(model)
    for cls in (OpenCLIPTextTransformer, OpenCLIPTransformer, ResidualAttentionBlock, OpenCLIPAttention, OpenCLIPMLP):
        assert cls.__name__ in text
        assert any(type(m) is cls for m in model.modules())
    assert "heads=2" in text and "kernels='torch'" in text
    assert all(m.eps == 1e-5 for m in model.modules() if isinstance(m, nn.LayerNorm))
