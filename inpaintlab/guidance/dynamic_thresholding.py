"""Dynamic thresholding ("CFG Scale Fix", the sd-dynamic-thresholding extension): replaces A1111's CFG combination of
the x0 predictions.

Two targets are built from the same guidance direction, one at the mimic scale and one at the real CFG scale; each
is centred on its per-channel mean, and the spread of the CFG target is matched to that of the mimic target (AD:
clamp at a percentile, rescale to the mimic's max |·|; STD: standard deviations). An optional blend with plain CFG
(φ) follows. Both scales may follow a schedule over the denoiser calls, ``frac = call / (total_calls − 1)``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch

from ..names import MEASURES, SCALE_MODES, STARTPOINTS  # noqa: F401 (the extension's choices)

# Modes whose shape uses the scheduler value (its key is written only for these).
SCHEDULER_VALUE_MODES = ("Power Up", "Power Down", "Linear Repeating", "Cosine Repeating", "Sawtooth")


def interpret_scale(scale: float, mode: str, minimum: float, call: int, total_calls: int,
                    scheduler_value: float = 4.0) -> float:
    """The scale at denoiser call ``call`` of ``total_calls``: ``(scale − minimum)·f(frac) + minimum`` (the
    extension's `interpret_scale`, constants 1.5707 and 6.28318 included). One call: frac 0."""
    if mode not in SCALE_MODES:
        raise ValueError(f"unknown dynamic thresholding mode {mode!r}; expected one of {SCALE_MODES}")
    scale -= minimum
    frac = call / (total_calls - 1) if total_calls > 1 else 0.0
    if mode == "Linear Down":
        scale *= 1.0 - frac
    elif mode == "Half Cosine Down":
        scale *= math.cos(frac)
    elif mode == "Cosine Down":
        scale *= math.cos(frac * 1.5707)
    elif mode == "Linear Up":
        scale *= frac
    elif mode == "Half Cosine Up":
        scale *= 1.0 - math.cos(frac)
    elif mode == "Cosine Up":
        scale *= 1.0 - math.cos(frac * 1.5707)
    elif mode == "Power Up":
        scale *= math.pow(frac, scheduler_value)
    elif mode == "Power Down":
        scale *= 1.0 - math.pow(frac, scheduler_value)
    elif mode == "Linear Repeating":
        portion = (frac * scheduler_value) % 1.0
        scale *= (0.5 - portion) * 2 if portion < 0.5 else (portion - 0.5) * 2
    elif mode == "Cosine Repeating":
        scale *= math.cos(frac * 6.28318 * scheduler_value) * 0.5 + 0.5
    elif mode == "Sawtooth":
        scale *= (frac * scheduler_value) % 1.0
    return scale + minimum


@dataclasses.dataclass(frozen=True)
class DynamicThresholding:
    """The extension's settings (UI defaults)."""

    mimic_scale: float = 7.0
    threshold_percentile: float = 100.0  # percent
    mimic_mode: str = "Constant"
    mimic_scale_min: float = 0.0
    cfg_mode: str = "Constant"
    cfg_scale_min: float = 0.0
    scheduler_value: float = 4.0
    separate_feature_channels: bool = True
    scaling_startpoint: str = "MEAN"
    variability_measure: str = "AD"
    interpolate_phi: float = 1.0

    def __post_init__(self) -> None:
        for mode in (self.mimic_mode, self.cfg_mode):
            if mode not in SCALE_MODES:
                raise ValueError(f"unknown dynamic thresholding mode {mode!r}; expected one of {SCALE_MODES}")
        if self.scaling_startpoint not in STARTPOINTS:
            raise ValueError(f"Scaling Startpoint must be MEAN or ZERO, got {self.scaling_startpoint!r}")
        if self.variability_measure not in MEASURES:
            raise ValueError(f"Variability Measure must be AD or STD, got {self.variability_measure!r}")
        if not 0 <= self.threshold_percentile <= 100:
            raise ValueError(f"Threshold percentile must lie in 0-100, got {self.threshold_percentile}")

    def combine(self, cond: torch.Tensor, uncond: torch.Tensor, cfg_scale: float, call: int, total_calls: int,
                weights: Sequence[float] | torch.Tensor | None = None) -> torch.Tensor:
        """The guided x0 for ``uncond`` [B, C, H, W] and ``cond`` [B·n, C, H, W] (n ``AND`` sub-prompts per image,
        image-major) with sub-prompt ``weights`` (n per image, or [B, n])."""
        mimic = interpret_scale(self.mimic_scale, self.mimic_mode, self.mimic_scale_min, call, total_calls,
                                self.scheduler_value)
        cfg = interpret_scale(cfg_scale, self.cfg_mode, self.cfg_scale_min, call, total_calls, self.scheduler_value)
        b = uncond.shape[0]
        if cond.shape[0] % b:
            raise ValueError(f"cond batch {cond.shape[0]} is not a multiple of the uncond batch {b}")
        n = cond.shape[0] // b
        diff = cond.reshape(b, n, *uncond.shape[1:]) - uncond.unsqueeze(1)
        if weights is not None:
            w = torch.as_tensor(weights, dtype=diff.dtype, device=diff.device).reshape(-1, n)
            diff = diff * w.expand(b, n).reshape(b, n, 1, 1, 1)
        relative = diff.sum(1)
        mim_target = uncond + relative * mimic
        cfg_target = uncond + relative * cfg
        return self.rescale(mim_target, cfg_target)

    def rescale(self, mim_target: torch.Tensor, cfg_target: torch.Tensor) -> torch.Tensor:
        """Match the spread of ``cfg_target`` to ``mim_target`` (both [B, C, H, W]), then the φ blend."""
        mim_flat, cfg_flat = mim_target.flatten(2), cfg_target.flatten(2)
        mim_means = mim_flat.mean(dim=2).unsqueeze(2)
        cfg_means = cfg_flat.mean(dim=2).unsqueeze(2)
        mim_centered, cfg_centered = mim_flat - mim_means, cfg_flat - cfg_means
        p = self.threshold_percentile / 100
        if self.separate_feature_channels:
            if self.variability_measure == "STD":
                mim_ref, cfg_ref = mim_centered.std(dim=2).unsqueeze(2), cfg_centered.std(dim=2).unsqueeze(2)
            else:
                mim_ref = mim_centered.abs().max(dim=2).values.unsqueeze(2)
                cfg_ref = torch.quantile(cfg_centered.abs(), p, dim=2).unsqueeze(2)
        elif self.variability_measure == "STD":
            mim_ref, cfg_ref = mim_centered.std(), cfg_centered.std()
        else:
            mim_ref, cfg_ref = mim_centered.abs().max(), torch.quantile(cfg_centered.abs(), p)
        if self.scaling_startpoint == "ZERO":
            result = cfg_flat * (mim_ref / cfg_ref)
        else:
            if self.variability_measure == "STD":
                renormalized = (cfg_centered / cfg_ref) * mim_ref
            else:
                max_ref = torch.maximum(mim_ref, cfg_ref)
                renormalized = (cfg_centered.clamp(-max_ref, max_ref) / max_ref) * mim_ref
            result = renormalized + cfg_means
        result = result.unflatten(2, mim_target.shape[2:])
        if self.interpolate_phi != 1.0:
            result = result * self.interpolate_phi + cfg_target * (1.0 - self.interpolate_phi)
        return result

    # -- infotext (the keys the extension writes, in its order) --

    def infotext(self) -> dict[str, object]:
        out: dict[str, object] = {
            "Dynamic thresholding enabled": True, "Mimic scale": self.mimic_scale,
            "Separate Feature Channels": self.separate_feature_channels,
            "Scaling Startpoint": self.scaling_startpoint, "Variability Measure": self.variability_measure,
            "Interpolate Phi": self.interpolate_phi, "Threshold percentile": self.threshold_percentile}
        if self.mimic_mode != "Constant":
            out.update({"Mimic mode": self.mimic_mode, "Mimic scale minimum": self.mimic_scale_min})
        if self.cfg_mode != "Constant":
            out.update({"CFG mode": self.cfg_mode, "CFG scale minimum": self.cfg_scale_min})
        if self.mimic_mode in SCHEDULER_VALUE_MODES or self.cfg_mode in SCHEDULER_VALUE_MODES:
            out["Scheduler value"] = self.scheduler_value
        return out

    @classmethod
    def from_infotext(cls, fields: dict[str, str]) -> "DynamicThresholding | None":
        """Settings from parsed infotext fields (None when `Dynamic thresholding enabled` is absent). Missing keys get
        the extension's reading defaults; `Power scheduler value` (its name before 2023-06) is read too."""
        if "Dynamic thresholding enabled" not in fields:
            return None

        def num(key: str, default: float) -> float:
            try:
                return float(fields.get(key, default))
            except ValueError:
                raise ValueError(f"{key} must be a number, got {fields[key]!r}") from None

        sched = fields.get("Scheduler value", fields.get("Power scheduler value", 4.0))
        return cls(mimic_scale=num("Mimic scale", 7.0), threshold_percentile=num("Threshold percentile", 100.0),
                   mimic_mode=fields.get("Mimic mode", "Constant"), mimic_scale_min=num("Mimic scale minimum", 0.0),
                   cfg_mode=fields.get("CFG mode", "Constant"), cfg_scale_min=num("CFG scale minimum", 0.0),
                   scheduler_value=float(sched),
                   separate_feature_channels=str(fields.get("Separate Feature Channels", "True")) == "True",
                   scaling_startpoint=fields.get("Scaling Startpoint", "MEAN"),
                   variability_measure=fields.get("Variability Measure", "AD"),
                   interpolate_phi=num("Interpolate Phi", 1.0))
