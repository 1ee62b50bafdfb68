"""SD 2.x and SDXL LoRA files against diffusers' own kohya loaders (PEFT adapters on diffusers' UNet and on
transformers' CLIP text models converted from the same random checkpoints by diffusers' single-file converters).

SD 2.x: kohya names the UNet in diffusers' spelling (A1111's SD1 table applies: SD2 keeps SD1's block layout) and the
OpenCLIP-H text encoder in transformers' (`lora_te_text_model_encoder_layers_N_self_attn_q_proj`), which A1111 maps to
OpenCLIP's fused attention (`model_transformer_resblocks_N_attn`: q, k, v stacked into in_proj_weight) and MLP.
SDXL: kohya names the UNet in sgm's own spelling (`lora_unet_input_blocks_4_1_…`), CLIP-L `lora_te1_…` and
OpenCLIP-bigG `lora_te2_…`. Every Linear and Conv2d of the blocks and every encoder-layer projection gets a random
LoRA (3x3 LoCon on convolutions), rank 4, alpha 3. Our merged weights and diffusers' unmerged adapters must agree to
fp32 rounding. Measured max|Δ| / max|ref|: SD2 UNet 3.1e-6, SD2 text encoder 1.4e-6, SDXL UNet 7.4e-6, CLIP-L 1.9e-6,
bigG 1.1e-6 (pooled 1.2e-6); tolerance 2e-5 (merged W + ΔW rounds differently from W·x + B(A·x), and the SDXL UNet
stacks the most layers).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "unet"))
sys.path.insert(0, str(Path(__file__).parents[1] / "clip"))
from sd2_sdxl_helpers import diffusers_convert  # noqa: E402
from unet_helpers import PREFIX  # noqa: E402

from inpaintlab.clip.model import CLIPTextConfig, CLIPTextTransformer  # noqa: E402
from inpaintlab.clip.openclip import SD2_PREFIX, SDXL_G_PREFIX, OpenCLIPTextConfig, OpenCLIPTextTransformer  # noqa: E402
from inpaintlab.networks import ActiveNetwork, NetworkError, NetworkMerger  # noqa: E402
from inpaintlab.tiny import reinit_  # noqa: E402
from inpaintlab.unet import UNetConfig, UNetModel  # noqa: E402

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
sfu = pytest.importorskip("diffusers.loaders.single_file_utils")
from safetensors.torch import save_file  # noqa: E402

REL_TOL = 2e-5
TE, UNET = 0.7, 1.3
RANK, ALPHA = 4, 3.0

# SD2: SD1's block layout (two res blocks per level, so A1111's diffusers-name table applies), Linear projections,
# 64-wide heads, context 1024. SDXL: no attention at level 0, depths 1 and 2 below, ADM input.
SD2_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(2, 1),
                      num_head_channels=64, use_linear_in_transformer=True, context_dim=1024)
SDXL_UNET = UNetConfig(model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2, attention_resolutions=(4, 2),
                       num_head_channels=64, use_linear_in_transformer=True, transformer_depth=(0, 1, 2),
                       context_dim=1280, adm_in_channels=64 + 1536)
SD2_TE = OpenCLIPTextConfig(width=64, layers=24, mlp_dim=256, projection_dim=64)  # 24 blocks: diffusers drops #23
G_TE = OpenCLIPTextConfig(width=128, layers=3, mlp_dim=512, projection_dim=96)
L_TE = CLIPTextConfig(vocab_size=49408, max_positions=77, width=128, layers=2, mlp_dim=256)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # tiny tensors on a shared machine: a second OpenMP thread only waits (as in the UNet tests)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _lora_for(name: str, mod: torch.nn.Module, key: str, g: torch.Generator, sd: dict) -> None:
    if isinstance(mod, torch.nn.Linear):
        down = torch.randn(RANK, mod.in_features, generator=g) / mod.in_features ** 0.5
        up = torch.randn(mod.out_features, RANK, generator=g)
    else:
        down = torch.randn(RANK, mod.in_channels, *mod.kernel_size, generator=g) / mod.weight[0].numel() ** 0.5
        up = torch.randn(mod.out_channels, RANK, 1, 1, generator=g)
    sd[key + ".lora_down.weight"] = down
    sd[key + ".lora_up.weight"] = up * 0.3
    sd[key + ".alpha"] = torch.tensor(ALPHA)


def _random_lora(modules, prefix: str, g: torch.Generator, sd: dict, keep=lambda name: True) -> None:
    for name, mod in modules:
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and keep(name):
            _lora_for(name, mod, prefix + name.replace(".", "_"), g, sd)


def _diffusers_unet(unet: UNetModel):
    dconfig, converted = diffusers_convert({PREFIX + k: v for k, v in unet.state_dict().items()}, unet.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def _openclip_pair(cfg: OpenCLIPTextConfig, prefix: str, seed: int, hf_cls, hf_layers: int):
    ours = reinit_(OpenCLIPTextTransformer(cfg), seed=seed).eval().requires_grad_(False)
    checkpoint = {prefix + k: v.clone() for k, v in ours.state_dict().items()}
    hf_config = transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=hf_layers,
        num_attention_heads=cfg.heads, max_position_embeddings=cfg.max_positions, hidden_act="gelu",
        layer_norm_eps=1e-5, projection_dim=cfg.projection_dim, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    hf_config._attn_implementation = "eager"
    hf = hf_cls(hf_config).eval()
    converted = sfu.convert_open_clip_checkpoint(hf, checkpoint, prefix=prefix)
    if not hasattr(hf, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
    hf.load_state_dict(converted, strict=True)
    return ours, hf


def _hf_layers(hf):
    """Encoder-layer modules named from `text_model.` (kohya's spelling), flattened transformers models or not."""
    for n, m in hf.named_modules():
        n = n.removeprefix("text_model.")
        if n.startswith("encoder.layers."):
            yield f"text_model.{n}", m


def _load_into_diffusers(loader, path, unet_ref, encoders):
    from diffusers.utils.peft_utils import scale_lora_layers

    kwargs = {"unet_config": unet_ref.config} if "XL" in loader.__name__ else {}
    state, alphas = loader.lora_state_dict(str(path), **kwargs)
    loader.load_lora_into_unet(state, alphas, unet=unet_ref)
    scale_lora_layers(unet_ref, UNET)
    for prefix, model in encoders:
        loader.load_lora_into_text_encoder(state, alphas, text_encoder=model, prefix=prefix)
        scale_lora_layers(model, TE)


def _close(ours: torch.Tensor, theirs: torch.Tensor, base: torch.Tensor | None, what: str) -> float:
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert scale > 0.1, f"{what}: degenerate reference"
    if base is not None:
        assert (base - theirs).abs().max().item() > 0.05 * scale, f"{what}: the LoRA must change the output visibly"
    assert err <= REL_TOL * scale, f"{what}: max|Δ| {err:.3g} > {REL_TOL} × {scale:.3g}"
    print(f"{what}: max|Δ| / max|ref| {err / scale:.2g}")
    return err / scale


def _tokens(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 49406, (2, 77), generator=g)
    ids[:, 0], ids[:, 40] = 49406, 49407
    return ids


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    unet = reinit_(UNetModel(SD2_UNET), seed=4).eval().requires_grad_(False)
    ref_unet = _diffusers_unet(unet)
    te, ref_te = _openclip_pair(SD2_TE, SD2_PREFIX, 21, transformers.CLIPTextModel, 23)
    g = torch.Generator().manual_seed(12)
    sd: dict = {}
    _random_lora(ref_unet.named_modules(), "lora_unet_", g, sd)
    _random_lora(_hf_layers(ref_te), "lora_te_", g, sd)
    path = tmp_path_factory.mktemp("lora-sd2") / "sd2_lora.safetensors"
    save_file(sd, str(path), metadata={"ss_base_model_version": "sd_v2", "ss_v2": "True"})
    base = {"unet": reinit_(UNetModel(SD2_UNET), seed=4).eval(), "te": _openclip_pair(SD2_TE, SD2_PREFIX, 21,
                                                                                       transformers.CLIPTextModel, 23)[0]}
    merger = NetworkMerger(unet, te, family="sd2")
    merger.apply([ActiveNetwork(path, TE, UNET)])
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    _load_into_diffusers(StableDiffusionLoraLoaderMixin, path, ref_unet, [("text_encoder", ref_te)])
    return dict(unet=unet, ref_unet=ref_unet, te=te, ref_te=ref_te, base=base, merger=merger, path=path, sd=sd)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    unet = reinit_(UNetModel(SDXL_UNET), seed=5).eval().requires_grad_(False)
    ref_unet = _diffusers_unet(unet)
    te1 = reinit_(CLIPTextTransformer(L_TE), seed=6).eval().requires_grad_(False)
    hf_l = transformers.CLIPTextConfig(
        vocab_size=L_TE.vocab_size, hidden_size=L_TE.width, intermediate_size=L_TE.mlp_dim,
        num_hidden_layers=L_TE.layers, num_attention_heads=L_TE.heads, max_position_embeddings=77,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    hf_l._attn_implementation = "eager"
    ref_te1 = transformers.CLIPTextModel(hf_l).eval()
    ref_te1.load_state_dict(te1.state_dict(), strict=True)
    te2, ref_te2 = _openclip_pair(G_TE, SDXL_G_PREFIX, 22, transformers.CLIPTextModelWithProjection, G_TE.layers)
    g = torch.Generator().manual_seed(13)
    sd: dict = {}
    # kohya's SDXL files name the UNet by sgm's module paths (ours), the encoders in transformers' spelling
    _random_lora(unet.named_modules(), "lora_unet_", g, sd,
                 keep=lambda n: n.startswith(("input_blocks.", "middle_block.", "output_blocks.")))
    _random_lora(_hf_layers(ref_te1), "lora_te1_", g, sd)
    _random_lora(_hf_layers(ref_te2), "lora_te2_", g, sd)
    path = tmp_path_factory.mktemp("lora-sdxl") / "sdxl_lora.safetensors"
    save_file(sd, str(path), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    base_unet = reinit_(UNetModel(SDXL_UNET), seed=5).eval()
    base_te2 = _openclip_pair(G_TE, SDXL_G_PREFIX, 22, transformers.CLIPTextModelWithProjection, G_TE.layers)[0]
    merger = NetworkMerger(unet, te1, text_encoder_2=te2, family="sdxl")
    merger.apply([ActiveNetwork(path, TE, UNET)])
    from diffusers.loaders import StableDiffusionXLLoraLoaderMixin
    _load_into_diffusers(StableDiffusionXLLoraLoaderMixin, path, ref_unet,
                         [("text_encoder", ref_te1), ("text_encoder_2", ref_te2)])
    return dict(unet=unet, ref_unet=ref_unet, te1=te1, ref_te1=ref_te1, te2=te2, ref_te2=ref_te2, merger=merger,
                path=path, sd=sd, base_unet=base_unet, base_te2=base_te2)


def _n_modules(sd: dict) -> int:
    return sum(k.endswith(".lora_down.weight") for k in sd)


def test_sd2_every_key_is_used_and_attention_is_fused(sd2):
    (prepared,) = [sd2["merger"].prepare(sd2["path"])]
    fused = [u for u in prepared.modules if not isinstance(u, tuple)]
    assert len(fused) == 23 * 1  # one q/k/v group per encoder layer of the 23 the file covers
    assert sum(3 if not isinstance(u, tuple) else 1 for u in prepared.modules) == _n_modules(sd2["sd"])


def test_sd2_unet_matches_diffusers(sd2):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 8, generator=g)
    t = torch.tensor([901.0])
    context = torch.randn(1, 8, 1024, generator=g)
    with torch.inference_mode():
        _close(sd2["unet"](x, t, context), sd2["ref_unet"](x, t, encoder_hidden_states=context).sample,
               sd2["base"]["unet"](x, t, context), "SD2 UNet")


def test_sd2_text_encoder_matches_diffusers(sd2):
    tokens = _tokens(6)
    with torch.inference_mode():
        _close(sd2["te"](tokens, clip_skip=2), sd2["ref_te"](input_ids=tokens).last_hidden_state,
               sd2["base"]["te"](tokens, clip_skip=2), "SD2 penultimate")


def test_sdxl_unet_matches_diffusers(sdxl):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 8, 8, generator=g)
    t = torch.tensor([33.5])
    context = torch.randn(1, 8, 1280, generator=g)
    pooled = torch.randn(1, 64, generator=g)
    time_ids = torch.tensor([[128.0, 128, 0, 0, 128, 128]])
    from inpaintlab.unet import sdxl_adm_vector

    y = sdxl_adm_vector(pooled, (128, 128), (0, 0), (128, 128))
    with torch.inference_mode():
        theirs = sdxl["ref_unet"](x, t, encoder_hidden_states=context,
                                  added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        _close(sdxl["unet"](x, t, context, y), theirs, sdxl["base_unet"](x, t, context, y), "SDXL UNet")


def test_sdxl_text_encoders_match_diffusers(sdxl):
    tokens = _tokens(8)
    with torch.inference_mode():
        _close(sdxl["te1"](tokens), sdxl["ref_te1"](input_ids=tokens).last_hidden_state, None, "SDXL CLIP-L")
        out = sdxl["ref_te2"](input_ids=tokens, output_hidden_states=True)
        ours, pooled = sdxl["te2"].forward_penultimate_pooled(tokens)
        base, _ = sdxl["base_te2"].forward_penultimate_pooled(tokens)
        _close(ours, out.hidden_states[-2], base, "SDXL bigG penultimate")
        _close(pooled, out.text_embeds, None, "SDXL bigG pooled")
    (prepared,) = [sdxl["merger"].prepare(sdxl["path"])]
    assert sum(3 if not isinstance(u, tuple) else 1 for u in prepared.modules) == _n_modules(sdxl["sd"])


def test_clear_restores_fused_attention_bit_for_bit(sdxl):
    merger, te2 = sdxl["merger"], sdxl["te2"]
    before = te2.transformer.resblocks[0].attn.in_proj_weight.clone()
    base = sdxl["base_te2"].transformer.resblocks[0].attn.in_proj_weight
    assert not torch.equal(before, base)
    merger.clear()
    assert torch.equal(te2.transformer.resblocks[0].attn.in_proj_weight, base)
    merger.apply([ActiveNetwork(sdxl["path"], TE, UNET)])
    assert torch.equal(te2.transformer.resblocks[0].attn.in_proj_weight, before)


def test_errors_name_the_loaded_family(sdxl, sd2, tmp_path):
    # An SDXL file on SD 2.x, an SD 2.x file on SDXL: named by metadata, with the model's family.
    with pytest.raises(NetworkError, match=r"a network for SDXL .*this model is Stable Diffusion 2\.x"):
        NetworkMerger(sd2["unet"], sd2["te"], family="sd2").prepare(sdxl["path"])
    with pytest.raises(NetworkError, match=r"a network for Stable Diffusion 2\.x .*this model is SDXL"):
        NetworkMerger(sdxl["unet"], sdxl["te1"], text_encoder_2=sdxl["te2"], family="sdxl").prepare(sd2["path"])
    # An SD1 file without metadata on SDXL: its keys match nothing, and the message says of which model.
    sd1 = {"lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 128),
           "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(256, 2)}
    save_file(sd1, str(tmp_path / "sd1.safetensors"))
    with pytest.raises(NetworkError, match=r"match no module of this SDXL model"):
        NetworkMerger(sdxl["unet"], sdxl["te1"], text_encoder_2=sdxl["te2"], family="sdxl").prepare(
            tmp_path / "sd1.safetensors")
    # A fused attention with only some of q/k/v/out: A1111 changes nothing there; refused, naming what is missing.
    part = {k: v for k, v in sdxl["sd"].items() if "lora_te2_text_model_encoder_layers_0_self_attn_v_proj" not in k}
    save_file(part, str(tmp_path / "part.safetensors"), metadata={"ss_base_model_version": "sdxl_base_v1-0"})
    with pytest.raises(NetworkError, match=r"1_model_transformer_resblocks_0_attn_v_proj"):
        NetworkMerger(sdxl["unet"], sdxl["te1"], text_encoder_2=sdxl["te2"], family="sdxl").prepare(
            tmp_path / "part.safetensors")
