"""Tiny-VAE behaviour: structure, reprs, resampling details, posterior sampling, input checks."""
import pytest
import torch
import torch.nn.functional as F

from inpaintlab.kernels import GroupNorm
from inpaintlab.vae import AutoencoderKL, DiagonalGaussian, VAEConfig, conv_attention_weights
from inpaintlab.vae.model import AttnBlock, Decoder, Downsample, Encoder, ResnetBlock, Upsample
from vae_helpers import reinit_, tiny_config, tiny_vae  # noqa: F401  (fixtures)



def test_construct_and_repr_every_module(tiny_vae):
    text = repr(tiny_vae)
    for name in ("AutoencoderKL", "Encoder", "Decoder", "ResnetBlock", "AttnBlock", "Downsample", "Upsample",
                 "_Mid", "_Level", "GroupNorm"):
        assert name in text
    assert "kernels='torch'" in text and "scale_factor=0.18215" in text
    for module in tiny_vae.modules():
        assert isinstance(repr(module), str)
    kinds = {type(m) for m in tiny_vae.modules()}
    assert {Encoder, Decoder, ResnetBlock, AttnBlock, Downsample, Upsample} <= kinds


def test_group_norms_are_eps_1e6_with_silu_where_ldm_applies_it(tiny_vae):
    norms = {name: m for name, m in tiny_vae.named_modules() if isinstance(m, GroupNorm)}
    assert norms
    for name, norm in norms.items():
        assert norm.num_groups == 32 and norm.eps == 1e-6, name
        leaf = name.rsplit(".", 1)[-1]
        assert norm.silu == (leaf in ("norm1", "norm2", "norm_out")), name
    assert not norms["encoder.mid.attn_1.norm"].silu


def test_shapes_and_determinism(tiny_vae, tiny_config):
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        post = tiny_vae.encode(x)
        assert post.mean.shape == post.logvar.shape == post.std.shape == (2, tiny_config.embed_dim, 4, 6)
        image = tiny_vae.decode(post.mean)
        assert image.shape == x.shape
        assert torch.equal(tiny_vae.encode(x).mean, post.mean)
        assert torch.equal(tiny_vae.decode(post.mean), image)
    assert tiny_config.downscale == 4 and VAEConfig().downscale == 8


def test_downsample_pads_right_and_bottom_only():
    g = torch.Generator().manual_seed(0)
    down = reinit_(Downsample(32))
    x = torch.randn(1, 32, 8, 6, generator=g)
    w, b = down.conv.weight, down.conv.bias
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), w, b, stride=2)
    with torch.no_grad():
        out = down(x)
        assert out.shape == (1, 32, 4, 3)
        assert torch.allclose(out, expected, rtol=0, atol=1e-6)
        symmetric = F.conv2d(x, w, b, stride=2, padding=1)
        assert symmetric.shape == out.shape and (symmetric - out).abs().max() > 0.1  # the pad side matters


def test_upsample_is_nearest_then_conv():
    g = torch.Generator().manual_seed(0)
    up = reinit_(Upsample(32))
    x = torch.randn(1, 32, 3, 5, generator=g)
    doubled = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    with torch.no_grad():
        assert torch.allclose(up(x), up.conv(doubled), rtol=0, atol=1e-6)


def test_decoder_runs_highest_level_first(tiny_vae):
    order = []
    for i, level in enumerate(tiny_vae.decoder.up):
        level.register_forward_hook(lambda m, inp, out, i=i: order.append((i, tuple(out.shape))))
    with torch.no_grad():
        tiny_vae.decode(torch.randn(1, 4, 4, 4))
    # up.2 and up.1 upsample; up.0 (the widest-resolution, narrowest level) runs last without upsampling.
    assert order == [(2, (1, 64, 8, 8)), (1, (1, 64, 16, 16)), (0, (1, 32, 16, 16))]
    assert len(tiny_vae.decoder.up[0].block) == 3 and not hasattr(tiny_vae.decoder.up[0], "upsample")
    assert not hasattr(tiny_vae.encoder.down[2], "downsample")


def test_resnet_block_shortcut_only_when_widths_differ():
    assert not hasattr(ResnetBlock(32, 32), "nin_shortcut")
    assert ResnetBlock(32, 64).nin_shortcut.weight.shape == (64, 32, 1, 1)


def test_attention_block_matches_explicit_single_head_softmax():
    g = torch.Generator().manual_seed(0)
    block = reinit_(AttnBlock(64)).eval()
    x = torch.randn(2, 64, 3, 5, generator=g)
    with torch.no_grad():
        h = block.norm(x)
        q, k, v = (conv(h).flatten(2) for conv in (block.q, block.k, block.v))  # [B,C,HW]
        weights = torch.softmax(q.transpose(1, 2) @ k * 64 ** -0.5, dim=-1)  # [B,HW,HW]
        expected = x + block.proj_out((v @ weights.transpose(1, 2)).view_as(x))
        assert torch.allclose(block(x), expected, rtol=0, atol=1e-5)


def posterior(mean: torch.Tensor, logvar: torch.Tensor) -> DiagonalGaussian:
    return DiagonalGaussian(torch.cat([mean, logvar], dim=1))


