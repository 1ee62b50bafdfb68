"""A job's noise settings: per-image seeds, variation seeds, seed resize, RNG source and ENSD, as A1111 resolves them."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from .samplers import ImageRNG, records_ensd, resolve_seed
from .samplers.rng import gpu_source_problem, resolve_rng_source


@dataclasses.dataclass(frozen=True)
class NoiseSettings:
    """A job's noise: per-image seeds and variation seeds, plus what every `ImageRNG` of the job is built with."""

    seeds: list[int]
    subseeds: list[int] | None
    subseed_strength: float
    seed_resize_from: tuple[int, int] | None
    rng_source: str
    ensd: int

    def rng(self, shape: tuple[int, ...], device: torch.device) -> ImageRNG:
        return ImageRNG(shape, self.seeds, device, source=self.rng_source, subseeds=self.subseeds,
                        subseed_strength=self.subseed_strength, seed_resize_from=self.seed_resize_from,
                        eta_noise_seed_delta=self.ensd)

    @property
    def plain(self) -> bool:
        """True when the first draw is each seed's own noise (no variation seed, no seed resize)."""
        return self.subseeds is None and self.seed_resize_from is None

    def params(self, sampler: str, eta: float | None = None) -> dict[str, Any]:
        """The infotext keys A1111 writes for these settings (`Variation seed` is per image, filled in later)."""
        resize = f"{self.seed_resize_from[0]}x{self.seed_resize_from[1]}" if self.seed_resize_from else None
        return {
            "Variation seed strength": self.subseed_strength if self.subseeds is not None else None,
            "Seed resize from": resize,
            # A1111 v1.10 writes ENSD only for samplers flagged uses_ensd, and only while their eta is non-zero
            "ENSD": self.ensd if self.ensd and records_ensd(sampler, eta) else None,
            "RNG": self.rng_source if self.rng_source != "GPU" else None,
        }


def noise_settings(seed: int | str | None, batch_size: int, *, subseed: int | str | None = -1,
                   subseed_strength: float = 0.0, seed_resize_from: tuple[int, int] | None = None,
                   rng_source: str = "CPU", ensd: int = 0) -> NoiseSettings:
    """A1111's per-image seeds: `seed + i`, or `seed` for every image when the variation strength is non-zero, with
    variation seeds `subseed + i`. -1 picks a random seed (and subseed)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(subseed_strength, bool) or not isinstance(subseed_strength, (int, float)) \
            or not math.isfinite(subseed_strength):
        raise ValueError(f"subseed_strength must be a finite number, got {subseed_strength!r}")
    if isinstance(ensd, bool) or not isinstance(ensd, int):
        raise ValueError(f"ensd must be an int, got {ensd!r}")
    first = resolve_seed(seed)
    subseeds = None
    if subseed_strength != 0:
        first_sub = resolve_seed(subseed)
        subseeds = [first_sub + i for i in range(batch_size)]
    seeds = [first + (0 if subseeds is not None else i) for i in range(batch_size)]
    resize = None
    if seed_resize_from is not None:
        if isinstance(seed_resize_from, (str, bytes)) or len(seed_resize_from) != 2:
            raise ValueError(f"seed_resize_from must be (width, height), got {seed_resize_from!r}")
        width, height = seed_resize_from
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (width, height)):
            raise ValueError(f"seed_resize_from must be two ints (width, height), got {seed_resize_from!r}")
        resize = (width, height) if width > 0 and height > 0 else None  # A1111: used only when both are > 0
    source = resolve_rng_source(rng_source)
    problem = gpu_source_problem(source)
    if problem:  # fail before any model work, as ImageRNG would
        raise ValueError(problem)
    return NoiseSettings(seeds, subseeds, float(subseed_strength), resize, source, ensd)
