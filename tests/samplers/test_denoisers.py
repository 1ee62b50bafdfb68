"""Denoiser stack: EpsDenoiser against k-diffusion's DiscreteEpsDDPMDenoiser, CFG, 9-channel concat, mask blend."""
import pytest
import torch

from inpaintlab.samplers import (CFGDenoiser, DiscreteSchedule, EpsDenoiser, InpaintBlend, get_sigmas_karras,
                                 img2img_sigmas, sample_dpmpp_2m, sample_euler)


class FakeUNet:
    """Eps model depending on the scaled input, fractional t and the text context; records every call."""

    def __init__(self, in_channels=4):
        self.in_channels = in_channels
        self.calls = []

    def __call__(self, x_in, timesteps, context=None):
        assert x_in.shape[1] == self.in_channels and timesteps.shape == (x_in.shape[0],)
        self.calls.append({"x_in": x_in.clone(), "t": timesteps.clone(), "context": context})
        t = timesteps.reshape(-1, 1, 1, 1)
        eps = torch.tanh(x_in[:, :4] * 1.3 + torch.sin(t / 97)) * 0.9
        if x_in.shape[1] > 4:
            eps = eps + 0.2 * x_in[:, 4:5] - 0.1 * x_in[:, 5:9]
        if context is not None:
            eps = eps + 0.05 * context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        return eps


