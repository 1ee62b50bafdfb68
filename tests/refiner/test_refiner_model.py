"""The SDXL refiner family against diffusers' refiner (StableDiffusionXLImg2ImgPipeline with
`requires_aesthetics_score`, UNet2DConditionModel through diffusers' own single-file converter, transformers'
CLIPTextModelWithProjection through diffusers' OpenCLIP converter), on a tiny random refiner in the real file layout:
text embedding, pooled embedding, add_time_ids / the ADM vector, and the UNet output. Full-size layout on `meta`.

Tolerance: max|diff| <= 1e-5 * max|reference| (fp32; measured on this CPU: crossattn 3.6e-7, pooled 5.5e-7, the size and
aesthetic embedding 0 (bit-identical), UNet 1.7e-6, all relative).
"""
from __future__ import annotations

import gzip

import pytest
import torch
from safetensors.torch import load_file

import inpaintlab
from inpaintlab.checkpoint import SDXL_REFINER_CLIP_G_PREFIX, UNET_PREFIX, detect_family
from inpaintlab.clip.tokenizer import VOCAB_FILE, byte_symbols
from inpaintlab.refiner.conditioning import refiner_adm_vector
from inpaintlab.refiner.tiny import TINY_REFINER_UNET, make_tiny_refiner
from inpaintlab.unet import UNetConfig, UNetModel

transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")
single_file_utils = pytest.importorskip("diffusers.loaders.single_file_utils")

REL_TOL = 1e-5
# sd_xl_refiner.yaml's UNet
REFINER_UNET = UNetConfig(model_channels=384, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_resolutions=(4, 2),
                          transformer_depth=4, num_head_channels=64, use_linear_in_transformer=True, context_dim=1280,
                          adm_in_channels=2560)


def close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> float:
    assert ours.shape == theirs.shape, (what, tuple(ours.shape), tuple(theirs.shape))
    scale = theirs.abs().max().item()
    assert scale > 0.1, f"{what}: degenerate reference"
    err = (ours.double() - theirs.double()).abs().max().item()
    assert err <= REL_TOL * scale, f"{what}: max|diff| {err:.3g} > {REL_TOL} * {scale:.3g}"
    return err / scale


