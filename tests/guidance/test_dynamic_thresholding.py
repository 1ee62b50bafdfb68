"""Dynamic thresholding against a float64 numpy re-derivation of the extension's algorithm."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from guidance_helpers import randn

from inpaintlab.guidance.dynamic_thresholding import SCALE_MODES, DynamicThresholding, interpret_scale


def _ref(cond, uncond, cfg, s: DynamicThresholding, weights, mimic=None):
    c, u = cond.double().numpy(), uncond.double().numpy()
    b = u.shape[0]
    n = c.shape[0] // b
    w = np.asarray(weights, dtype=np.float64).reshape(1, n, 1, 1, 1)
    rel = ((c.reshape(b, n, *u.shape[1:]) - u[:, None]) * w).sum(1)
    mim, tgt = u + rel * (s.mimic_scale if mimic is None else mimic), u + rel * cfg
    mf, tf = mim.reshape(b, u.shape[1], -1), tgt.reshape(b, u.shape[1], -1)
    mm, tm = mf.mean(2, keepdims=True), tf.mean(2, keepdims=True)
    m0, t0 = mf - mm, tf - tm
    axis, kd = (2, True) if s.separate_feature_channels else (None, False)
    q = s.threshold_percentile / 100
    if s.variability_measure == "STD":
        sm, st = m0.std(axis=axis, ddof=1, keepdims=kd), t0.std(axis=axis, ddof=1, keepdims=kd)
    else:
        sm = np.abs(m0).max(axis=axis, keepdims=kd)
        st = np.quantile(np.abs(t0), q, axis=axis, keepdims=kd)
    if s.scaling_startpoint == "ZERO":
        res = tf * (sm / st)
    elif s.variability_measure == "STD":
        res = t0 / st * sm + tm
    else:
        big = np.maximum(sm, st)
        res = np.clip(t0, -big, big) / big * sm + tm
    res = res.reshape(tgt.shape)
    return res * s.interpolate_phi + tgt * (1 - s.interpolate_phi)


@pytest.mark.parametrize("kw", [
    {}, {"variability_measure": "STD"}, {"scaling_startpoint": "ZERO"},
    {"scaling_startpoint": "ZERO", "variability_measure": "STD"}, {"separate_feature_channels": False},
    {"threshold_percentile": 95.0, "mimic_scale": 4.0}, {"interpolate_phi": 0.3},
    {"separate_feature_channels": False, "threshold_percentile": 90.0, "interpolate_phi": 0.6}])
def test_combine_matches_float64(kw):
    s = DynamicThresholding(**kw)
    uncond, cond = randn(2, 4, 6, 5, seed=1), randn(4, 4, 6, 5, seed=2)
    weights = [0.7, 0.5]
    got = s.combine(cond, uncond, 12.0, call=3, total_calls=10, weights=weights)
    ref = _ref(cond, uncond, 12.0, s, weights)
    assert np.abs(got.numpy() - ref).max() < 1e-5 * np.abs(ref).max()


def test_neutral_settings_reproduce_cfg():
    uncond, cond = randn(2, 4, 8, 8, seed=3), randn(2, 4, 8, 8, seed=4)
    cfg = uncond + (cond - uncond) * 7.0
    got = DynamicThresholding(mimic_scale=7.0).combine(cond, uncond, 7.0, 0, 20)
    assert (got - cfg).abs().max() < 1e-5  # mimic == CFG: equal up to rounding (no short-cut, as A1111's)
    got = DynamicThresholding(mimic_scale=3.0, interpolate_phi=0.0).combine(cond, uncond, 7.0, 0, 20)
    assert torch.equal(got, cfg)  # phi = 0: exactly A1111's CFG


def _f64_shape(mode: str, frac: float, v: float) -> float:
    return {"Constant": 1.0, "Linear Down": 1 - frac, "Cosine Down": math.cos(frac * 1.5707),
            "Half Cosine Down": math.cos(frac), "Linear Up": frac, "Cosine Up": 1 - math.cos(frac * 1.5707),
            "Half Cosine Up": 1 - math.cos(frac), "Power Up": frac ** v, "Power Down": 1 - frac ** v,
            "Linear Repeating": abs(0.5 - (frac * v) % 1.0) * 2, "Cosine Repeating":
                math.cos(frac * 6.28318 * v) * 0.5 + 0.5, "Sawtooth": (frac * v) % 1.0}[mode]


@pytest.mark.parametrize("mode", SCALE_MODES)
def test_scale_schedules(mode):
    for call in (0, 3, 7, 9):
        frac = call / 9
        ref = (12.0 - 2.0) * _f64_shape(mode, frac, 3.0) + 2.0
        assert interpret_scale(12.0, mode, 2.0, call, 10, 3.0) == pytest.approx(ref, abs=1e-12)


def test_schedule_drives_the_scales():
    s = DynamicThresholding(mimic_scale=5.0, mimic_mode="Linear Down", mimic_scale_min=1.0, cfg_mode="Cosine Up")
    uncond, cond = randn(1, 4, 6, 6, seed=5), randn(1, 4, 6, 6, seed=6)
    got = s.combine(cond, uncond, 9.0, call=4, total_calls=9)
    mimic, cfg = 4.0 * (1 - 0.5) + 1.0, 9.0 * (1 - math.cos(0.5 * 1.5707))
    assert np.abs(got.numpy() - _ref(cond, uncond, cfg, s, [1.0], mimic=mimic)).max() < 1e-5


def test_infotext_keys_and_round_trip():
    s = DynamicThresholding(mimic_scale=5.5, mimic_mode="Power Up", mimic_scale_min=1.0, scheduler_value=2.0,
                            separate_feature_channels=False, scaling_startpoint="ZERO", variability_measure="STD",
                            interpolate_phi=0.7, threshold_percentile=99.0)
    info = s.infotext()
    assert list(info) == ["Dynamic thresholding enabled", "Mimic scale", "Separate Feature Channels",
                          "Scaling Startpoint", "Variability Measure", "Interpolate Phi", "Threshold percentile",
                          "Mimic mode", "Mimic scale minimum", "Scheduler value"]
    assert DynamicThresholding.from_infotext({k: str(v) for k, v in info.items()}) == s
    assert DynamicThresholding.from_infotext({"Dynamic thresholding enabled": "True", "Mimic scale": "7",
                                              "Mimic mode": "Power Down", "Power scheduler value": "3"}) == \
        DynamicThresholding(mimic_mode="Power Down", scheduler_value=3.0)
    assert DynamicThresholding.from_infotext({"Mimic scale": "7"}) is None
    assert "Scheduler value" not in DynamicThresholding(cfg_mode="Linear Up").infotext()
    with pytest.raises(ValueError, match="mode"):
        DynamicThresholding(cfg_mode="Wobble")