def test_posterior_clamps_logvar_and_derives_std():
    mean = torch.zeros(1, 4, 2, 2)
    logvar = torch.tensor([-50.0, -1.0, 3.0, 50.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    post = posterior(mean, logvar)
    assert torch.equal(post.logvar[0, :, 0, 0], torch.tensor([-30.0, -1.0, 3.0, 20.0]))
    assert torch.allclose(post.std, torch.exp(0.5 * post.logvar))
    assert torch.allclose(post.var, torch.exp(post.logvar))
    assert post.mode() is post.mean


def test_posterior_sample_is_seeded_and_has_the_right_statistics():
    g = torch.Generator().manual_seed(3)
    mean = torch.randn(2, 4, 64, 64, generator=g)
    logvar = torch.randn(2, 4, 64, 64, generator=g) * 2
    post = posterior(mean, logvar)
    a = post.sample(torch.Generator().manual_seed(42))
    b = post.sample(torch.Generator().manual_seed(42))
    c = post.sample(torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == mean.shape
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(42))
    assert torch.equal(a, post.mean + post.std * noise)
    standardised = (a - post.mean) / post.std  # 32768 draws: mean SE 0.0055, std SE 0.004
    assert abs(standardised.mean().item()) < 0.03
    assert abs(standardised.std().item() - 1.0) < 0.02


def test_posterior_sample_without_generator_uses_the_global_cpu_rng_like_ldm():
    post = posterior(torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8))
    torch.manual_seed(7)
    a = post.sample()
    torch.manual_seed(7)
    assert torch.equal(a, post.mean + post.std * torch.randn(post.mean.shape))


def test_posterior_sample_promotes_low_precision_like_ldm():
    # ldm adds fp32 noise to the fp16/bf16 moments, so the sample comes out fp32.
    g = torch.Generator().manual_seed(0)
    post = posterior(torch.randn(1, 4, 8, 8, generator=g).bfloat16(), torch.randn(1, 4, 8, 8, generator=g).bfloat16())
    a = post.sample(torch.Generator().manual_seed(5))
    noise = torch.randn(post.mean.shape, generator=torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and torch.equal(a, post.mean.float() + post.std.float() * noise)


def test_conv_attention_weights_reshapes_linear_layout_without_mutating_input():
    g = torch.Generator().manual_seed(0)
    sd = {
        "first_stage_model.encoder.mid.attn_1.q.weight": torch.randn(8, 8, generator=g),
        "first_stage_model.encoder.mid.attn_1.q.bias": torch.randn(8, generator=g),
        "decoder.mid.attn_1.proj_out.weight": torch.randn(8, 8, generator=g),
        "vae.decoder.mid.attn_1.k.weight": torch.randn(8, 8, 1, 1, generator=g),
        "encoder.mid.block_1.conv1.weight": torch.randn(8, 8, generator=g),  # not attention: left alone
        "encoder.mid.attn_1.qq.weight": torch.randn(8, 8, generator=g),
    }
    before = {k: (v, v.shape, v.clone()) for k, v in sd.items()}
    out = conv_attention_weights(sd)
    assert out is not sd and list(out) == list(sd)
    for key, (tensor, shape, values) in before.items():
        assert sd[key] is tensor and sd[key].shape == shape and torch.equal(sd[key], values)
    assert out["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (8, 8, 1, 1)
    assert out["decoder.mid.attn_1.proj_out.weight"].shape == (8, 8, 1, 1)
    assert torch.equal(out["decoder.mid.attn_1.proj_out.weight"][:, :, 0, 0], sd["decoder.mid.attn_1.proj_out.weight"])
    for key in ("first_stage_model.encoder.mid.attn_1.q.bias", "vae.decoder.mid.attn_1.k.weight",
                "encoder.mid.block_1.conv1.weight", "encoder.mid.attn_1.qq.weight"):
        assert out[key] is sd[key]


def test_bad_inputs_are_named(tiny_vae):
    with pytest.raises(ValueError, match=r"expected images \[B,3,H,W\]"):
        tiny_vae.encode(torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"expected latents \[B,4,h,w\]"):
        tiny_vae.decode(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="unknown kernel backend"):
        AutoencoderKL(VAEConfig(ch=32, ch_mult=(1,)), kernels="cuda")


def test_kernels_choice_reaches_every_group_norm(tiny_config):
    model = AutoencoderKL(tiny_config, kernels="triton")
    norms = [m for m in model.modules() if isinstance(m, GroupNorm)]  # encoder 12+5+1, decoder 18+5+1
    assert len(norms) == 18 + 24 and all(m.kernels == "triton" for m in norms)


def test_triton_group_norm_matches_torch():
    """A ResnetBlock (two fused GroupNorm+SiLU) with kernels='triton' (Triton's interpreter on CPU) matches torch.

    Kept to one block: the interpreter is slow, and the kernel itself is tested in tests/kernels.
    """
    torch_block = reinit_(ResnetBlock(32, 64)).eval()
    triton_block = ResnetBlock(32, 64, kernels="triton").eval()
    triton_block.load_state_dict(torch_block.state_dict(), strict=True)
    x = torch.randn(1, 32, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = torch_block(x)
        try:
            out = triton_block(x)
        except NotImplementedError as exc:
            pytest.skip(f"Triton group_norm not available: {exc}")
    assert torch.allclose(out, reference, rtol=0, atol=1e-5 * reference.abs().max().item())
