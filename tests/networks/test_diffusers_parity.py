"""Key conversion and LoRA merge against diffusers' own kohya-format loader (PEFT adapters on diffusers' UNet and
transformers' CLIP text model).

One random kohya LoRA file covers every Linear and Conv2d of a tiny UNet (SD1's block layout: two res blocks per level,
attention at the upper levels) and every projection of the text encoder, with 3x3 LoCon on the convolutions and
alpha/rank = 3/4. The file's keys are the diffusers module names in kohya spelling, so diffusers maps them
with its own converter and we with A1111's compvis table; both models start from the same random checkpoint. Our merged
weights and diffusers' unmerged adapters (x·Wᵀ + scale·B(A(x))) must give the same outputs to fp32 rounding: measured
max|Δ| / max|ref| 1.9e-6 (UNet) and 1.7e-6 (text encoder); tolerance 1e-5.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "unet"))
from unet_helpers import PREFIX, diffusers_convert, tiny_config  # noqa: E402

from inpaintlab.clip.model import CLIPTextConfig, CLIPTextTransformer  # noqa: E402
from inpaintlab.networks import ActiveNetwork, NetworkMerger  # noqa: E402
from inpaintlab.tiny import reinit_  # noqa: E402
from inpaintlab.unet import UNetModel  # noqa: E402

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
from safetensors.torch import save_file  # noqa: E402

REL_TOL = 1e-5
TE, UNET = 0.7, 1.3
# One rank and alpha for the whole file: diffusers' kohya converter files per-module alphas of attention processors
# under names PEFT then ignores, so only a file-wide alpha/rank reaches its adapters. Per-module alphas are covered by
# the float64 delta tests.
RANK, ALPHA = 4, 3.0


def _random_lora(modules, prefix: str, g: torch.Generator, sd: dict) -> None:
    for name, mod in modules:
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)):
            continue
        key = prefix + name.replace(".", "_")
        rank = RANK
        if isinstance(mod, torch.nn.Linear):
            down = torch.randn(rank, mod.in_features, generator=g) / mod.in_features ** 0.5
            up = torch.randn(mod.out_features, rank, generator=g)
        else:
            down = torch.randn(rank, mod.in_channels, *mod.kernel_size, generator=g) / (mod.weight[0].numel()) ** 0.5
            up = torch.randn(mod.out_channels, rank, 1, 1, generator=g)
        sd[key + ".lora_down.weight"] = down
        sd[key + ".lora_up.weight"] = up * 0.3
        sd[key + ".alpha"] = torch.tensor(ALPHA)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    torch.manual_seed(0)
    unet = reinit_(UNetModel(tiny_config(4, 2))).eval().requires_grad_(False)
    dconfig, converted = diffusers_convert({PREFIX + k: v for k, v in unet.state_dict().items()}, unet.config)
    ref_unet = diffusers.UNet2DConditionModel(**dconfig)
    ref_unet.load_state_dict(converted, strict=True)

    cfg = CLIPTextConfig(vocab_size=1000, max_positions=77, width=128, layers=2, mlp_dim=256)
    te = reinit_(CLIPTextTransformer(cfg), seed=3).eval().requires_grad_(False)
    tconfig = transformers.CLIPTextConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.width, intermediate_size=cfg.mlp_dim, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
        bos_token_id=0, eos_token_id=2, pad_token_id=1)
    tconfig._attn_implementation = "eager"
    ref_te = transformers.CLIPTextModel(tconfig)
    ref_te.load_state_dict(te.state_dict(), strict=True)  # transformers 5: flattened layout

    g = torch.Generator().manual_seed(11)
    sd: dict = {}
    _random_lora(ref_unet.named_modules(), "lora_unet_", g, sd)
    # kohya spells the text encoder's modules from `text_model.` (the level transformers 5 flattens away)
    _random_lora(((f"text_model.{n}", m) for n, m in ref_te.named_modules()), "lora_te_", g, sd)
    path = tmp_path_factory.mktemp("lora") / "random_lora.safetensors"
    save_file(sd, str(path))

    base_unet = {k: v.clone() for k, v in unet.state_dict().items()}
    merger = NetworkMerger(unet, te)
    merger.apply([ActiveNetwork(path, TE, UNET)])

    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader
    from diffusers.utils.peft_utils import scale_lora_layers

    state, alphas = Loader.lora_state_dict(str(path))
    Loader.load_lora_into_unet(state, alphas, unet=ref_unet)
    Loader.load_lora_into_text_encoder(state, alphas, text_encoder=ref_te)
    scale_lora_layers(ref_unet, UNET)
    scale_lora_layers(ref_te, TE)
    return dict(unet=unet, ref_unet=ref_unet.eval(), te=te, ref_te=ref_te.eval(), sd=sd, merger=merger,
                base_unet=base_unet, path=path)


def test_every_module_of_the_file_is_matched(models):
    (prepared,) = [models["merger"].prepare(models["path"])]
    n_modules = sum(k.endswith(".lora_down.weight") for k in models["sd"])
    assert len(prepared.modules) == n_modules > 60
    targets = {mw.name for mw, _ in prepared.modules}
    assert len(targets) == n_modules  # no two file modules land on one layer
    assert all(kind == "LoRA" for _, kind in prepared.modules)


def test_unet_matches_diffusers_kohya_loader(models):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([901.0, 33.5])
    context = torch.randn(2, 77, 64, generator=g)
    with torch.inference_mode():
        ours = models["unet"](x, t, context)
        theirs = models["ref_unet"](x, t, encoder_hidden_states=context).sample
        base = UNetModel(models["unet"].config)
        base.load_state_dict(models["base_unet"])
        without = base.eval()(x, t, context)
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert (without - theirs).abs().max().item() > 0.1 * scale, "the LoRA must change the output visibly"
    assert err <= REL_TOL * scale, f"max|Δ| {err:.3g} > {REL_TOL} × {scale:.3g}"


def test_text_encoder_matches_diffusers_kohya_loader(models):
    tokens = torch.randint(0, 1000, (2, 77), generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        ours = models["te"](tokens)
        theirs = models["ref_te"](input_ids=tokens).last_hidden_state
    scale = theirs.abs().max().item()
    err = (ours - theirs).abs().max().item()
    assert err <= REL_TOL * scale, f"max|Δ| {err:.3g} > {REL_TOL} × {scale:.3g}"
