"""Brownian-tree noise for the SDE samplers (DPM++ SDE, DPM++ 2M SDE [Heun], DPM++ 3M SDE), seeded as A1111 v1.10.

A1111 gives each image its own ``torchsde.BrownianTree`` (torchsde 0.2.6) over ``[min positive sigma, max sigma]`` of
the full schedule, with that image's seed as entropy, and replaces torchsde's internal ``randn(size, dtype, device,
seed)`` by its own "first draw of a generator seeded ``seed``" for the chosen noise source. The tree's node seeds
come from numpy's ``SeedSequence``, so the numbers are torchsde's: it is a runtime dependency, not re-implemented.

With the "CPU" source on CPU latents A1111's replacement draws the same numbers as torchsde's own; it matters for
CUDA latents ("CPU": drawn on the CPU and moved; "GPU": the device's generator) and for "NV" (Philox emulation).
Independent of variation seeds and ENSD.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Iterator, Sequence, Union

import torch

SOURCES = ("CPU", "GPU", "NV")
_PATCH_LOCK = threading.RLock()


def randn_local(seed: int, shape: Sequence[int], source: str, device: Union[str, torch.device]) -> torch.Tensor:
    """First draw of a fresh generator seeded ``seed``, float32, on ``device`` (A1111 ``rng.randn_local``).

    "CPU": ``torch.Generator("cpu")``; "GPU": a generator on ``device`` (the CPU one when ``device`` is the CPU);
    "NV": the Philox4x32-10 emulation of CUDA's ``randn``.
    """
    device = torch.device(device)
    if source == "NV":
        try:
            from .philox import philox_randn
        except ImportError:  # pragma: no cover - depends on the installed version
            raise ValueError("noise source 'NV' needs inpaintlab.samplers.philox") from None
        return philox_randn(int(seed), 0, tuple(shape), device=device)
    if source == "CPU" or device.type == "mps":
        generator = torch.Generator("cpu").manual_seed(int(seed))
        return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device)
    if source == "GPU":
        generator = torch.Generator(device).manual_seed(int(seed))
        return torch.randn(tuple(shape), generator=generator, device=device, dtype=torch.float32)
    raise ValueError(f"unknown noise source {source!r}; valid: {', '.join(SOURCES)}")


@contextlib.contextmanager
def _torchsde_randn(source: str) -> Iterator[None]:
    """Route torchsde's node draws through :func:`randn_local` while the block runs (A1111 does it process-wide)."""
    from torchsde._brownian import brownian_interval

    def draw(size, dtype, device, seed):
        return randn_local(seed, size, source, device).to(device=device, dtype=dtype)

    with _PATCH_LOCK, warnings.catch_warnings():
        # float32 sigmas against the tree's float64 ends trip torchsde's range check by an ulp; harmless
        warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
        original = brownian_interval._randn
        brownian_interval._randn = draw
        try:
            yield
        finally:
            brownian_interval._randn = original


class BrownianTreeNoiseSampler:
    """``noise_sampler(sigma, sigma_next)`` for the SDE samplers: the normalised Brownian increment per image.

    ``x`` gives shape, dtype and device (``[B, ...]``); ``seeds`` one int per image (A1111: the images' main seeds);
    ``sigma_min``/``sigma_max``: the smallest positive and the largest sigma of the full schedule (A1111 uses the
    untruncated schedule in img2img too). Returns ``(W(hi) - W(lo)) * sign / sqrt(|sigma_next - sigma|)``, ``[B, ...]``.
    ``source`` is the noise source of the per-node draws ("CPU", "GPU", "NV").
    """

    def __init__(self, x: torch.Tensor, sigma_min: Union[float, torch.Tensor], sigma_max: Union[float, torch.Tensor],
                 seeds: Sequence[int], source: str = "CPU") -> None:
        import torchsde

        if source not in SOURCES:
            raise ValueError(f"unknown noise source {source!r}; valid: {', '.join(SOURCES)}")
        seeds = [int(s) for s in seeds]
        if len(seeds) != x.shape[0]:
            raise ValueError(f"need one seed per image: {len(seeds)} seeds for a batch of {x.shape[0]}")
        t0, t1 = torch.as_tensor(sigma_min), torch.as_tensor(sigma_max)
        if not bool(0 < t0) or not bool(t0 != t1):
            raise ValueError(f"need 0 < sigma_min != sigma_max, got {float(t0)}, {float(t1)}")
        t0, t1, self.sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        self.source = source
        self.seeds = seeds
        w0 = torch.zeros_like(x)[0]
        with _torchsde_randn(source):
            self.trees = [torchsde.BrownianTree(t0, w0, t1, entropy=s) for s in seeds]

    def __repr__(self) -> str:
        return f"BrownianTreeNoiseSampler(seeds={self.seeds}, source={self.source!r})"

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        t0, t1 = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        lo, hi, sign = (t0, t1, 1) if t0 < t1 else (t1, t0, -1)
        with _torchsde_randn(self.source):
            w = torch.stack([tree(lo, hi) for tree in self.trees]) * (self.sign * sign)
        return w / (t1 - t0).abs().sqrt()


def brownian_noise_sampler(x: torch.Tensor, sigmas: torch.Tensor, seeds: Sequence[int],
                           source: str = "CPU") -> BrownianTreeNoiseSampler:
    """A1111's per-image tree over a (full) schedule: ``[min(sigmas > 0), max(sigmas)]``."""
    positive = sigmas[sigmas > 0]
    return BrownianTreeNoiseSampler(x, positive.min(), sigmas.max(), seeds, source=source)