@pytest.fixture(scope="module")
def schedule():
    return DiscreteSchedule()


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _sigmas(n, seed=1):
    # per-item sigmas across the table and a little beyond, all distinct
    return torch.exp(torch.empty(n).uniform_(-4.0, 3.0, generator=torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("quantize", [False, True])
def test_eps_denoiser_matches_kdiffusion(kdiff, schedule, quantize):
    x = _randn(6, 4, 8, 8) * 3
    sigma = _sigmas(6)
    cond = _randn(6, 77, 16, seed=2)
    ours_unet, ref_unet = FakeUNet(), FakeUNet()
    ours = EpsDenoiser(ours_unet, schedule, quantize=quantize)(x, sigma, cond=cond)
    ref_model = kdiff.external.DiscreteEpsDDPMDenoiser(ref_unet, schedule.alphas_cumprod, quantize=quantize)
    ref = ref_model(x, sigma, context=cond)
    a, b = ours_unet.calls[0], ref_unet.calls[0]
    assert torch.equal(a["x_in"], b["x_in"])  # c_in bitwise
    assert a["t"].dtype == torch.float32
    assert torch.equal(a["t"], b["t"].float())
    if not quantize:
        assert not torch.equal(a["t"], a["t"].round())  # really fractional
    assert torch.equal(ours, ref), (ours - ref).abs().max()


def test_eps_denoiser_accepts_alphas_cumprod_and_checks(schedule):
    unet = FakeUNet()
    x, sigma = _randn(2, 4, 8, 8), _sigmas(2)
    a = EpsDenoiser(unet, schedule)(x, sigma)
    b = EpsDenoiser(unet, schedule.alphas_cumprod)(x, sigma)
    assert torch.equal(a, b)
    assert "EpsDenoiser" in repr(EpsDenoiser(unet, schedule))
    with pytest.raises(ValueError, match="one value per batch item"):
        EpsDenoiser(unet, schedule)(x, _sigmas(3))
    with pytest.raises(TypeError, match="schedule"):
        EpsDenoiser(unet, [0.5, 0.4])
    with pytest.raises(ValueError, match="non-increasing"):
        DiscreteSchedule.from_alphas_cumprod(torch.tensor([0.5, 0.9]))


def test_eps_denoiser_formula(schedule):
    # D = x - sigma * eps(x / sqrt(sigma^2 + 1), t): checked in float64 against the fake eps
    unet = FakeUNet()
    x, sigma = _randn(3, 4, 8, 8) * 2, _sigmas(3)
    out = EpsDenoiser(unet, schedule)(x, sigma)
    s64 = sigma.double().reshape(-1, 1, 1, 1)
    x_in = x.double() / torch.sqrt(s64 ** 2 + 1)
    assert torch.allclose(unet.calls[0]["x_in"].double(), x_in, rtol=3e-7, atol=0)
    eps = unet(x_in.float(), unet.calls[0]["t"]).double()
    assert torch.allclose(out.double(), x.double() - s64 * eps, rtol=0, atol=1e-5)


def test_nine_channel_concat_with_cfg(schedule):
    unet = FakeUNet(in_channels=9)
    image_cond = _randn(2, 5, 8, 8, seed=3)
    image_cond_copy = image_cond.clone()
    x, sigma = _randn(2, 4, 8, 8) * 5, torch.tensor([4.0, 4.0])
    cond, uncond = _randn(2, 77, 16, seed=4), _randn(2, 77, 16, seed=5)
    CFGDenoiser(EpsDenoiser(unet, schedule, image_cond=image_cond), cond, uncond, 7.0)(x, sigma)
    assert len(unet.calls) == 1
    x_in = unet.calls[0]["x_in"]
    assert x_in.shape == (4, 9, 8, 8)
    c_in = 1 / torch.sqrt(sigma[0] * sigma[0] + 1)
    assert torch.equal(x_in[:, :4], torch.cat([x, x]) * c_in)
    assert torch.equal(x_in[:, 4:], torch.cat([image_cond, image_cond]))  # unscaled, repeated per half
    assert torch.equal(unet.calls[0]["context"], torch.cat([cond, uncond]))
    assert torch.equal(image_cond, image_cond_copy)
    with pytest.raises(ValueError, match="image_cond"):
        EpsDenoiser(unet, schedule, image_cond=_randn(3, 5, 8, 8))(_randn(4, 4, 8, 8), _sigmas(4))


class StandIn:
    """Denoiser whose output depends on the conditioning tensor, so cond and uncond results differ."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond):
        self.calls.append((x.shape[0], cond))
        return torch.sin(x * 1.7) + cond.mean(dim=(1, 2)).reshape(-1, 1, 1, 1) + sigma.reshape(-1, 1, 1, 1) * 0.01


def test_cfg_combine_and_batching():
    x, sigma = _randn(3, 4, 8, 8), torch.full((3,), 2.5)
    cond, uncond = _randn(3, 77, 16, seed=6), _randn(3, 77, 16, seed=7)
    inner = StandIn()
    out = CFGDenoiser(inner, cond, uncond, 7.5)(x, sigma)
    assert len(inner.calls) == 1 and inner.calls[0][0] == 6
    assert torch.equal(inner.calls[0][1], torch.cat([cond, uncond]))  # cond first, uncond last
    d_c, d_u = StandIn()(x, sigma, cond), StandIn()(x, sigma, uncond)
    assert torch.equal(out, d_u + (d_c - d_u) * 7.5)  # A1111: D_u cloned, then (D_c - D_u) * scale added
    expected = d_u.double() + (d_c.double() - d_u.double()) * 7.5
    assert torch.allclose(out.double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(CFGDenoiser(StandIn(), cond, uncond, 1.0)(x, sigma), d_c)

    # different token lengths: two calls, cond half first, same combined result
    long_uncond = torch.cat([uncond, uncond], dim=1)
    inner = StandIn()
    out2 = CFGDenoiser(inner, cond, long_uncond, 7.5)(x, sigma)
    assert [c[0] for c in inner.calls] == [3, 3]
    assert torch.equal(inner.calls[0][1], cond) and torch.equal(inner.calls[1][1], long_uncond)
    d_u2 = StandIn()(x, sigma, long_uncond)
    assert torch.equal(out2, d_u2 + (d_c - d_u2) * 7.5)

    # a [1, L, C] conditioning is shared by the batch
    inner = StandIn()
    CFGDenoiser(inner, cond[:1], uncond[:1], 5.0)(x, sigma)
    assert inner.calls[0][1].shape == (6, 77, 16)
    with pytest.raises(ValueError, match="batch"):
        CFGDenoiser(StandIn(), cond[:2], uncond[:2], 5.0)(x, sigma)
    with pytest.raises(ValueError, match="cond must be"):
        CFGDenoiser(StandIn(), cond[0], uncond, 5.0)
    assert "cfg_scale=7.5" in repr(CFGDenoiser(inner, cond, uncond, 7.5))


def test_inpaint_blend():
    x, sigma = _randn(2, 4, 8, 8), torch.full((2,), 3.0)
    init = _randn(2, 4, 8, 8, seed=8)
    nmask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(9)) > 0.5).float()
    nmask[:, :, 0, :3] = torch.tensor([0.25, 0.5, 0.75])
    inner = StandIn()
    cond = _randn(2, 77, 16)
    blend = InpaintBlend(lambda x, s: inner(x, s, cond), init, nmask)
    out = blend(x, sigma)
    d = inner(x, sigma, cond)
    keep = (nmask == 0).expand_as(x)
    repaint = (nmask == 1).expand_as(x)
    assert torch.equal(out[keep], init[keep]) and torch.equal(out[repaint], d[repaint])
    assert torch.allclose(out, d * nmask + init * (1 - nmask), rtol=0, atol=0)
    assert "InpaintBlend" in repr(blend)
    with pytest.raises(ValueError, match="broadcast"):
        InpaintBlend(inner, init, torch.ones(2, 1, 4, 4))


@pytest.mark.parametrize("sampler", [sample_dpmpp_2m, sample_euler])
def test_full_stack_matches_kdiffusion(kdiff, schedule, sampler):
    """InpaintBlend(CFG(Eps)) under our sampler vs k-diffusion's sampler and denoiser with A1111's CFG and blend."""
    image_cond = _randn(2, 5, 8, 8, seed=10)
    init = _randn(2, 4, 8, 8, seed=11)
    nmask = (torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(12)) > 0.4).float()
    cond, uncond = _randn(2, 77, 16, seed=13), _randn(2, 77, 16, seed=14)
    sigmas = img2img_sigmas(get_sigmas_karras(20, schedule.sigma_min, schedule.sigma_max), 20, 0.75)
    x = init + _randn(2, 4, 8, 8, seed=15) * sigmas[0]

    ours_model = InpaintBlend(CFGDenoiser(EpsDenoiser(FakeUNet(9), schedule, image_cond=image_cond), cond, uncond,
                                          7.0), init, nmask)
    torch.manual_seed(0)
    ours = sampler(ours_model, x, sigmas, disable=True)

    inner = kdiff.external.DiscreteEpsDDPMDenoiser(FakeUNet(9), schedule.alphas_cumprod, quantize=False)

    def ref_model(x, sigma):
        # A1111 v1.10's CFG and inpaint blend, written out independently
        x_in, sigma_in = torch.cat([x, x]), torch.cat([sigma, sigma])
        c_in = 1 / (sigma_in ** 2 + 1) ** 0.5
        unet_in = torch.cat([x_in * c_in[:, None, None, None], torch.cat([image_cond, image_cond])], dim=1)
        eps = inner.inner_model(unet_in, inner.sigma_to_t(sigma_in), context=torch.cat([cond, uncond]))
        out = x_in + eps * (-sigma_in)[:, None, None, None]
        d_u = out[2:].clone()
        d_u += (out[:2] - out[2:]) * 7.0
        return d_u * nmask + init * (1 - nmask)

    torch.manual_seed(0)
    ref = getattr(kdiff.sampling, sampler.__name__)(ref_model, x, sigmas, disable=True)
    assert torch.equal(ours, ref), (ours - ref).abs().max()
    keep = (nmask == 0).expand_as(x)
    if sampler is sample_dpmpp_2m:  # last step returns the blended D: known region is init_latent exactly
        assert torch.equal(ours[keep], init[keep])
    else:
        assert torch.allclose(ours[keep], init[keep], atol=1e-6, rtol=0)


def test_tiny_inpainting_unet_end_to_end(kdiff, schedule):
    """The stack drives the library's 9-channel UNet (call contract unet(x, t, context=...)) like k-diffusion does."""
    unet_mod = pytest.importorskip("inpaintlab.unet")
    torch.manual_seed(0)
    config = unet_mod.UNetConfig(in_channels=9, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                                 attention_resolutions=(1,), num_heads=2, context_dim=32)
    unet = unet_mod.UNetModel(config).eval()
    init, image_cond = _randn(1, 4, 8, 8, seed=20), _randn(1, 5, 8, 8, seed=21)
    nmask = torch.zeros(1, 1, 8, 8)
    nmask[..., 2:6, 2:6] = 1
    cond, uncond = _randn(1, 77, 32, seed=22), _randn(1, 77, 32, seed=23)
    sigmas = img2img_sigmas(get_sigmas_karras(4, schedule.sigma_min, schedule.sigma_max), 4, 0.75)
    x = init + _randn(1, 4, 8, 8, seed=24) * sigmas[0]
    model = InpaintBlend(CFGDenoiser(EpsDenoiser(unet, schedule, image_cond=image_cond), cond, uncond, 7.0),
                         init, nmask)
    out = sample_dpmpp_2m(model, x, sigmas, disable=True)
    assert out.shape == x.shape and torch.isfinite(out).all()
    keep = (nmask == 0).expand_as(x)
    assert torch.equal(out[keep], init[keep]) and not torch.equal(out[~keep], init[~keep])

    class Wrapped(torch.nn.Module):  # k-diffusion's view: eps model taking c_concat-style inputs
        def forward(self, x_in, t, context):
            return unet(torch.cat([x_in, image_cond.repeat(x_in.shape[0], 1, 1, 1)], dim=1), t, context)

    inner = kdiff.external.DiscreteEpsDDPMDenoiser(Wrapped(), schedule.alphas_cumprod, quantize=False)

    def ref_model(x, sigma):
        out = inner(torch.cat([x, x]), torch.cat([sigma, sigma]), context=torch.cat([cond, uncond]))
        d = out[1:].clone()
        d += (out[:1] - out[1:]) * 7.0
        return d * nmask + init * (1 - nmask)

    ref = kdiff.sampling.sample_dpmpp_2m(ref_model, x, sigmas, disable=True)
    assert torch.equal(out, ref), (out - ref).abs().max()
