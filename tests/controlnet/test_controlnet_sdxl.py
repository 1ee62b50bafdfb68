"""Oracle parity for SDXL ControlNets: ours against diffusers.ControlNetModel (SDXL "text_time" config, tiny widths)
on random weights, for a file in the original sgm layout (converted for diffusers by diffusers' own single-file
converter) and for a file in diffusers' own layout (diffusers' state dict as saved, read by our loader); then our SDXL
UNet with the residuals against diffusers' UNet with down/mid_block_additional_residual. Full-size SDXL on `meta`:
keys and shapes of diffusers' ControlNetModel renamed by our table equal ours.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from inpaintlab.controlnet import ControlNet, ControlNetConfig, load_controlnet
from inpaintlab.controlnet.diffusers_layout import to_original
from inpaintlab.tiny import reinit_
from inpaintlab.unet import SDXL_UNET, UNetConfig, UNetModel, sdxl_adm_vector

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unet"))
from sd2_sdxl_helpers import diffusers_convert  # noqa: E402

safetensors_torch = pytest.importorskip("safetensors.torch")
diffusers = pytest.importorskip("diffusers")
sfu = pytest.importorskip("diffusers.loaders.single_file_utils")

PREFIX = "control_model."
# fp32, the same arithmetic in another order. Measured on this CPU: residuals max|diff| / max|residual| 0 to 2e-7 in
# both layouts; the UNet's eps with the residuals 0 (bit-identical).
REL_TOL = 1e-5
# SDXL's shape at small width: 3 levels, two res blocks each (10 residuals, as SDXL), no attention at level 0, depths
# 1 and 2 below (SDXL 2 and 10), 64-channel heads; context 1280 so diffusers' UNet converter sees SDXL's text_time.
TINY_XL = UNetConfig(in_channels=4, model_channels=64, channel_mult=(1, 2, 2), num_res_blocks=2,
                     attention_resolutions=(4, 2), num_head_channels=64, use_linear_in_transformer=True,
                     transformer_depth=(0, 1, 2), context_dim=1280, adm_in_channels=64 + 1536)
SIZES = ((1024, 768), (32, 0), (896, 640))  # original (h, w), crop (top, left), target (h, w)


def diffusers_config(cfg: UNetConfig) -> dict:
    """diffusers.ControlNetModel's config for an SDXL-style UNet encoder (as controlnet-canny-sdxl-1.0's)."""
    levels = range(len(cfg.channel_mult))
    return dict(in_channels=cfg.in_channels, conditioning_channels=3, block_out_channels=cfg.widths,
                down_block_types=tuple("CrossAttnDownBlock2D" if cfg.has_attention(lv) else "DownBlock2D"
                                       for lv in levels),
                layers_per_block=cfg.num_res_blocks, cross_attention_dim=cfg.context_dim,
                attention_head_dim=tuple(w // cfg.num_head_channels for w in cfg.widths), use_linear_projection=True,
                transformer_layers_per_block=tuple(max(cfg.depth_at(lv), 1) for lv in levels),
                addition_embed_type="text_time", addition_time_embed_dim=256,
                projection_class_embeddings_input_dim=cfg.adm_in_channels,
                conditioning_embedding_out_channels=(16, 32, 96, 256))


def inputs(cfg: UNetConfig, seed: int = 1, hw: tuple[int, int] = (8, 16)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, *hw, generator=g)
    t = torch.tensor([999.0, 17.25])
    context = torch.randn(2, 77, cfg.context_dim, generator=g)
    pooled = torch.randn(2, cfg.adm_in_channels - 1536, generator=g)
    hint = torch.rand(1, 3, hw[0] * 8, hw[1] * 8, generator=g)
    time_ids = torch.tensor([[*SIZES[0], *SIZES[1], *SIZES[2]]] * 2, dtype=torch.float32)
    return x, t, context, hint, pooled, time_ids


def reference(ref, x, t, context, hint, pooled, time_ids):
    down, mid = ref(x, t, encoder_hidden_states=context, controlnet_cond=hint.expand(x.shape[0], -1, -1, -1),
                    conditioning_scale=1.0, added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids},
                    return_dict=False)
    return list(down) + [mid]


def compare(ours, theirs) -> float:
    assert len(ours) == len(theirs)
    worst = 0.0
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a.shape == b.shape, f"residual {i}: {tuple(a.shape)} vs {tuple(b.shape)}"
        scale = b.abs().max().item()
        assert scale > 1e-2, f"residual {i} is degenerate"
        err = (a - b).abs().max().item()
        worst = max(worst, err / scale)
        assert err <= REL_TOL * scale, f"residual {i}: max|diff| {err:.3g} vs scale {scale:.3g}"
    return worst


def original_to_diffusers(path: Path, config: dict) -> torch.nn.Module:
    """diffusers' own single-file ControlNet converter on our original-layout file. It leaves out `label_emb` for
    ControlNets, so those four keys are renamed with diffusers' own table (DIFFUSERS_TO_LDM_MAPPING)."""
    checkpoint = safetensors_torch.load_file(str(path))
    converted = sfu.convert_controlnet_checkpoint(checkpoint, config)
    for new, old in sfu.DIFFUSERS_TO_LDM_MAPPING["controlnet"]["addition_embed_type"].items():
        converted[new] = checkpoint[PREFIX + old]
    ref = diffusers.ControlNetModel(**config)
    ref.load_state_dict(converted, strict=True)
    return ref.eval()


