"""Merging into live weights: restore bit for bit, idempotence, sequential order, fp16 cast order, the 9-channel
conv_in padding, and errors that leave the base weights intact."""
from __future__ import annotations

import pytest
import torch
from network_helpers import kohya_key, pick, random_lora, write

from inpaintlab.networks import ActiveNetwork, NetworkError, NetworkMerger
from inpaintlab.tiny import build_tiny_models


def snapshot(*modules):
    return [{k: v.clone() for k, v in m.state_dict().items()} for m in modules]


def assert_same(a, b):
    for sa, sb in zip(a, b):
        assert sa.keys() == sb.keys()
        for k in sa:
            assert sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]), k


def changed(a, b):
    return sum(not torch.equal(sa[k], sb[k]) for sa, sb in zip(a, b) for k in sa if k in sb)


def test_apply_clear_restores_every_parameter_bit_for_bit(tiny_models, tmp_path):
    unet, te = tiny_models
    base = snapshot(unet, te)
    targets = pick(unet, te)
    lora = write(random_lora(targets, seed=1), tmp_path / "a.safetensors")
    # Full with diff_b on bias-less to_q layers: the merge gives them a bias, the restore takes it away again
    to_q = [(n, m) for n, m in unet.named_modules() if n.endswith("attn1.to_q")][0]
    full = write({f"{kohya_key('unet', to_q[0])}.diff": torch.randn_like(to_q[1].weight),
                  f"{kohya_key('unet', to_q[0])}.diff_b": torch.randn(to_q[1].weight.shape[0])},
                 tmp_path / "full.safetensors")
    merger = NetworkMerger(unet, te)
    merger.apply([ActiveNetwork(lora, 0.7, 1.2), ActiveNetwork(full, 1.0, 0.5)])
    assert to_q[1].bias is not None
    assert changed(base, snapshot(unet, te)) == len(targets) + 1
    merger.clear()
    assert to_q[1].bias is None
    assert_same(base, snapshot(unet, te))


def test_applying_twice_or_switching_back_is_idempotent(tiny_models, tmp_path):
    unet, te = tiny_models
    targets = pick(unet, te)
    a = write(random_lora(targets, seed=1), tmp_path / "a.safetensors")
    b = write(random_lora(targets[::2], seed=2), tmp_path / "b.safetensors")
    merger = NetworkMerger(unet, te)
    merger.apply([ActiveNetwork(a, 0.5, 0.9)])
    once = snapshot(unet, te)
    merger.apply([ActiveNetwork(a, 0.5, 0.9)])
    assert_same(once, snapshot(unet, te))
    merger.apply([ActiveNetwork(b, 1.0, 1.0), ActiveNetwork(a, 0.5, 0.9)])
    merger.apply([ActiveNetwork(a, 0.5, 0.9)])
    assert_same(once, snapshot(unet, te))


def test_networks_add_in_order_into_the_live_weight(tiny_models, tmp_path):
    """fp32: W + m1·s1·up1@down1, then + m2·s2·up2@down2 (the second sees the first's result)."""
    unet, te = tiny_models
    (target,) = [t for t in pick(unet, te) if t[2].weight.ndim == 2][:1]
    sd1, sd2 = random_lora([target], seed=3, rank=3, alpha=1.5), random_lora([target], seed=4, rank=2, alpha=4.0)
    W = target[2].weight.detach().clone()
    merger = NetworkMerger(unet, te)
    merger.apply([ActiveNetwork(write(sd1, tmp_path / "1.safetensors"), 1.0, 0.6),
                  ActiveNetwork(write(sd2, tmp_path / "2.safetensors"), 1.0, -0.4)])
    key = kohya_key(*target[:2])
    d1 = (sd1[f"{key}.lora_up.weight"] @ sd1[f"{key}.lora_down.weight"]) * 0.5 * 0.6
    d2 = (sd2[f"{key}.lora_up.weight"] @ sd2[f"{key}.lora_down.weight"]) * 2.0 * -0.4
    assert torch.equal(target[2].weight, (W + d1) + d2)


def test_fp16_storage_follows_the_cast_order(tmp_path):
    """fp16 model: LoRA factors are cast to fp16 and multiplied there, each network's sum rounds to fp16; an fp32
    LoHa adds in fp32 and rounds once. Two sequential LoRAs differ from one combined delta in the last bit."""
    unet, _, te = build_tiny_models(seed=0)
    unet, te = unet.half(), te.half()
    layer = unet.input_blocks[1][1].transformer_blocks[0].attn1.to_k
    name = "input_blocks.1.1.transformer_blocks.0.attn1.to_k"
    sd1 = random_lora([("unet", name, layer)], seed=5, rank=4, alpha=1.0, scale=0.5)
    sd2 = random_lora([("unet", name, layer)], seed=6, rank=4, alpha=3.0, scale=0.5)
    key = kohya_key("unet", name)
    g = torch.Generator().manual_seed(7)
    out, inp = layer.weight.shape
    loha = {f"{key}.hada_w1_a": torch.randn(out, 2, generator=g), f"{key}.hada_w1_b": torch.randn(2, inp, generator=g),
            f"{key}.hada_w2_a": torch.randn(out, 2, generator=g), f"{key}.hada_w2_b": torch.randn(2, inp, generator=g)}
    W = layer.weight.detach().clone()
    merger = NetworkMerger(unet, te)
    paths = [write(sd, tmp_path / f"{i}.safetensors") for i, sd in enumerate((sd1, sd2, loha))]
    merger.apply([ActiveNetwork(p, 1.0, 0.8) for p in paths])

    def lora_delta(sd, s):
        up, down = sd[f"{key}.lora_up.weight"].half(), sd[f"{key}.lora_down.weight"].half()
        return (up @ down) * s * 0.8  # fp16 product, Python-float scale and multiplier

    step1 = (W + lora_delta(sd1, 0.25)).half()
    step2 = (step1 + lora_delta(sd2, 0.75)).half()
    h = lambda a, b: loha[f"{key}.hada_w{a}_{b}"]  # noqa: E731
    loha_delta = (h(1, "a") @ h(1, "b")) * (h(2, "a") @ h(2, "b")) * 0.8  # fp32; no alpha → scale 1
    expected = (step2.float() + loha_delta).half()
    assert layer.weight.dtype == torch.float16
    assert torch.equal(layer.weight, expected)
    combined = (W + (lora_delta(sd1, 0.25) + lora_delta(sd2, 0.75))).half()
    assert not torch.equal(step2, combined), "sequential fp16 rounding is visible"


