"""Per-image seeded noise: AUTOMATIC1111 v1.10's ``ImageRNG`` with its three noise sources and variation seeds.

Each image of a batch owns a generator seeded with that image's seed, so an image's noise does not depend on its batch
neighbours. The first draw is the initial noise (with variation seed and seed resize applied); later draws continue each
generator (ancestral/SDE sampler noise), or, with ENSD, a generator seeded ``seed + ENSD``.

Noise sources (A1111's ``randn_source``):

* ``"CPU"``: a CPU ``torch.Generator`` per image (torch's mt19937 normal sampler), moved to the device: the same numbers
  on every machine. inpaintlab's default.
* ``"GPU"``: ``torch.Generator`` on the CUDA device (CUDA's Philox; A1111's default). Needs CUDA.
* ``"NV"``: A1111's CPU emulation of CUDA's ``torch.randn`` (:mod:`inpaintlab.samplers.philox`), on any device.

Not modelled: A1111 reseeds torch's global generator while drawing (``torch.manual_seed(seed)``), which leaves the
global state to whatever runs next; here every draw uses its own generator and the global RNG is left alone.
"""
from __future__ import annotations

import math
import random
from typing import Optional, Sequence, Union

import torch

from ..cuda_check import gpu_source_problem, replay_rng_source  # noqa: F401 (torch-free, for `info`)
from .philox import PhiloxGenerator

_SEED_LIMIT = 2 ** 64  # torch.Generator.manual_seed accepts 0 .. 2**64 - 1; the NV key is a uint64
RANDOM_SEED_RANGE = 4294967294  # A1111 get_fixed_seed: random.randrange(4294967294)
RNG_SOURCES = ("CPU", "GPU", "NV")


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


def resolve_rng_source(source: str) -> str:
    """``"CPU"``, ``"GPU"`` or ``"NV"`` (any case); a clear error otherwise."""
    if isinstance(source, str) and source.strip().upper() in RNG_SOURCES:
        return source.strip().upper()
    raise ValueError(f"unknown RNG source {source!r}; valid: {', '.join(RNG_SOURCES)}")


