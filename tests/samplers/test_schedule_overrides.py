"""A1111's schedule overrides: which keys are written for which schedule type, and the sigmas they change."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.infotext import parse_infotext, settings_from_infotext
from inpaintlab.samplers import build_sigmas
from inpaintlab.samplers.overrides import schedule_overrides
from inpaintlab.samplers.schedules import DiscreteSchedule, get_sigmas_karras


def test_keys_per_schedule_type():
    lo, hi = 0.0292, 14.6146
    assert schedule_overrides("Automatic", lo, hi, 0.1, 10.0, 5.0) == ({"beta_alpha": 0.6, "beta_beta": 0.6}, {})
    kw, keys = schedule_overrides("Beta", lo, hi)
    assert keys == {"Beta schedule alpha": 0.6, "Beta schedule beta": 0.6}  # always written for Beta
    kw, keys = schedule_overrides("Karras", lo, hi, 0.1, hi, 7.0)
    assert keys == {"Schedule min sigma": 0.1} and kw["sigma_min"] == 0.1 and "sigma_max" not in kw
    kw, keys = schedule_overrides("Polyexponential", lo, hi, rho=2.0)
    assert keys == {"Schedule rho": 2.0}
    assert schedule_overrides("Exponential", lo, hi, rho=2.0)[1] == {}  # no default rho there


def test_overrides_change_the_karras_sigmas():
    table = DiscreteSchedule()
    kw, _ = schedule_overrides("Karras", table.sigma_min, table.sigma_max, 0.1, 10.0, 5.0)
    got = build_sigmas(table, "DPM++ 2M", "Karras", 6, **kw)
    assert torch.equal(got, get_sigmas_karras(6, 0.1, 10.0, rho=5.0))


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def test_beta_keys_written_read_back_and_replayed(pipe):
    fast = dict(steps=3, seed=5, width=64, height=64, sampler="Euler", scheduler="Beta")
    result = pipe.txt2img("a cat", **fast, beta_dist_alpha=0.5, sigma_max=9.0)
    fields = parse_infotext(result.infotext)
    assert fields["Beta schedule alpha"] == "0.5" and fields["Beta schedule beta"] == "0.6"
    assert fields["Schedule max sigma"] == "9.0"
    default = parse_infotext(pipe.txt2img("a cat", **fast).infotext)
    assert default["Beta schedule alpha"] == "0.6" and "Schedule max sigma" not in default
    back = settings_from_infotext(result.infotext, strict=True)
    assert back["beta_dist_alpha"] == 0.5 and back["sigma_max"] == 9.0
    prompt = back.pop("prompt")
    back.pop("negative_prompt")
    txt2img_rows = registry.for_command("txt2img")
    back = {k: v for k, v in back.items() if k in txt2img_rows}
    assert torch.equal(pipe.txt2img(prompt, **back).samples, result.samples)
    assert "Beta schedule" not in pipe.txt2img("a cat", **{**fast, "scheduler": "Automatic"}).infotext
    assert np.asarray(result.images[0]).shape == (64, 64, 3) and isinstance(result.images[0], Image.Image)
