"""Per-image seeded noise, AUTOMATIC1111's ``ImageRNG`` with ``randn_source = "CPU"`` (spec/a1111-inpaint.md §6).

Each image of a batch owns a CPU ``torch.Generator`` seeded with that image's seed, so an image's noise does not
depend on its batch neighbours or on the device. The first draw is the initial noise; later draws continue each
generator (ancestral/SDE sampler noise).

Not modelled: variation seeds (subseed/subseed strength slerp) and "resize seed from"; A1111's global
``torch.manual_seed(seed)`` side effect during the first draw.
"""
from __future__ import annotations

import random
from typing import Optional, Sequence, Union

import torch

_SEED_LIMIT = 2 ** 64  # torch.Generator.manual_seed accepts 0 .. 2**64 - 1
RANDOM_SEED_RANGE = 4294967294  # A1111 get_fixed_seed: random.randrange(4294967294)


def resolve_seed(seed: Optional[Union[int, str]]) -> int:
    """A1111 seed resolution: ``-1`` or ``None`` picks a random seed in [0, 4294967294); otherwise the int."""
    if seed is None:
        seed = -1
    if isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    if isinstance(seed, str):
        try:
            seed = int(seed.strip() or "-1")
        except ValueError:
            raise ValueError(f"seed must be an int, got {seed!r}") from None
    if isinstance(seed, float):
        if not seed.is_integer():
            raise ValueError(f"seed must be an int, got {seed!r}")
        seed = int(seed)
    if not isinstance(seed, int):
        try:
            seed = int(seed)  # numpy / torch integer scalars
        except (TypeError, ValueError):
            raise ValueError(f"seed must be an int, got {seed!r}") from None
    if seed == -1:
        return random.randrange(RANDOM_SEED_RANGE)
    if not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be -1 (random) or in [0, 2**64), got {seed}")
    return seed


class ImageRNG:
    """One CPU generator per image; :meth:`next` returns stacked ``[B, *shape]`` float32 noise on ``device``.

    ``shape`` is the per-image latent shape, e.g. ``(4, H // 8, W // 8)``. ``eta_noise_seed_delta`` (A1111 ENSD,
    default 0): when non-zero, after the first draw every generator is replaced by one seeded ``seed + ENSD``.
    """

    def __init__(self, shape: Sequence[int], seeds: Sequence[int], device: Union[str, torch.device] = "cpu",
                 *, eta_noise_seed_delta: int = 0) -> None:
        shape = tuple(shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty sequence of positive ints, got {shape!r}")
        seeds = list(seeds)
        if not seeds:
            raise ValueError("seeds must hold one seed per image, got none")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
                raise ValueError(f"each seed must be an int in [0, 2**64), got {seed!r} (resolve -1 first)")
        if isinstance(eta_noise_seed_delta, bool) or not isinstance(eta_noise_seed_delta, int):
            raise ValueError(f"eta_noise_seed_delta must be an int, got {eta_noise_seed_delta!r}")
        self.shape = shape
        self.seeds = seeds
        self.device = torch.device(device)
        self.eta_noise_seed_delta = eta_noise_seed_delta
        self.generators = [self._generator(seed) for seed in seeds]
        self.draws = 0

    @staticmethod
    def _generator(seed: int) -> torch.Generator:
        if not 0 <= seed < _SEED_LIMIT:
            raise ValueError(f"seed + eta_noise_seed_delta = {seed} is outside [0, 2**64)")
        return torch.Generator("cpu").manual_seed(seed)

    def __repr__(self) -> str:
        return f"ImageRNG(shape={self.shape}, seeds={self.seeds}, device={str(self.device)!r}, draws={self.draws})"

    def next(self) -> torch.Tensor:
        """Next draw of every image's generator, stacked to ``[B, *shape]`` and moved to ``device``."""
        noise = torch.stack([torch.randn(self.shape, generator=g, dtype=torch.float32) for g in self.generators])
        if self.draws == 0 and self.eta_noise_seed_delta:
            self.generators = [self._generator(seed + self.eta_noise_seed_delta) for seed in self.seeds]
        self.draws += 1
        return noise.to(self.device)

    def noise_sampler(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """k-diffusion ``noise_sampler(sigma, sigma_next)``: the next draw, whatever the noise levels."""
        return self.next()