def slerp(val: float, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """A1111's variation-seed interpolation between seed noise ``low`` and subseed noise ``high`` ([C, H, W]).

    Spherical interpolation of each (channel, column) vector: the norms run along dim 1 (height), not over the
    whole tensor. When the mean cosine exceeds 0.9995 it falls back to ``low·val + high·(1 − val)``, whose weights
    are the reverse of the slerp's (A1111 v1.10 as written).
    """
    low_norm = low / torch.norm(low, dim=1, keepdim=True)
    high_norm = high / torch.norm(high, dim=1, keepdim=True)
    dot = (low_norm * high_norm).sum(1)
    if dot.mean() > 0.9995:
        return low * val + high * (1 - val)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return (torch.sin((1.0 - val) * omega) / so).unsqueeze(1) * low + (torch.sin(val * omega) / so).unsqueeze(1) * high


def paste_centered(small: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Seed resize: ``small`` [C, h, w] centred on a copy of ``full`` [C, H, W], cropped where it is larger.

    Offsets use floor division as A1111 does; when the small noise is larger by an odd amount the crop is one row or
    column short, so that row or column of ``full`` survives.
    """
    out = full.clone()
    _, big_h, big_w = full.shape
    _, h, w = small.shape
    dx, dy = (big_w - w) // 2, (big_h - h) // 2
    w = w if dx >= 0 else w + 2 * dx
    h = h if dy >= 0 else h + 2 * dy
    tx, ty = max(dx, 0), max(dy, 0)
    dx, dy = max(-dx, 0), max(-dy, 0)
    out[:, ty:ty + h, tx:tx + w] = small[:, dy:dy + h, dx:dx + w]
    return out


def _check_seed(seed: object, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"each {what} must be an int in [0, 2**64), got {seed!r} (resolve -1 first)")
    return seed


class ImageRNG:
    """One generator per image; :meth:`next` returns stacked ``[B, *shape]`` float32 noise on ``device``.

    shape: the per-image latent shape, e.g. ``(4, H // 8, W // 8)``. seeds: one per image (A1111 passes ``seed`` to
    every image when the variation strength is non-zero, else ``seed + i``).
    source: ``"CPU"``, ``"GPU"`` or ``"NV"`` (module docstring).
    subseeds, subseed_strength: variation seeds. The first draw of image i becomes
        ``slerp(subseed_strength, noise(seeds[i]), noise(subseeds[i]))``; a missing subseed index counts as 0, as in
        A1111. Later draws are not interpolated.
    seed_resize_from: ``(width, height)`` in pixels. When both are > 0 the seed and subseed noise of the first draw is
        made at ``(C, height // 8, width // 8)`` and pasted, centred, over the image's full-size first draw.
    eta_noise_seed_delta: A1111's ENSD. When non-zero, after the first draw every generator is replaced by one seeded
        ``seed + ENSD``: the initial noise is unchanged, every later draw changes.
    """

    def __init__(self, shape: Sequence[int], seeds: Sequence[int], device: Union[str, torch.device] = "cpu",
                 *, source: str = "CPU", subseeds: Optional[Sequence[int]] = None, subseed_strength: float = 0.0,
                 seed_resize_from: Optional[Sequence[int]] = None, eta_noise_seed_delta: int = 0) -> None:
        shape = tuple(shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"shape must be a non-empty sequence of positive ints, got {shape!r}")
        seeds = [_check_seed(seed, "seed") for seed in seeds]
        if not seeds:
            raise ValueError("seeds must hold one seed per image, got none")
        if isinstance(eta_noise_seed_delta, bool) or not isinstance(eta_noise_seed_delta, int):
            raise ValueError(f"eta_noise_seed_delta must be an int, got {eta_noise_seed_delta!r}")
        if isinstance(subseed_strength, bool) or not isinstance(subseed_strength, (int, float)) \
                or not math.isfinite(subseed_strength):
            raise ValueError(f"subseed_strength must be a finite number, got {subseed_strength!r}")
        if subseeds is not None:
            subseeds = [_check_seed(s, "subseed") for s in subseeds]
        self.shape = shape
        self.seeds = seeds
        self.device = torch.device(device)
        self.source = resolve_rng_source(source)
        self.subseeds = subseeds
        self.subseed_strength = float(subseed_strength)
        self.seed_resize_from = self._resize_from(seed_resize_from)
        self.eta_noise_seed_delta = eta_noise_seed_delta
        if (self.seed_resize_from or (subseeds is not None and self.subseed_strength != 0)) and len(shape) != 3:
            raise ValueError(f"variation seeds and seed resize need a [C, H, W] shape, got {shape!r}")
        if eta_noise_seed_delta and not all(0 <= seed + eta_noise_seed_delta < _SEED_LIMIT for seed in seeds):
            raise ValueError(f"seed + eta_noise_seed_delta is outside [0, 2**64) for seeds {seeds} and ENSD "
                             f"{eta_noise_seed_delta}")
        self._draw_device = self._noise_device()
        self.generators = [self._generator(seed) for seed in seeds]
        self.draws = 0

    @staticmethod
    def _resize_from(value: Optional[Sequence[int]]) -> Optional[tuple[int, int]]:
        if value is None:
            return None
        try:
            width, height = value
        except (TypeError, ValueError):
            raise ValueError(f"seed_resize_from must be (width, height), got {value!r}") from None
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (width, height)):
            raise ValueError(f"seed_resize_from must be two ints (width, height), got {value!r}")
        if width <= 0 or height <= 0:
            return None  # A1111: active only when both sides are > 0
        if width < 8 or height < 8:
            raise ValueError(f"seed_resize_from must be at least 8x8 pixels (one latent pixel), got {width}x{height}")
        return width, height

    def _noise_device(self) -> torch.device:
        if self.source != "GPU":
            return torch.device("cpu")
        if self.device.type == "cuda":
            return self.device
        problem = gpu_source_problem(self.source)
        if problem:
            raise ValueError(problem)
        return torch.device("cuda")

    def _generator(self, seed: int) -> Union[torch.Generator, PhiloxGenerator]:
        if self.source == "NV":
            return PhiloxGenerator(seed)
        return torch.Generator(self._draw_device).manual_seed(seed)

    def _draw(self, generator: Union[torch.Generator, PhiloxGenerator], shape: Sequence[int]) -> torch.Tensor:
        # A1111 moves every draw to the device before interpolating or pasting, so that arithmetic runs there too.
        if isinstance(generator, PhiloxGenerator):
            return generator.randn(shape, device=self.device)
        noise = torch.randn(tuple(shape), generator=generator, device=self._draw_device, dtype=torch.float32)
        return noise.to(self.device)

    def __repr__(self) -> str:
        extra = ""
        if self.subseeds is not None and self.subseed_strength != 0:
            extra += f", subseeds={self.subseeds}, subseed_strength={self.subseed_strength}"
        if self.seed_resize_from:
            extra += f", seed_resize_from={self.seed_resize_from}"
        if self.eta_noise_seed_delta:
            extra += f", eta_noise_seed_delta={self.eta_noise_seed_delta}"
        return (f"ImageRNG(shape={self.shape}, seeds={self.seeds}, device={str(self.device)!r}, "
                f"source={self.source!r}{extra}, draws={self.draws})")

    def _first(self) -> torch.Tensor:
        """The initial noise (A1111 ``ImageRNG.first``): variation seed and seed resize applied, then ENSD."""
        noise_shape = self.shape
        if self.seed_resize_from:
            width, height = self.seed_resize_from
            noise_shape = (self.shape[0], height // 8, width // 8)
        resized = noise_shape != self.shape
        varied = self.subseeds is not None and self.subseed_strength != 0
        images = []
        for i, (seed, generator) in enumerate(zip(self.seeds, self.generators)):
            subnoise = None
            if varied:
                subseed = self.subseeds[i] if i < len(self.subseeds) else 0
                subnoise = self._draw(self._generator(subseed), noise_shape)
            # With seed resize the seed noise comes from a fresh generator at the small size; the image's own
            # generator then makes the full-size draw it is pasted onto.
            noise = self._draw(self._generator(seed) if resized else generator, noise_shape)
            if subnoise is not None:
                noise = slerp(self.subseed_strength, noise, subnoise)
            if resized:
                noise = paste_centered(noise, self._draw(generator, self.shape))
            images.append(noise)
        if self.eta_noise_seed_delta:
            self.generators = [self._generator(seed + self.eta_noise_seed_delta) for seed in self.seeds]
        return torch.stack(images)

    def next(self) -> torch.Tensor:
        """The first call returns the initial noise; later calls the next draw of every image's generator, stacked."""
        if self.draws == 0:
            noise = self._first()
        else:
            noise = torch.stack([self._draw(g, self.shape) for g in self.generators])
        self.draws += 1
        return noise

    def noise_sampler(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        """k-diffusion ``noise_sampler(sigma, sigma_next)``: the next draw, whatever the noise levels."""
        return self.next()
