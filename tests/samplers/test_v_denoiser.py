"""v-prediction denoiser against k-diffusion's DiscreteVDDPMDenoiser (what CompVisVDenoiser wraps), and SDXL dict
conditioning through CFG: each row of the UNet batch gets its own prompt's context and ADM vector."""
import pytest
import torch

from inpaintlab.samplers import CFGDenoiser, DiscreteSchedule, EpsDenoiser, ScheduledCFGDenoiser, VDenoiser, stack_conds


class FakeVUNet:
    """Depends on the scaled input, fractional t, the context and (if given) the ADM vector; records calls."""

    def __init__(self, in_channels=4):
        self.in_channels, self.calls = in_channels, []

    def __call__(self, x_in, timesteps, context=None, y=None):
        assert x_in.shape[1] == self.in_channels and timesteps.shape == (x_in.shape[0],)
        self.calls.append({"x_in": x_in.clone(), "t": timesteps.clone(), "context": context, "y": y})
        out = torch.tanh(x_in[:, :4] * 1.1 - torch.cos(timesteps.reshape(-1, 1, 1, 1) / 131)) * 0.8
        if x_in.shape[1] > 4:
            out = out + 0.3 * x_in[:, 4:5] - 0.2 * x_in[:, 5:9]
        if context is not None:
            out = out + 0.05 * context.mean(dim=(1, 2)).reshape(-1, 1, 1, 1)
        if y is not None:
            out = out + 0.07 * y.mean(dim=1).reshape(-1, 1, 1, 1)
        return out


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("quantize", [False, True])
def test_v_denoiser_matches_kdiffusion(kdiff, quantize):
    schedule = DiscreteSchedule()
    x = _randn(6, 4, 8, 8) * 3
    sigma = torch.exp(torch.empty(6).uniform_(-4.0, 3.0, generator=torch.Generator().manual_seed(1)))
    cond = _randn(6, 77, 16, seed=2)
    ours_unet, ref_unet = FakeVUNet(), FakeVUNet()
    ours = VDenoiser(ours_unet, schedule, quantize=quantize)(x, sigma, cond=cond)
    ref = kdiff.external.DiscreteVDDPMDenoiser(ref_unet, schedule.alphas_cumprod, quantize=quantize)(
        x, sigma, context=cond)
    a, b = ours_unet.calls[0], ref_unet.calls[0]
    assert torch.equal(a["x_in"], b["x_in"]) and torch.equal(a["t"], b["t"].float())
    assert torch.equal(ours, ref), (ours - ref).abs().max()
    # and it is not the eps formula
    assert not torch.allclose(EpsDenoiser(FakeVUNet(), schedule)(x, sigma, cond=cond), ours, atol=1e-2)


def test_v_denoiser_float64_formula():
    schedule = DiscreteSchedule()
    x, sigma = _randn(3, 4, 8, 8).double() * 2, torch.tensor([0.1, 1.0, 14.0], dtype=torch.float64)
    unet = FakeVUNet()
    out = VDenoiser(unet, schedule)(x, sigma)
    s = sigma.reshape(-1, 1, 1, 1)
    v = unet(x / torch.sqrt(s ** 2 + 1), schedule.sigma_to_t(sigma).float())
    expected = x / (s ** 2 + 1) - v * s / torch.sqrt(s ** 2 + 1)
    assert torch.allclose(out, expected, rtol=0, atol=1e-12)


def test_v_denoiser_with_image_cond(kdiff):
    schedule = DiscreteSchedule()
    x, sigma = _randn(2, 4, 8, 8), torch.tensor([3.0, 0.5])
    ic = _randn(1, 5, 8, 8, seed=3)
    unet = FakeVUNet(9)
    VDenoiser(unet, schedule, image_cond=ic)(x, sigma)
    c_in = (1 / (sigma ** 2 + 1) ** 0.5).reshape(-1, 1, 1, 1)
    assert torch.equal(unet.calls[0]["x_in"][:, :4], x * c_in)
    assert torch.equal(unet.calls[0]["x_in"][:, 4:], ic.expand(2, -1, -1, -1))  # concatenated unscaled


def _sdxl_cond(seed, tokens=77, batch=1):
    return {"crossattn": _randn(batch, tokens, 16, seed=seed), "vector": _randn(batch, 12, seed=seed + 50)}


@pytest.mark.parametrize("same_length", [True, False])
def test_cfg_routes_sdxl_vectors_per_branch(same_length):
    """CFG with dict conds equals running each branch alone with its own context and vector."""
    schedule = DiscreteSchedule()
    x, sigma = _randn(2, 4, 8, 8), torch.tensor([2.0, 2.0])
    cond, uncond = _sdxl_cond(1), _sdxl_cond(2, tokens=77 if same_length else 154)
    unet = FakeVUNet()
    out = CFGDenoiser(VDenoiser(unet, schedule), cond, uncond, 7.0)(x, sigma)
    rows = torch.cat([c["y"] for c in unet.calls])
    assert torch.equal(rows, torch.cat([cond["vector"].expand(2, -1), uncond["vector"].expand(2, -1)]))
    inner = VDenoiser(FakeVUNet(), schedule)
    d_c = inner(x, sigma, cond={k: v.expand(2, *v.shape[1:]) for k, v in cond.items()})
    d_u = inner(x, sigma, cond={k: v.expand(2, *v.shape[1:]) for k, v in uncond.items()})
    assert torch.allclose(out, d_u + (d_c - d_u) * 7.0, atol=1e-6)


def test_and_composition_and_schedules_with_sdxl_dicts():
    schedule = DiscreteSchedule()
    a, b, u = _sdxl_cond(1), _sdxl_cond(3, tokens=154), _sdxl_cond(5)
    stacked = stack_conds([a, b])
    assert stacked["crossattn"].shape == (2, 154, 16) and torch.equal(stacked["vector"][1], b["vector"][0])
    assert torch.equal(stacked["crossattn"][0, 77:], a["crossattn"][0, -1:].expand(77, -1))
    x, sigma = _randn(1, 4, 8, 8), torch.tensor([1.5])
    unet = FakeVUNet()
    out = ScheduledCFGDenoiser(VDenoiser(unet, schedule), [[(20, a)], [(20, b)]], [(20, u)], 5.0, [1.0, 0.5])(
        x, sigma)
    inner = VDenoiser(FakeVUNet(), schedule)
    d_a = inner(x, sigma, cond={"crossattn": stacked["crossattn"][:1], "vector": a["vector"]})
    d_b = inner(x, sigma, cond=b)
    d_u = inner(x, sigma, cond=u)
    assert torch.allclose(out, d_u + (d_a - d_u) * 5.0 + (d_b - d_u) * 2.5, atol=1e-6)
    with pytest.raises(ValueError, match="SDXL dicts"):
        ScheduledCFGDenoiser(inner, [[(20, {"crossattn": a["crossattn"]})]], [(20, u)], 5.0)
    with pytest.raises(ValueError, match="both be tensors"):
        CFGDenoiser(inner, a, u["crossattn"], 5.0)