def test_inpainting_conv_in_delta_is_zero_padded_from_4_to_9_channels(tmp_path):
    unet, _, te = build_tiny_models(inpainting=True, seed=0)
    layer = unet.input_blocks[0][0]
    assert layer.weight.shape[1] == 9
    W = layer.weight.detach().clone()
    g = torch.Generator().manual_seed(8)
    sd = {"lora_unet_conv_in.lora_down.weight": torch.randn(2, 4, 3, 3, generator=g),
          "lora_unet_conv_in.lora_up.weight": torch.randn(W.shape[0], 2, 1, 1, generator=g)}
    NetworkMerger(unet, te).apply([ActiveNetwork(write(sd, tmp_path / "c.safetensors"), 1.0, 1.0)])
    assert torch.equal(layer.weight[:, 4:], W[:, 4:])
    up, down = sd["lora_unet_conv_in.lora_up.weight"], sd["lora_unet_conv_in.lora_down.weight"]
    expected = W[:, :4] + (up.flatten(1) @ down.flatten(1)).reshape(W.shape[0], 4, 3, 3)
    assert torch.equal(layer.weight[:, :4], expected)


# --- errors: each names the key, and nothing stays half-applied ---------------------------------------------------


def test_shape_mismatch_names_the_key_and_leaves_the_base_intact(tiny_models, tmp_path):
    unet, te = tiny_models
    base = snapshot(unet, te)
    targets = pick(unet, te)
    sd = random_lora(targets, seed=9)
    bad = kohya_key(*targets[-1][:2])
    sd[f"{bad}.lora_down.weight"] = torch.randn(2, 1024)  # an SD2-wide projection
    path = write(sd, tmp_path / "bad.safetensors")
    with pytest.raises(NetworkError, match=f"{bad}.*SD2.x"):
        NetworkMerger(unet, te).apply([ActiveNetwork(path)])
    assert_same(base, snapshot(unet, te))


def test_failure_in_the_second_network_restores_the_first(tiny_models, tmp_path):
    unet, te = tiny_models
    base = snapshot(unet, te)
    targets = pick(unet, te)
    good = write(random_lora(targets, seed=10), tmp_path / "good.safetensors")
    sd = random_lora(targets[:1], seed=11)
    key = kohya_key(*targets[0][:2])
    sd[f"{key}.lora_up.weight"] = torch.randn(3, 2, *sd[f"{key}.lora_up.weight"].shape[2:])  # wrong out width
    bad = write(sd, tmp_path / "bad.safetensors")
    merger = NetworkMerger(unet, te)
    merger.apply([ActiveNetwork(good)])
    with pytest.raises(NetworkError, match=key):
        merger.apply([ActiveNetwork(good), ActiveNetwork(bad)])
    assert_same(base, snapshot(unet, te))
    assert merger.active == []


def test_key_matching_no_module_is_an_error_naming_it(tiny_models, tmp_path):
    unet, te = tiny_models
    sd = random_lora(pick(unet, te)[:2], seed=12)
    sd["lora_unet_conv_norm_out.w_norm"] = torch.ones(4)
    with pytest.raises(NetworkError, match="lora_unet_conv_norm_out.w_norm"):
        NetworkMerger(unet, te).prepare(write(sd, tmp_path / "x.safetensors"))


def test_diffusers_peft_keys_are_refused_with_a_hint(tiny_models, tmp_path):
    unet, te = tiny_models
    path = write({"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 32)},
                 tmp_path / "peft.safetensors")
    with pytest.raises(NetworkError, match="diffusers/PEFT"):
        NetworkMerger(unet, te).prepare(path)


def test_sdxl_and_sd2_networks_are_named(tiny_models, tmp_path):
    unet, te = tiny_models
    sdxl = write({"lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 768),
                  "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(3072, 2),
                  "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(2, 1280),
                  "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.zeros(5120, 2)},
                 tmp_path / "xl.safetensors")
    with pytest.raises(NetworkError, match="SDXL.*lora_te2_"):
        NetworkMerger(unet, te).prepare(sdxl)
    sd2 = write(random_lora(pick(unet, te)[:1], seed=1), tmp_path / "v2.safetensors", {"ss_v2": "True"})
    with pytest.raises(NetworkError, match=r"Stable Diffusion 2.x \(metadata ss_v2=True\); this model is Stable Diffusion 1.x"):
        NetworkMerger(unet, te).prepare(sd2)


def test_pickles_only_with_allow_pickle(tiny_models, tmp_path):
    unet, te = tiny_models
    sd = random_lora(pick(unet, te)[:2], seed=13)
    path = tmp_path / "old.pt"
    torch.save(sd, path)
    with pytest.raises(NetworkError, match="allow_pickle"):
        NetworkMerger(unet, te).prepare(path)
    prepared = NetworkMerger(unet, te, allow_pickle=True).prepare(path)
    assert len(prepared.modules) == 2
