"""The guidance techniques through the pipeline's technique hooks, on a tiny UNet: each equals its isolated function,
neutral settings are bit-exact, and no hook is left on the UNet."""
from __future__ import annotations

import types

import pytest
import torch
from guidance_helpers import randn, tiny_unet

from inpaintlab.guidance.cfg_rescale import cfg_rescale
from inpaintlab.guidance.cfg_techniques import PAG, CFGRescale, DynamicThresholdingTechnique, SkipUncond
from inpaintlab.guidance.dynamic_thresholding import DynamicThresholding
from inpaintlab.guidance.freeu import FreeUSettings, FreeUStage
from inpaintlab.guidance.pag import PerturbedAttention, SmoothedEnergy, pag_combine
from inpaintlab.guidance.tome import TokenMerging as TokenMergingPatch
from inpaintlab.guidance.unet_techniques import SEG, FreeU, TokenMerging
from inpaintlab.pipeline.technique import Hooks, TechniqueError
from inpaintlab.samplers import sampler_config
from inpaintlab.samplers.cfg import CFGDenoiser, a1111_combine
from inpaintlab.samplers.denoisers import EpsDenoiser
from inpaintlab.samplers.schedules import DiscreteSchedule

UNET = tiny_unet()
SCHEDULE = DiscreteSchedule()


def _job(steps=4, sampler="Euler"):
    return types.SimpleNamespace(pipe=types.SimpleNamespace(unet=UNET), settings={"steps": steps}, step=0,
                                 sampling_steps=steps, sampler_config=sampler_config(sampler), sampler=sampler,
                                 extra={}, state={})


def _model(job, techniques, cond, uncond, cfg_scale=6.0):
    """The stack the pipeline builds: wrap_unet, EpsDenoiser, CFGDenoiser with the combine hooks, wrap_cfg."""
    hooks = Hooks(techniques)
    unet = UNET
    for t in hooks.having("wrap_unet"):
        unet = t.wrap_unet(job, unet)

    def combine(parts):
        d = hooks.first("combine_cfg", job, parts)
        d = a1111_combine(parts) if d is None else d
        for t in hooks.having("after_cfg"):
            d = t.after_cfg(job, parts, d)
        return d
    cfg = CFGDenoiser(EpsDenoiser(unet, SCHEDULE), cond, uncond, cfg_scale, combine=combine)
    for t in hooks.having("wrap_cfg"):
        cfg = t.wrap_cfg(job, cfg)
    return cfg


def _inputs(b=2, seed=0):
    return randn(b, 4, 8, 8, seed=seed), torch.tensor([3.0] * b), randn(b, 7, 64, seed=seed + 1), \
        randn(b, 7, 64, seed=seed + 2)


def _raw(x, sigma, cond, uncond):
    inner = EpsDenoiser(UNET, SCHEDULE)
    out = inner(torch.cat([x, x]), torch.cat([sigma, sigma]), cond=torch.cat([cond, uncond]))
    return out[:x.shape[0]], out[x.shape[0]:]


def _no_hooks_left():
    return all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in vars(m) for m in UNET.modules())


@torch.no_grad()
def test_neutral_techniques_are_bit_exact():
    x, sigma, cond, uncond = _inputs()
    job = _job()
    plain = _model(job, [], cond, uncond)(x, sigma)
    neutral = [FreeU(FreeUSettings(stages=(FreeUStage(),) * 3)), TokenMerging(0.0), SEG(0.0), PAG(0.0),
               CFGRescale(0.0), SkipUncond()]
    assert torch.equal(_model(job, neutral, cond, uncond)(x, sigma), plain)
    assert _no_hooks_left()


@torch.no_grad()
def test_skip_early_and_ngms_run_cond_rows_only():
    x, sigma, cond, uncond = _inputs()
    job = _job(steps=4)
    model = _model(job, [SkipUncond(skip_early_cond=0.5)], cond, uncond)
    c, u = _raw(x, sigma, cond, uncond)
    cond_only = EpsDenoiser(UNET, SCHEDULE)(x, sigma, cond=cond)
    outs = [model(x, sigma) for _ in range(4)]
    assert all(torch.equal(o, cond_only) for o in outs[:3])  # calls 0, 1, 2: call/4 <= 0.5
    assert torch.equal(outs[3], a1111_combine(types.SimpleNamespace(cond=c, uncond=u, weights=[1.0],
                                                                     cfg_scale=6.0)))
    assert job.extra == {"Skip Early CFG": 0.5}
    job = _job(steps=4)
    model = _model(job, [SkipUncond(s_min_uncond=5.0)], cond, uncond)
    outs = [model(x, sigma) for _ in range(2)]
    assert not torch.equal(outs[0], cond_only) and torch.equal(outs[1], cond_only)  # odd calls only
    assert job.extra == {"NGMS": 5.0}


