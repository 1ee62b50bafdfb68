"""Each network type's weight delta against a float64 re-derivation of its formula on random tensors.

The re-derivations are written from the formulas (matrix products per kernel tap, explicit Kronecker blocks, block
diagonal and permutation matrices for OFT/BOFT, per-column norms for DoRA), not from the implementation's einsums and
reshapes. Inputs are float32; the float32 result must match float64 to max|Δ| <= 1e-5·max|ref| (measured at most
2.1e-7 over the 26 comparisons).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from inpaintlab.networks.modules import ModuleWeights, NetworkError, calc_updown, detect_type

REL = 1e-5


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def linear(out=12, inp=10, seed=0):
    m = nn.Linear(inp, out)
    with torch.no_grad():
        m.weight.copy_(rand(out, inp, seed=seed))
    return m


def conv(out=8, inp=6, k=3, seed=0):
    m = nn.Conv2d(inp, out, k, padding=k // 2)
    with torch.no_grad():
        m.weight.copy_(rand(out, inp, k, k, seed=seed))
    return m


UNET_NAME = "diffusion_model_input_blocks_1_1_proj_in"
TE_NAME = "transformer_text_model_encoder_layers_0_mlp_fc1"


def delta(module, w, name=UNET_NAME, te=0.3, unet=0.8, dyn=None):
    mw = ModuleWeights("lora_unet_x", name, module, dict(w))
    kind = detect_type(mw)
    up, ex = calc_updown(mw, kind, module.weight.detach(), te, unet, dyn)
    return kind, up, ex


def close(ours, ref):
    ref = ref.to(torch.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = ref.abs().max().item()
    assert scale > 1e-3
    err = (ours.double() - ref).abs().max().item()
    assert err <= REL * scale, f"max|Δ| {err:.3g} > {REL} × {scale:.3g}"


def d(t):
    return t.double()


def test_linear_lora_alpha_over_rank_and_unet_multiplier():
    m = linear()
    up, down = rand(12, 4, seed=1), rand(4, 10, seed=2)
    kind, ours, ex = delta(m, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0)})
    assert kind == "LoRA" and ex is None
    close(ours, d(up) @ d(down) * (2.0 / 4) * 0.8)


def test_text_encoder_multiplier_is_picked_for_transformer_modules():
    m = linear()
    up, down = rand(12, 4, seed=1), rand(4, 10, seed=2)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down}, name=TE_NAME, te=0.3, unet=0.8)
    close(ours, d(up) @ d(down) * 0.3)  # no alpha: scale 1


def test_scale_key_wins_over_alpha():
    m = linear()
    up, down = rand(12, 4, seed=1), rand(4, 10, seed=2)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(2.0),
                           "scale": torch.tensor(0.25)})
    close(ours, d(up) @ d(down) * 0.25 * 0.8)


def test_lora_a_b_names_are_down_and_up():
    m = linear()
    up, down = rand(12, 4, seed=1), rand(4, 10, seed=2)
    kind, ours, _ = delta(m, {"lora_B.weight": up, "lora_A.weight": down})
    assert kind == "LoRA"
    close(ours, d(up) @ d(down) * 0.8)


def test_dyn_uses_the_leading_ranks_only():
    m = linear()
    up, down = rand(12, 6, seed=1), rand(6, 10, seed=2)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(3.0)}, dyn=2)
    close(ours, d(up[:, :2]) @ d(down[:2]) * (3.0 / 6) * 0.8)


def test_conv_locon_3x3():
    m = conv()
    up, down = rand(8, 2, 1, 1, seed=3), rand(2, 6, 3, 3, seed=4)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.0)})
    ref = torch.zeros(8, 6, 3, 3, dtype=torch.float64)
    for k in range(3):
        for j in range(3):
            ref[:, :, k, j] = d(up[:, :, 0, 0]) @ d(down[:, :, k, j])
    close(ours, ref * 0.5 * 0.8)


def test_conv_lora_2d_down_is_a_1x1_kernel():
    m = conv(k=1)
    up, down = rand(8, 2, seed=3), rand(2, 6, seed=4)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down})
    close(ours, (d(up) @ d(down))[:, :, None, None] * 0.8)


def test_locon_with_cp_mid():
    m = conv()
    up, mid, down = rand(8, 3, 1, 1, seed=5), rand(3, 3, 3, 3, seed=6), rand(3, 6, 1, 1, seed=7)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_mid.weight": mid, "lora_down.weight": down,
                           "alpha": torch.tensor(1.5)})
    ref = torch.zeros(8, 6, 3, 3, dtype=torch.float64)
    for k in range(3):
        for j in range(3):
            ref[:, :, k, j] = d(up[:, :, 0, 0]) @ d(mid[:, :, k, j]) @ d(down[:, :, 0, 0])
    close(ours, ref * (1.5 / 3) * 0.8)


def test_loha():
    m = linear()
    w = {"hada_w1_a": rand(12, 3, seed=8), "hada_w1_b": rand(3, 10, seed=9), "hada_w2_a": rand(12, 3, seed=10),
         "hada_w2_b": rand(3, 10, seed=11), "alpha": torch.tensor(1.0)}
    kind, ours, _ = delta(m, w)
    assert kind == "LoHa"
    ref = (d(w["hada_w1_a"]) @ d(w["hada_w1_b"])) * (d(w["hada_w2_a"]) @ d(w["hada_w2_b"]))
    close(ours, ref * (1.0 / 3) * 0.8)


def test_loha_conv_with_tucker_cores():
    m = conv()
    r = 3
    w = {"hada_t1": rand(r, r, 3, 3, seed=12), "hada_w1_a": rand(r, 8, seed=13), "hada_w1_b": rand(r, 6, seed=14),
         "hada_t2": rand(r, r, 3, 3, seed=15), "hada_w2_a": rand(r, 8, seed=16), "hada_w2_b": rand(r, 6, seed=17)}
    _, ours, _ = delta(m, w)

    def core(t, wa, wb):  # Σ_ij wa[i,o] t[i,j,k,l] wb[j,c] per kernel tap
        out = torch.zeros(wa.shape[1], wb.shape[1], 3, 3, dtype=torch.float64)
        for k in range(3):
            for j in range(3):
                out[:, :, k, j] = d(wa).T @ d(t[:, :, k, j]) @ d(wb)
        return out

    ref = core(w["hada_t1"], w["hada_w1_a"], w["hada_w1_b"]) * core(w["hada_t2"], w["hada_w2_a"], w["hada_w2_b"])
    close(ours, ref * 0.8)


def test_ia3_on_output_and_on_input():
    m = linear()
    W = d(m.weight.detach())
    s_out, s_in = rand(12, seed=18), rand(10, seed=19)
    kind, ours, _ = delta(m, {"weight": s_out, "on_input": torch.tensor(False)})
    assert kind == "IA3"
    close(ours, W * d(s_out)[:, None] * 0.8)
    _, ours, _ = delta(m, {"weight": s_in, "on_input": torch.tensor(True)})
    close(ours, W * d(s_in)[None, :] * 0.8)


def kron_ref(a, b):
    """Kronecker product by blocks: block (i, j) is a[i, j] · b."""
    p, q = b.shape[:2]
    out = torch.zeros(a.shape[0] * p, a.shape[1] * q, *b.shape[2:], dtype=torch.float64)
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            out[i * p:(i + 1) * p, j * q:(j + 1) * q] = a[i, j] * d(b)
    return out


def test_lokr_factored_linear():
    m = linear()
    w = {"lokr_w1": rand(3, 2, seed=20), "lokr_w2_a": rand(4, 2, seed=21), "lokr_w2_b": rand(2, 5, seed=22),
         "alpha": torch.tensor(1.0)}
    kind, ours, _ = delta(m, w)
    assert kind == "LoKr"
    close(ours, kron_ref(d(w["lokr_w1"]), d(w["lokr_w2_a"]) @ d(w["lokr_w2_b"])) * (1.0 / 2) * 0.8)


def test_lokr_conv_full_factors():
    m = conv()
    w = {"lokr_w1_a": rand(2, 2, seed=23), "lokr_w1_b": rand(2, 3, seed=24), "lokr_w2": rand(4, 2, 3, 3, seed=25)}
    _, ours, _ = delta(m, w)
    # no alpha: scale 1 (the rank only matters with alpha)
    close(ours, kron_ref(d(w["lokr_w1_a"]) @ d(w["lokr_w1_b"]), w["lokr_w2"]) * 0.8)


def test_full_with_bias_diff():
    m = linear()
    diff, diff_b = rand(12, 10, seed=26), rand(12, seed=27)
    kind, ours, ex = delta(m, {"diff": diff, "diff_b": diff_b})
    assert kind == "Full"
    close(ours, d(diff) * 0.8)
    close(ex, d(diff_b) * 0.8)


def test_norm():
    m = nn.LayerNorm(10)
    w_norm, b_norm = rand(10, seed=28), rand(10, seed=29)
    kind, ours, ex = delta(m, {"w_norm": w_norm, "b_norm": b_norm})
    assert kind == "Norm"
    close(ours, d(w_norm) * 0.8)
    close(ex, d(b_norm) * 0.8)


def test_glora():
    m = linear()
    W = d(m.weight.detach())
    w = {"a1.weight": rand(3, 10, seed=30), "a2.weight": rand(10, 3, seed=31), "b1.weight": rand(3, 10, seed=32),
         "b2.weight": rand(12, 3, seed=33), "alpha": torch.tensor(1.0)}
    kind, ours, _ = delta(m, w)
    assert kind == "GLoRA"
    ref = d(w["b2.weight"]) @ d(w["b1.weight"]) + W @ d(w["a2.weight"]) @ d(w["a1.weight"])
    close(ours, ref * 0.8)


def cayley(blocks, constraint):
    q = d(blocks) - d(blocks).transpose(-1, -2)
    norm = q.flatten().norm()
    if constraint:
        q = q * ((min(norm.item(), constraint) + 1e-8) / (norm.item() + 1e-8))
    eye = torch.eye(q.shape[-1], dtype=torch.float64)
    return torch.stack([(eye + qi) @ torch.linalg.inv(eye - qi) for qi in q.reshape(-1, *q.shape[-2:])]).reshape(
        q.shape)


@pytest.mark.parametrize("alpha", [0.05, 100.0])  # the norm constraint active / inactive
def test_oft_blocks(alpha):
    m = conv(out=8, inp=6)
    W = d(m.weight.detach())
    blocks = rand(4, 2, 2, seed=34)
    kind, ours, _ = delta(m, {"oft_blocks": blocks, "alpha": torch.tensor(alpha)})
    assert kind == "OFT"
    R = cayley(blocks, alpha * 8)
    # each output block k is mixed by R_kᵀ
    rotation = torch.block_diag(*[r.T for r in R])
    ref = (rotation @ W.reshape(8, -1)).reshape(W.shape) - W
    close(ours, ref * 0.8)


def test_oft_diag_old_lycoris_is_used_as_is():
    m = linear(out=12)
    W = d(m.weight.detach())
    R = rand(3, 4, 4, seed=35)  # 3 blocks of 4
    _, ours, _ = delta(m, {"oft_diag": R})
    ref = torch.block_diag(*[d(r).T for r in R]) @ W - W
    close(ours, ref * 0.8)


def test_boft_butterfly():
    out, b, stages = 8, 2, 2
    m = linear(out=out, inp=5)
    W = d(m.weight.detach())
    blocks = rand(stages, out // b, b, b, seed=36)
    _, ours, _ = delta(m, {"oft_blocks": blocks, "alpha": torch.tensor(0.0), "rescale": rand(out, seed=37)})
    R = cayley(blocks, 0)
    merged = W.clone()
    for i in range(stages):
        k = 2 ** i * (b // 2)
        # butterfly permutation: row (c, g, k') is taken to position (c, k', g)
        perm = torch.arange(out).reshape(-1, 2, k).transpose(1, 2).reshape(-1)
        P = torch.eye(out, dtype=torch.float64)[perm]
        merged = P.T @ torch.block_diag(*R[i]) @ P @ merged
    merged = d(rand(out, seed=37))[:, None] * merged
    close(ours, (merged - W) * 0.8)


@pytest.mark.parametrize("module", [linear(), conv()], ids=["linear", "conv"])
def test_dora_renormalises_each_input_column_before_the_multiplier(module):
    W = d(module.weight.detach())
    out, inp = W.shape[:2]
    rank = 3
    up = rand(out, rank, *([1, 1] if W.ndim == 4 else []), seed=38)
    down = rand(rank, *W.shape[1:], seed=39)
    dora = rand(1, inp, *([1, 1] if W.ndim == 4 else []), seed=40).abs() + 1
    _, ours, _ = delta(module, {"lora_up.weight": up, "lora_down.weight": down, "alpha": torch.tensor(1.0),
                                "dora_scale": dora})
    updown = (d(up).reshape(out, rank) @ d(down).reshape(rank, -1)).reshape(W.shape) * (1.0 / rank)
    merged = W + updown
    ref = torch.empty_like(W)
    for j in range(inp):
        ref[:, j] = merged[:, j] * d(dora).reshape(inp)[j] / merged[:, j].norm()
    close(ours, (ref - W) * 0.8)


def test_bias_key_is_added_to_the_delta():
    m = linear()
    up, down, bias = rand(12, 4, seed=41), rand(4, 10, seed=42), rand(120, seed=43)
    _, ours, _ = delta(m, {"lora_up.weight": up, "lora_down.weight": down, "bias": bias})
    close(ours, (d(up) @ d(down) + d(bias).reshape(12, 10)) * 0.8)


def test_unknown_key_set_is_an_error_naming_the_keys():
    with pytest.raises(NetworkError, match="no network type accepts the keys foo"):
        delta(linear(), {"foo": torch.zeros(1)})


def test_lora_on_a_layer_norm_is_an_error():
    with pytest.raises(NetworkError, match="Linear and Conv2d layers only"):
        delta(nn.LayerNorm(10), {"lora_up.weight": rand(10, 2, seed=1), "lora_down.weight": rand(2, 10, seed=2)})