def test_original_layout_matches_diffusers(tmp_path):
    model = reinit_(ControlNet(ControlNetConfig(unet=TINY_XL))).eval()
    path = tmp_path / "controlnet-xl.safetensors"
    safetensors_torch.save_file({PREFIX + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = load_controlnet(path, kernels="torch")
    assert loaded.config == model.config and loaded.config.family == "sdxl" and loaded.config.num_outputs == 10
    ref = original_to_diffusers(path, diffusers_config(TINY_XL))
    x, t, context, hint, pooled, time_ids = inputs(TINY_XL)
    y = sdxl_adm_vector(pooled, *SIZES)
    with torch.inference_mode():
        ours = loaded(x, hint, t, context, y)
        theirs = reference(ref, x, t, context, hint, pooled, time_ids)
        # Negative control: original and target sizes swapped in y (the ADM input) move the residuals far off.
        other = loaded(x, hint, t, context, sdxl_adm_vector(pooled, SIZES[2], SIZES[1], SIZES[0]))
    print(f"original layout: max relative residual error {compare(ours, theirs):.3g}")
    assert (other[5] - theirs[5]).abs().max().item() > 100 * REL_TOL * theirs[5].abs().max().item()


def test_diffusers_layout_matches_diffusers(tmp_path):
    """A file as diffusers saves it (`diffusion_pytorch_model.safetensors`) loads through the renaming table."""
    ref = reinit_(diffusers.ControlNetModel(**diffusers_config(TINY_XL)), seed=3).eval()
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    loaded = load_controlnet(path, kernels="torch")
    assert loaded.config.unet == TINY_XL and loaded.name == "diffusion_pytorch_model"
    x, t, context, hint, pooled, time_ids = inputs(TINY_XL, seed=2)
    with torch.inference_mode():
        ours = loaded(x, hint, t, context, sdxl_adm_vector(pooled, *SIZES))
        theirs = reference(ref, x, t, context, hint, pooled, time_ids)
    print(f"diffusers layout: max relative residual error {compare(ours, theirs):.3g}")


def test_sd1_diffusers_layout_matches_diffusers(tmp_path):
    """The same table serves SD1 ControlNets (1x1-conv projections, 8 heads, attention at the first three levels)."""
    from cn_helpers import SMALL_UNET, inputs as sd1_inputs

    config = dict(in_channels=4, conditioning_channels=3, block_out_channels=SMALL_UNET.widths, layers_per_block=2,
                  cross_attention_dim=SMALL_UNET.context_dim, attention_head_dim=8)
    ref = reinit_(diffusers.ControlNetModel(**config), seed=4).eval()
    loaded = load_controlnet(ref.state_dict(), kernels="torch")
    assert loaded.config.unet == SMALL_UNET and loaded.config.family == "sd1"
    x, t, context, hint = sd1_inputs(SMALL_UNET)
    with torch.inference_mode():
        ours = loaded(x, hint, t, context)
        down, mid = ref(x, t, encoder_hidden_states=context, controlnet_cond=hint.expand(2, -1, -1, -1),
                        return_dict=False)
    compare(ours, list(down) + [mid])


def test_sdxl_unet_with_residuals_matches_diffusers(tmp_path):
    cn = reinit_(ControlNet(ControlNetConfig(unet=TINY_XL))).eval()
    unet = reinit_(UNetModel(TINY_XL), seed=1).eval()
    sd = {"model.diffusion_model." + k: v for k, v in unet.state_dict().items()}
    dconfig, converted = diffusers_convert(sd, unet.config)
    ref = diffusers.UNet2DConditionModel(**dconfig)
    ref.load_state_dict(converted, strict=True)
    x, t, context, hint, pooled, time_ids = inputs(TINY_XL, hw=(16, 16))
    y = sdxl_adm_vector(pooled, *SIZES)
    with torch.inference_mode():
        control = cn(x, hint, t, context, y)
        ours = unet(x, t, context, y, control=control)
        theirs = ref.eval()(x, t, encoder_hidden_states=context, down_block_additional_residuals=tuple(control[:-1]),
                            mid_block_additional_residual=control[-1],
                            added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
        plain = unet(x, t, context, y)
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    print(f"SDXL UNet+residuals max relative error {err / scale:.3g}")
    assert err <= REL_TOL * scale
    assert (ours - plain).abs().max().item() > 1e3 * REL_TOL * scale, "the residuals must change eps"


def test_full_size_sdxl_keys_match_diffusers_renamed():
    """controlnet-canny-sdxl-1.0's architecture on `meta`: diffusers' keys renamed by our table are exactly ours, and
    the config inferred from them is SDXL's encoder (10 residuals)."""
    xl = UNetConfig(**{**SDXL_UNET.__dict__, "in_channels": 4})
    config = {**diffusers_config(xl), "transformer_layers_per_block": (1, 2, 10)}
    with torch.device("meta"):
        theirs = to_original(diffusers.ControlNetModel(**config).state_dict())
        ours = ControlNet(ControlNetConfig(unet=xl)).state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {k: tuple(v.shape) for k, v in ours.items()}
    inferred = ControlNetConfig.from_state_dict(ours)
    assert inferred.unet == xl and inferred.family == "sdxl" and inferred.num_outputs == 10
    assert tuple(ours["label_emb.0.0.weight"].shape) == (1280, 2816)
    assert tuple(ours["input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"].shape) == (1280, 2048)


def test_other_sdxl_kinds_are_refused_by_name():
    with torch.device("meta"):
        sd = ControlNet(ControlNetConfig(unet=TINY_XL)).state_dict()
    cases = [
        ({k: v for k, v in sd.items() if not re.match(r"(input_blocks\.\d+|middle_block)\.1\.", k)},
         "without attention layers \\(SDXL 'small'"),
        ({k: v for k, v in sd.items() if not k.startswith("input_blocks.4.1.transformer_blocks.")},
         "spatial transformer without blocks at 'input_blocks.4.1' \\(SDXL 'mid'"),
        ({**sd, "task_embedding": torch.zeros(8, 320)}, "ControlNet Union"),
        ({**sd, "difference": torch.zeros(1)}, "'diff' ControlNets"),
    ]
    for state, message in cases:
        with pytest.raises(ValueError, match=message):
            ControlNetConfig.from_state_dict(state)
    with pytest.raises(ValueError, match="unexpected key 'down_blocks.0.wobble' for a diffusers-format ControlNet"):
        to_original({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1),
                     "down_blocks.0.resnets.0.norm1.weight": torch.zeros(1), "down_blocks.0.wobble.weight": torch.zeros(1)})
