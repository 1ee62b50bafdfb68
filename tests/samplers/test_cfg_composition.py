"""CFG with AND sub-prompts and per-call prompt schedules (A1111 v1.10 ``CFGDenoiser``).

Oracle: the formula D = D_u + sum_j (D_c,j - D_u) * (w_j * cfg) evaluated image by image on stand-in denoisers whose
output depends on each row's x, sigma and conditioning, in float64 and in A1111's float32 order.
"""
import pytest
import torch

from inpaintlab.samplers import CFGDenoiser, DiscreteSchedule, EpsDenoiser, sample_euler
from inpaintlab.samplers.denoisers import ScheduledCFGDenoiser, stack_conds


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class StandIn:
    """Row-wise denoiser that depends on x, sigma and the whole conditioning row; records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, cond, **kwargs):
        self.calls.append({"x": x.clone(), "sigma": sigma.clone(), "cond": cond.clone(), **kwargs})
        summary = (cond * torch.linspace(-1, 1, cond.shape[1])[None, :, None]).mean(dim=(1, 2))
        return torch.sin(x * 1.7) + summary.reshape(-1, 1, 1, 1) * (1 + x) + sigma.reshape(-1, 1, 1, 1) * 0.01


def _explicit(x, sigma, conds, uncond, weights, cfg, dtype):
    """conds[i][j]: [L, C] for image i, sub-prompt j; uncond[i]: [L', C]."""
    out = []
    for i in range(x.shape[0]):
        xi, si = x[i:i + 1].to(dtype), sigma[i:i + 1].to(dtype)
        d_u = StandIn()(xi, si, uncond[i:i + 1].to(dtype))[0]
        d = d_u.clone()
        for j, w in enumerate(weights):
            d_c = StandIn()(xi, si, conds[i][j][None].to(dtype))[0]
            d += (d_c - d_u) * (w * cfg)
        out.append(d)
    return torch.stack(out)


@pytest.mark.parametrize("uncond_len", [77, 154])
def test_and_formula_and_batching(uncond_len):
    batch, n, weights, cfg = 2, 3, [1.0, 0.5, -0.3], 6.0
    x, sigma = _randn(batch, 4, 8, 8, seed=1), torch.tensor([3.1, 0.7])
    cond = _randn(batch * n, 77, 16, seed=2)  # image-major: image 0's three, then image 1's
    uncond = _randn(batch, uncond_len, 16, seed=3)
    inner = StandIn()
    out = CFGDenoiser(inner, cond, uncond, cfg, cond_weights=weights)(x, sigma)

    conds = [[cond[i * n + j] for j in range(n)] for i in range(batch)]
    expected64 = _explicit(x, sigma, conds, uncond, weights, cfg, torch.float64)
    err = (out.double() - expected64).abs().max().item()
    assert err < 5e-6, err  # measured 8e-7 (|D| up to 1.5)
    # A1111's float32 order, term by term (measured: identical); batched rows may round differently, so 1e-6
    assert torch.allclose(out, _explicit(x, sigma, conds, uncond, weights, cfg, torch.float32), rtol=0, atol=1e-6)

    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    if uncond_len == 77:  # one call: [x0 x3, x1 x3, uncond batch]
        assert len(inner.calls) == 1
        call = inner.calls[0]
        assert torch.equal(call["x"], torch.cat([x[rows], x]))
        assert torch.equal(call["sigma"], torch.cat([sigma[rows], sigma]))
        assert torch.equal(call["cond"], torch.cat([cond, uncond]))
        assert call["image_index"].tolist() == [0, 0, 0, 1, 1, 1, 0, 1]
    else:  # conds in chunks of 2B rows, then the uncond batch
        assert [c["x"].shape[0] for c in inner.calls] == [4, 2, 2]
        assert torch.equal(torch.cat([c["cond"] for c in inner.calls[:2]]), cond)
        assert torch.equal(inner.calls[2]["cond"], uncond)
        assert [c["image_index"].tolist() for c in inner.calls] == [[0, 0, 0, 1], [1, 1], [0, 1]]


def test_shared_conds_single_weight_and_errors():
    batch, x, sigma = 3, _randn(3, 4, 8, 8, seed=4), torch.tensor([5.0, 1.0, 0.2])
    shared = _randn(2, 77, 16, seed=5)
    uncond = _randn(1, 77, 16, seed=6)
    a = CFGDenoiser(StandIn(), shared, uncond, 7.0, cond_weights=[0.8, 1.2])(x, sigma)
    b = CFGDenoiser(StandIn(), shared.repeat(batch, 1, 1), uncond, 7.0, cond_weights=[0.8, 1.2])(x, sigma)
    assert torch.equal(a, b)

    # one sub-prompt at weight 1.0 is exactly plain CFG, with no image_index passed (plain inner models work)
    cond = _randn(batch, 77, 16, seed=7)
    plain = CFGDenoiser(StandIn(), cond, uncond, 7.0)(x, sigma)
    inner = StandIn()
    assert torch.equal(CFGDenoiser(inner, cond, uncond, 7.0, cond_weights=[1.0])(x, sigma), plain)
    assert "image_index" not in inner.calls[0]

    with pytest.raises(ValueError, match="multiple"):
        CFGDenoiser(StandIn(), cond, uncond, 7.0, cond_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="at least one"):
        CFGDenoiser(StandIn(), cond, uncond, 7.0, cond_weights=[])
    with pytest.raises(ValueError, match="fits neither"):
        CFGDenoiser(StandIn(), _randn(4, 77, 16), uncond, 7.0, cond_weights=[1.0, 1.0])(x, sigma)
    assert "cond_weights=[0.8, 1.2]" in repr(CFGDenoiser(StandIn(), shared, uncond, 7.0, cond_weights=[0.8, 1.2]))


class NineChannelUNet:
    def __init__(self):
        self.calls = []

    def __call__(self, x_in, t, context=None):
        self.calls.append(x_in.clone())
        return torch.tanh(x_in[:, :4]) + 0.2 * x_in[:, 4:5] - 0.1 * x_in[:, 5:9] + context.mean() * 0.0


def test_image_cond_follows_the_rows():
    batch = 2
    image_cond = _randn(batch, 5, 8, 8, seed=8)
    unet = NineChannelUNet()
    eps = EpsDenoiser(unet, DiscreteSchedule(), image_cond=image_cond)
    x, sigma = _randn(batch, 4, 8, 8, seed=9), torch.tensor([2.0, 0.5])
    CFGDenoiser(eps, _randn(3, 77, 16), _randn(1, 77, 16), 5.0, cond_weights=[1, 1, 1])(x, sigma)
    rows = [0, 0, 0, 1, 1, 1, 0, 1]
    assert torch.equal(unet.calls[0][:, 4:], image_cond[rows])
    # a shared [1, 5, h, w] image_cond goes to every row
    unet = NineChannelUNet()
    eps = EpsDenoiser(unet, DiscreteSchedule(), image_cond=image_cond[:1])
    CFGDenoiser(eps, _randn(2, 77, 16), _randn(1, 154, 16), 5.0, cond_weights=[1, 1])(x, sigma)
    assert all(torch.equal(c[:, 4:], image_cond[:1].expand(c.shape[0], -1, -1, -1)) for c in unet.calls)
    with pytest.raises(ValueError, match="image_index"):
        eps(x, sigma, cond=_randn(2, 77, 16), image_index=torch.tensor([0]))


def test_stack_conds_pads_with_the_last_vector():
    a, b = _randn(1, 77, 8, seed=10), _randn(1, 154, 8, seed=11)
    stacked = stack_conds([a, b])
    assert stacked.shape == (2, 154, 8)
    assert torch.equal(stacked[0, :77], a[0]) and torch.equal(stacked[1], b[0])
    assert torch.equal(stacked[0, 77:], a[0, -1:].expand(77, -1))


def test_scheduled_cfg_picks_entries_by_call_count():
    e = [_randn(1, 77, 16, seed=20 + i) for i in range(5)]
    u = [_randn(1, 77, 16, seed=30 + i) for i in range(2)]
    cond_schedules = [[(1, e[0]), (3, e[1])], [(2, e[2]), (3, e[3])]]
    uncond_schedule = [(0, u[0]), (3, u[1])]
    inner = StandIn()
    model = ScheduledCFGDenoiser(inner, cond_schedules, uncond_schedule, 4.0, [1.0, 0.5])
    x, sigma = _randn(2, 4, 8, 8, seed=12), torch.tensor([1.0, 2.0])
    expected = {0: (0, 2, 0), 1: (0, 2, 1), 2: (1, 2, 1), 3: (1, 3, 1), 4: (0, 2, 0)}  # call 4: past the end -> first
    for call, (c0, c1, un) in expected.items():
        out = model(x, sigma)
        got = inner.calls[-1]["cond"]
        assert torch.equal(got, torch.cat([e[c0], e[c1], e[c0], e[c1], u[un], u[un]])), call
        ref = CFGDenoiser(StandIn(), torch.cat([e[c0], e[c1]]), u[un], 4.0, cond_weights=[1.0, 0.5])(x, sigma)
        assert torch.equal(out, ref)
    assert model.calls == 5
    with pytest.raises(ValueError, match=r"\[1, L, C\]"):
        ScheduledCFGDenoiser(inner, [[(1, _randn(2, 77, 16))]], uncond_schedule, 4.0)
    with pytest.raises(ValueError, match="cond_weights"):
        ScheduledCFGDenoiser(inner, cond_schedules, uncond_schedule, 4.0, [1.0])


def test_constant_schedule_in_a_sampler_matches_plain_cfg():
    x, sigmas = _randn(1, 4, 8, 8, seed=13) * 10, torch.tensor([10.0, 4.0, 1.5, 0.3, 0.0])
    cond, uncond = _randn(1, 77, 16, seed=14), _randn(1, 77, 16, seed=15)
    plain = sample_euler(CFGDenoiser(StandIn(), cond, uncond, 7.0), x, sigmas, disable=True)
    scheduled = sample_euler(ScheduledCFGDenoiser(StandIn(), [[(4, cond)]], [(4, uncond)], 7.0), x, sigmas,
                             disable=True)
    assert torch.equal(plain, scheduled)
