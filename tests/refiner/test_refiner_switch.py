"""The refiner switch against A1111's rule (`apply_refiner`), re-derived by hand, step by step.

* by timestep: a combined run equals, to the bit, k-diffusion's own sampler driven by a hand-written denoiser that
  runs the base model's CFG until the first call whose sigma maps (float64 argmin over the 1000-entry table) to
  `(999 - t) / 1000 >= refiner_switch_at`, then the refiner's (its own conditioning) -- with the same noise; for
  Euler, DPM++ 2M (its history carries over the switch) and Heun (the switch can fall on a step's second call), for
  txt2img and img2img's truncated schedule;
* by sampling steps: `calls / total_steps(steps run) >= switch_at` (x2 for second-order samplers);
* DDIM (a timestep sampler): `t = int(max(t))`;
* 1.0 never switches; keys are written only with a switch.
An SD 1.x checkpoint refines another (tiny SD1 files, seeds 0 and 1). Tolerance: bit-identical (measured 0).
"""
from __future__ import annotations

import pytest
import torch
from helpers import ratio64, spying
from PIL import Image

import inpaintlab
from inpaintlab.samplers import CFGDenoiser, EpsDenoiser
from inpaintlab.tiny import make_tiny_checkpoint

PROMPT, NEGATIVE, CFG = "a red door", "blurry", 5.0


@pytest.fixture(scope="module")
def base(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture(scope="module")
def refiner(tmp_path_factory):
    path = make_tiny_checkpoint(tmp_path_factory.mktemp("refiner") / "tiny-refiner.safetensors", seed=1)
    return inpaintlab.load(path, kernels="torch")


def cfg_of(pipe):
    cond, uncond = pipe.encode_prompts([PROMPT]), pipe.encode_prompts([NEGATIVE], negative=True)
    return CFGDenoiser(EpsDenoiser(pipe.unet, pipe.schedule), cond, uncond, CFG)


def by_hand(base, refiner, switch_at, by_steps_total=None):
    """The denoiser A1111's rule describes, written independently: base CFG, then the refiner's from the switch."""
    models, table, state = (cfg_of(base), cfg_of(refiner)), base.schedule.sigmas, {"calls": 0, "at": None}

    def denoise(x, sigma, **kw):
        if state["at"] is None:
            done = state["calls"] / by_steps_total if by_steps_total else ratio64(sigma, table)
            if done >= switch_at:
                state["at"] = state["calls"]
        state["calls"] += 1
        return models[state["at"] is not None](x, sigma)
    return denoise, state


SAMPLERS = {"Euler": "sample_euler", "DPM++ 2M": "sample_dpmpp_2m", "Heun": "sample_heun"}


@pytest.mark.parametrize("sampler, switch_at, kind", [("Euler", 0.8, "txt2img"), ("Heun", 0.63, "txt2img"),
                                                      ("DPM++ 2M", 0.7, "img2img")])
def test_combined_run_is_base_then_refiner_by_hand(kdiff, base, refiner, sampler, switch_at, kind):
    settings = dict(steps=6, sampler=sampler, cfg_scale=CFG, seed=3, refiner_checkpoint=refiner,
                    refiner_switch_at=switch_at)
    if kind == "txt2img":
        result = base.txt2img(PROMPT, NEGATIVE, width=32, height=32, **settings)
    else:
        image = Image.effect_noise((32, 32), 60).convert("RGB")
        result = base.img2img(image, PROMPT, NEGATIVE, denoising_strength=0.6, **settings)
    denoise, state = by_hand(base, refiner, switch_at)
    with torch.inference_mode():
        expected = getattr(kdiff.sampling, SAMPLERS[sampler])(denoise, result.start_latent.clone(), result.sigmas,
                                                              disable=True)
    assert 0 < state["at"] < state["calls"], "the switch must fall inside the run for the test to mean anything"
    assert torch.equal(result.samples, expected)
    assert f"Refiner: tiny-refiner [{refiner.config.model_hash}], Refiner switch at: {switch_at}," in result.infotexts[0]


@pytest.mark.parametrize("sampler, switch_at", [("Heun", 0.4)])
def test_switch_by_sampling_steps(kdiff, base, refiner, sampler, switch_at):
    result = base.txt2img(PROMPT, NEGATIVE, width=32, height=32, steps=4, sampler=sampler, cfg_scale=CFG, seed=4,
                          refiner_checkpoint=refiner, refiner_switch_at=switch_at, refiner_switch_by_sample_steps=True)
    total = 4 * (2 if sampler == "Heun" else 1)  # A1111's total_steps: second-order samplers count both calls
    denoise, state = by_hand(base, refiner, switch_at, by_steps_total=total)
    with torch.inference_mode():
        expected = getattr(kdiff.sampling, SAMPLERS[sampler])(denoise, result.start_latent.clone(), result.sigmas,
                                                              disable=True)
    assert state["at"] == -(-switch_at * total // 1)  # the first call with calls / total >= switch_at
    assert torch.equal(result.samples, expected)
    assert "Refiner switch by sampling steps: True, Refiner: tiny-refiner" in result.infotexts[0]


def test_ddim_switches_on_the_integer_timestep(base, refiner):
    switch_at = 0.55
    with spying(base, refiner) as (b, r):
        result = base.txt2img(PROMPT, NEGATIVE, width=32, height=32, steps=10, sampler="DDIM", seed=5,
                              refiner_checkpoint=refiner, refiner_switch_at=switch_at)
    ts = [t for t, _, _ in b.calls]  # cond and uncond run in one UNet call per step
    assert b.calls and r.calls and len(b.calls) + len(r.calls) == len(result.sigmas) - 1  # DDIM: one call per step
    assert all((999 - int(t)) / 1000 < switch_at for t in ts)
    assert (999 - int(r.calls[0][0])) / 1000 >= switch_at
    assert "Refiner switch at: 0.55" in result.infotexts[0]


def test_switch_at_one_never_switches(base, refiner):
    with spying(refiner) as (r,):
        result = base.txt2img(PROMPT, NEGATIVE, width=32, height=32, steps=5, sampler="Euler", seed=6,
                              refiner_checkpoint=refiner, refiner_switch_at=1.0)
    plain = base.txt2img(PROMPT, NEGATIVE, width=32, height=32, steps=5, sampler="Euler", seed=6)
    assert not r.calls and torch.equal(result.samples, plain.samples) and result.infotexts == plain.infotexts
