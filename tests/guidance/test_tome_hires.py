"""`token_merging_ratio_hr` (A1111's "Token merging ratio for high-res pass"): merging at the hires ratio in the hires
fix's second pass only, with A1111's precedence (`get_token_merging_ratio(for_hr=True)`: the hr ratio, else the base
ratio) and its infotext rule (`Token merging ratio hr` when hires fix is on and that ratio is not 0; both keys in
their fixed slots after ENSD). The merge itself is the tomesd-checked one (test_tome.py); here a spy on it records
which ratio each UNet call of each pass ran with."""
from __future__ import annotations

import numpy as np
import pytest

import inpaintlab
import inpaintlab.guidance.unet_techniques as unet_techniques
from inpaintlab.guidance.tome import token_merging_ratio
from inpaintlab.infotext import parse_infotext, settings_from_infotext

BASE = dict(steps=2, sampler="Euler", seed=3, width=32, height=32)
HIRES = dict(enable_hr=True, hr_scale=1.5, hr_upscaler="Latent", denoising_strength=0.5)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


@pytest.fixture
def calls(monkeypatch):
    seen: list[tuple[float, int]] = []
    real = unet_techniques.TokenMergingPatch

    class Spy(real):
        def __enter__(self):
            seen.append(self.ratio)
            return super().__enter__()

    monkeypatch.setattr(unet_techniques, "TokenMergingPatch", Spy)
    return seen


def _run(pipe, **kw):
    return pipe.txt2img("a red house", **BASE, **kw)


def test_precedence_table():
    # first pass: the base ratio; hires pass: hr ratio, else the base ratio (the img2img option plays no part)
    for ratio, img2img, hr, first, second in [(0.0, 0.0, 0.5, 0.0, 0.5), (0.3, 0.0, 0.0, 0.3, 0.3),
                                              (0.3, 0.6, 0.5, 0.3, 0.5), (0.0, 0.6, 0.0, 0.0, 0.0)]:
        assert token_merging_ratio("txt2img", ratio, img2img, hr) == first
        assert token_merging_ratio("txt2img", ratio, img2img, hr, hires=True) == second


@pytest.mark.parametrize("ratio,hr,first,second", [(0.0, 0.5, None, 0.5), (0.3, 0.0, 0.3, 0.3), (0.3, 0.6, 0.3, 0.6)])
def test_each_pass_merges_at_its_ratio_and_the_keys_sit_in_their_slots(pipe, calls, ratio, hr, first, second):
    res = _run(pipe, token_merging_ratio=ratio, token_merging_ratio_hr=hr, **HIRES)
    first_calls = [] if first is None else [first] * 2          # Euler, 2 steps, one batched UNet call each
    assert calls == first_calls + [second] * 2, calls            # second pass: 2 steps over the tail of 4
    fields = parse_infotext(res.infotext)
    assert fields.get("Token merging ratio") == (None if first is None else str(first))
    assert fields["Token merging ratio hr"] == str(second)
    keys = list(fields)
    assert keys.index("Denoising strength") < keys.index("Token merging ratio hr") < keys.index("Hires upscale")
    stored = settings_from_infotext(res.infotext, strict=True)
    assert stored["token_merging_ratio_hr"] == second and stored.get("token_merging_ratio", 0.0) == (first or 0.0)


def test_without_hires_the_hr_ratio_does_nothing_and_is_not_written(pipe, calls):
    res = _run(pipe, token_merging_ratio=0.3, token_merging_ratio_hr=0.6)
    assert calls == [0.3, 0.3]
    fields = parse_infotext(res.infotext)
    assert fields["Token merging ratio"] == "0.3" and "Token merging ratio hr" not in fields
    plain = _run(pipe, token_merging_ratio_hr=0.6)
    assert calls == [0.3, 0.3] and "Token merging" not in plain.infotext


def test_hires_ratio_changes_only_the_second_pass(pipe):
    plain = _run(pipe, **HIRES)
    merged = _run(pipe, token_merging_ratio_hr=0.5, **HIRES)
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(merged.images[0]))
    # the fallback is the base ratio itself: an explicit equal hr ratio is the same job, bit for bit
    a = _run(pipe, token_merging_ratio=0.5, **HIRES)
    b = _run(pipe, token_merging_ratio=0.5, token_merging_ratio_hr=0.5, **HIRES)
    assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0])) and a.infotext == b.infotext