@torch.no_grad()
def test_dynamic_thresholding_and_cfg_rescale_replace_the_combination():
    x, sigma, cond, uncond = _inputs()
    c, u = _raw(x, sigma, cond, uncond)
    settings = DynamicThresholding(mimic_scale=3.0, cfg_mode="Linear Down")
    job = _job(steps=5, sampler="Heun")  # second order: 9 calls
    model = _model(job, [DynamicThresholdingTechnique(settings), CFGRescale(0.7)], cond, uncond, cfg_scale=9.0)
    model(x, sigma)
    got = model(x, sigma)
    assert torch.equal(got, settings.combine(c, u, 9.0, 1, 9))  # dynamic thresholding wins over CFG rescale
    job = _job()
    got = _model(job, [CFGRescale(0.7)], cond, uncond)(x, sigma)
    assert torch.equal(got, cfg_rescale(c, u, 6.0, 0.7))
    with pytest.raises(TechniqueError, match="DDIM"):
        DynamicThresholdingTechnique(settings).setup(_job(sampler="DDIM"))


@torch.no_grad()
def test_pag_extra_pass_and_combination():
    x, sigma, cond, uncond = _inputs()
    c, u = _raw(x, sigma, cond, uncond)
    with PerturbedAttention(UNET):
        ptb = EpsDenoiser(UNET, SCHEDULE)(x, sigma, cond=cond)
    job = _job()
    got = _model(job, [PAG(3.0, sanf=True)], cond, uncond)(x, sigma)
    assert torch.equal(got, pag_combine(c, u, ptb, 6.0, 3.0, sanf=True))
    job.step = 200  # outside the window: plain CFG
    plain = _model(_job(), [], cond, uncond)(x, sigma)
    assert torch.equal(_model(job, [PAG(3.0, end=150)], cond, uncond)(x, sigma), plain)
    assert _no_hooks_left()
    extra = {}
    PAG(3.0).infotext(job, extra)
    assert extra == {"PAG Active": True, "PAG SANF": False, "PAG Scale": 3, "PAG Start Step": 0, "PAG End Step": 150}


@torch.no_grad()
def test_unet_techniques_equal_their_hooks_and_clean_up():
    x, sigma, cond, uncond = _inputs()
    settings = FreeUSettings(version="1", stages=(FreeUStage(1.2, 0.5), FreeUStage(1.1, 0.7)))
    job = _job()
    model = _model(job, [FreeU(settings)], cond, uncond)
    got = [model(x, sigma) for _ in range(5)]  # calls 4+ are past the schedule (stop 1.0 of 4 steps)
    assert _no_hooks_left()
    hook = settings.hook(UNET, 4)
    ref = _model(_job(), [], cond, uncond)(x, sigma)
    hook.remove()
    assert torch.equal(got[0], ref) and torch.equal(got[4], _model(_job(), [], cond, uncond)(x, sigma))
    with TokenMergingPatch(UNET, 0.5):
        ref = _model(_job(), [], cond, uncond)(x, sigma)
    assert torch.equal(_model(_job(), [TokenMerging(0.5)], cond, uncond)(x, sigma), ref)
    with SmoothedEnergy(UNET, 11.0, 8, 8):
        ref = _model(_job(), [], cond, uncond)(x, sigma)
    assert torch.equal(_model(_job(), [SEG(11.0)], cond, uncond)(x, sigma), ref)
    assert _no_hooks_left()
    extra = {}
    for t in (FreeU(settings), TokenMerging(0.5, write_hr=True), SEG(11.0), CFGRescale(0.7)):
        t.infotext(job, extra)
    assert extra["Token merging ratio"] == 0.5 and extra["Token merging ratio hr"] == 0.5
    assert extra["SEG Blur Sigma"] == 11 and extra["CFG Rescale"] == 0.7 and extra["FreeU Version"] == "1"
