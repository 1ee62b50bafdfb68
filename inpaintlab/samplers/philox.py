"""A1111's "NV" noise source: Philox4x32-10 plus one Box–Muller output per element.

This is the generator A1111 v1.10 uses for ``randn_source = "NV"`` to give, on any hardware, the numbers
``torch.randn`` draws on an NVIDIA GPU. Element ``i`` of a draw is computed from the counter
``(offset, 0, i, 0)`` and the key ``(seed mod 2**32, seed // 2**32 mod 2**32)``; the generator's offset goes up by one
per draw, whatever its size. Of the four output words only the first two are used:

    u = x·2⁻³² + 2⁻³³,   v = y·c + c/2 with c = float32(2⁻³²·2π),   n = sqrt(−2 ln u)·sin v

evaluated in float64 (as A1111's numpy arithmetic promotes it) and rounded to float32 once.

The 32×32→64-bit products are done in int64 on 16-bit halves, so nothing relies on overflow. Like A1111's numpy code,
a draw is computed on the CPU (float64 ``log``/``sin``) and then moved to the requested device. Math libraries may
differ by a float64 ULP or two, which changes a float32 result with probability ~2⁻²⁸ per element; against numpy's
float64 functions no difference was found in 6.7·10⁷ values.
"""
from __future__ import annotations

import math
from typing import Sequence, Union

import torch

PHILOX_M = (0xD2511F53, 0xCD9E8D57)  # round multipliers
PHILOX_W = (0x9E3779B9, 0xBB67AE85)  # key bumps (golden ratio, sqrt(3) - 1)
PHILOX_ROUNDS = 10
_MASK32 = 0xFFFFFFFF
_TWO_POW32_INV = 2.0 ** -32
# float32(2**-32 * 2pi) as A1111 stores it (0x1.921fb6p-30), used at that precision in the float64 arithmetic.
_TWO_POW32_INV_2PI = float(torch.tensor(2.3283064e-10 * 6.2831855, dtype=torch.float32))


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) 32-bit words of the 64-bit product ``a * m``; a holds uint32 values in int64, m < 2**32."""
    a_hi, a_lo = a >> 16, a & 0xFFFF
    t_lo = a_lo * m  # < 2**48
    t_hi = a_hi * m  # < 2**48; contributes t_hi << 16
    s = t_lo + ((t_hi & 0xFFFF) << 16)
    return ((t_hi >> 16) + (s >> 32)) & _MASK32, s & _MASK32


def philox4x32(counter: Sequence[torch.Tensor], key: tuple[int, int],
               rounds: int = PHILOX_ROUNDS) -> tuple[torch.Tensor, ...]:
    """Philox4x32 (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3") on four int64 word tensors."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        hi0, lo0 = _mulhilo(c0, PHILOX_M[0])
        hi1, lo1 = _mulhilo(c2, PHILOX_M[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r < rounds - 1:
            k0, k1 = (k0 + PHILOX_W[0]) & _MASK32, (k1 + PHILOX_W[1]) & _MASK32
    return c0, c1, c2, c3


def philox_randn(seed: int, offset: int, shape: Sequence[int], device: Union[str, torch.device] = "cpu") -> torch.Tensor:
    """One draw of A1111's NV generator: float32 normal noise of ``shape`` for (seed, offset), on ``device``."""
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"NV generator seed must be in [0, 2**64), got {seed}")
    if not 0 <= offset < 2 ** 32:
        raise ValueError(f"NV generator offset must be in [0, 2**32), got {offset}")
    numel = math.prod(shape)
    if numel >= 2 ** 32:
        raise ValueError(f"NV draws index elements with one 32-bit counter word; {numel} elements is too many")
    index = torch.arange(numel, dtype=torch.int64)
    zeros = torch.zeros_like(index)
    x, y, _, _ = philox4x32((torch.full_like(index, offset), zeros, index, zeros), (seed & _MASK32, seed >> 32))
    u = x.double() * _TWO_POW32_INV + _TWO_POW32_INV / 2
    v = y.double() * _TWO_POW32_INV_2PI + _TWO_POW32_INV_2PI / 2
    noise = torch.sqrt(-2.0 * torch.log(u)) * torch.sin(v)
    return noise.float().reshape(tuple(shape)).to(device)


class PhiloxGenerator:
    """A1111's ``rng_philox.Generator``: a seed and an offset that advances by one per :meth:`randn` call."""

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 64:
            raise ValueError(f"NV generator seed must be an int in [0, 2**64), got {seed!r}")
        self.seed = seed
        self.offset = 0

    def __repr__(self) -> str:
        return f"PhiloxGenerator(seed={self.seed}, offset={self.offset})"

    def randn(self, shape: Sequence[int], device: Union[str, torch.device] = "cpu") -> torch.Tensor:
        noise = philox_randn(self.seed, self.offset, shape, device)
        self.offset += 1
        return noise