def hf_tokenizer():
    """transformers' CLIPTokenizer as SDXL's second tokenizer (pad "!" = id 0, 77 positions)."""
    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1: 1 + 48894]]
    symbols = list(byte_symbols())
    order = sorted(s for s in symbols if ord(s) < 256) + sorted(s for s in symbols if ord(s) >= 256)
    strings = order + [s + "</w>" for s in order] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return transformers.CLIPTokenizer(vocab={s: i for i, s in enumerate(strings)}, merges=merges, pad_token="!",
                                      model_max_length=77)


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    """(our Pipeline, diffusers' refiner pipeline) from one tiny refiner file."""
    path = make_tiny_refiner(tmp_path_factory.mktemp("refiner") / "tiny-sdxl-refiner.safetensors")
    ours = inpaintlab.load(path, kernels="torch")
    checkpoint = load_file(str(path))
    cfg = ours.unet.config
    dconfig = single_file_utils.create_unet_diffusers_config_from_ldm(_original_config(cfg), checkpoint)
    # diffusers recognises SDXL's ADM input by the context width (2048 / 1280); the tiny one is narrower, so say it.
    dconfig |= {"addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                "projection_class_embeddings_input_dim": cfg.adm_in_channels, "class_embed_type": None,
                "num_class_embeds": None}
    unet = diffusers.UNet2DConditionModel(**dconfig)
    unet.load_state_dict(single_file_utils.convert_ldm_unet_checkpoint(checkpoint, dconfig), strict=True)
    g = ours.text_encoder.config
    hf_config = transformers.CLIPTextConfig(
        vocab_size=g.vocab_size, hidden_size=g.width, intermediate_size=g.mlp_dim, num_hidden_layers=g.layers,
        num_attention_heads=g.width // 64, max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5,
        projection_dim=g.projection_dim, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    hf_config._attn_implementation = "eager"
    text = transformers.CLIPTextModelWithProjection(hf_config).eval()
    text.load_state_dict(single_file_utils.convert_open_clip_checkpoint(text, checkpoint,
                                                                        prefix=SDXL_REFINER_CLIP_G_PREFIX), strict=True)
    pipe = diffusers.StableDiffusionXLImg2ImgPipeline(
        vae=diffusers.AutoencoderKL(), text_encoder=None, text_encoder_2=text, tokenizer=None,
        tokenizer_2=hf_tokenizer(), unet=unet.eval(), scheduler=diffusers.EulerDiscreteScheduler(),
        requires_aesthetics_score=True)
    return ours, pipe


def _original_config(cfg: UNetConfig) -> dict:
    unet = {"in_channels": cfg.in_channels, "out_channels": cfg.out_channels, "model_channels": cfg.model_channels,
            "attention_resolutions": list(cfg.attention_resolutions), "num_res_blocks": cfg.num_res_blocks,
            "channel_mult": list(cfg.channel_mult), "num_head_channels": cfg.num_head_channels,
            "use_linear_in_transformer": True, "use_spatial_transformer": True, "transformer_depth": cfg.transformer_depth,
            "context_dim": cfg.context_dim, "use_checkpoint": True, "legacy": False, "num_classes": "sequential",
            "adm_in_channels": cfg.adm_in_channels}
    vae = {"embed_dim": 4, "ddconfig": {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3,
                                        "out_ch": 3, "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2,
                                        "attn_resolutions": [], "dropout": 0.0}}
    return {"model": {"params": {"unet_config": {"params": unet}, "first_stage_config": {"params": vae}}}}


def test_tiny_refiner_file_is_the_refiner_layout(tmp_path):
    path = make_tiny_refiner(tmp_path / "r.safetensors")
    sd = load_file(str(path))
    assert detect_family(sd) == "sdxl_refiner"
    assert not any(k.startswith("conditioner.embedders.1.") for k in sd)
    assert sd[UNET_PREFIX + "label_emb.0.0.weight"].shape[1] == TINY_REFINER_UNET.adm_in_channels
    pipe = inpaintlab.load(path, kernels="torch")
    assert (pipe.config.family, pipe.config.scale_factor, pipe.text_encoder_2) == ("sdxl_refiner", 0.13025, None)
    assert pipe.unet.config == TINY_REFINER_UNET  # inferred from the weights alone


@pytest.mark.parametrize("prompt, negative", [("a red door, old", ""), ("a cat on a sofa", "blurry, low quality")])
def test_conditioning_and_unet_against_diffusers_refiner(refiner, prompt, negative):
    ours, pipe = refiner
    width, height = 128, 64  # latents divisible by the 3 downsamplings (other sizes resize at the skips)
    with torch.inference_mode():
        cond = ours.encode_prompts([prompt], size=(width, height))
        uncond = ours.encode_prompts([negative], negative=True, size=(width, height))
        emb, neg_emb, pooled, neg_pooled = pipe.encode_prompt(prompt, device="cpu", negative_prompt=negative or None)
    close(cond["crossattn"], emb, "crossattn")  # weights 1: A1111's emphasis is exact (its mean ratio is 1)
    close(cond["vector"][:, :pooled.shape[1]], pooled, "pooled")
    if negative:
        close(uncond["crossattn"], neg_emb, "negative crossattn")
        close(uncond["vector"][:, :pooled.shape[1]], neg_pooled, "negative pooled")
    else:  # A1111 and diffusers both zero an empty negative prompt (force_zero_embeddings)
        assert not uncond["crossattn"].any() and not uncond["vector"][:, :pooled.shape[1]].any()
        assert not neg_emb.any() and not neg_pooled.any()
    add, add_neg = pipe._get_add_time_ids((height, width), (0, 0), (height, width), 6.0, 2.5, (height, width),
                                          (0, 0), (height, width), torch.float32, pooled.shape[1])
    assert add.tolist() == [[height, width, 0, 0, 6.0]] and add_neg.tolist() == [[height, width, 0, 0, 2.5]]
    for ours_vector, ids in ((cond["vector"], add), (uncond["vector"], add_neg)):
        proj = pipe.unet.add_time_proj(ids.flatten()).reshape(1, -1)  # diffusers' own time embedding of the ids
        close(ours_vector[:, pooled.shape[1]:], proj, "size and aesthetic embedding")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, height // 8, width // 8, generator=g)
    t = torch.tensor([981.0, 142.5])
    context = torch.cat([cond["crossattn"], cond["crossattn"]])
    with torch.inference_mode():
        ours_out = ours.unet(x, t, context, torch.cat([cond["vector"], uncond["vector"]]))
        theirs = pipe.unet(x, t, encoder_hidden_states=context, added_cond_kwargs={
            "text_embeds": torch.cat([pooled, neg_pooled]), "time_ids": torch.cat([add, add_neg])}).sample
    close(ours_out, theirs, "UNet")
    # Negative control: the low aesthetic score in place of the high one moves the output far outside the tolerance.
    swapped = refiner_adm_vector(cond["vector"][:, :pooled.shape[1]], (height, width), (0, 0), 2.5)
    with torch.inference_mode():
        moved = ours.unet(x[:1], t[:1], context[:1], swapped)
    assert (moved - theirs[:1]).abs().max() > 100 * REL_TOL * theirs.abs().max()


def test_full_size_refiner_unet_matches_diffusers_refiner_layout():
    """sd_xl_refiner.yaml's UNet on the meta device: our keys map one to one onto diffusers' refiner UNet (its published
    config) through diffusers' converter, with the same shapes, and the config is inferred back from the shapes."""
    with torch.device("meta"):
        sd = UNetModel(REFINER_UNET).state_dict()
        theirs = diffusers.UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4, block_out_channels=(384, 768, 1536, 1536),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(6, 12, 24, 24), transformer_layers_per_block=4, cross_attention_dim=1280,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2560).state_dict()
    assert sd["label_emb.0.0.weight"].shape == (1536, 2560)
    assert UNetConfig.from_state_dict(sd) == REFINER_UNET
    checkpoint = {UNET_PREFIX + k: torch.empty(v.shape, device="meta") for k, v in sd.items()}
    dconfig = single_file_utils.create_unet_diffusers_config_from_ldm(_original_config(REFINER_UNET), checkpoint)
    converted = single_file_utils.convert_ldm_unet_checkpoint(checkpoint, dconfig)
    assert set(converted) == set(theirs)
    assert all(converted[k].shape == theirs[k].shape for k in theirs)
    assert sum(v.numel() for v in sd.values()) == sum(v.numel() for v in theirs.values())
