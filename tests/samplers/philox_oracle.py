"""Independent numpy re-derivation of A1111's "NV" noise (Philox4x32-10 + Box–Muller), for the tests.

Written from the algorithm's description with plain uint64 products and numpy's float64 log/sin; shares no code with
``inpaintlab.samplers.philox`` (which multiplies on 16-bit halves in torch int64).
"""
import numpy as np

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
LOW = np.uint64(0xFFFFFFFF)
S32 = np.uint64(32)


def oracle_words(seed: int, offset: int, n: int) -> np.ndarray:
    """Philox4x32-10 output words [4, n] for counters (offset, 0, i, 0), key = the uint64 seed as two LE words."""
    c = np.zeros((4, n), dtype=np.uint64)
    c[0] = offset
    c[2] = np.arange(n, dtype=np.uint64)
    key = np.array([seed], dtype=np.uint64).view(np.uint32).astype(np.uint64)  # little-endian: (low, high)
    k0, k1 = key[0], key[1]
    for rnd in range(10):
        p0 = c[0] * M0  # exact: both factors < 2**32
        p1 = c[2] * M1
        c = np.stack([(p1 >> S32) ^ c[1] ^ k0, p1 & LOW, (p0 >> S32) ^ c[3] ^ k1, p0 & LOW])
        if rnd < 9:
            k0, k1 = (k0 + W0) & LOW, (k1 + W1) & LOW
    return c


def oracle_randn(seed: int, offset: int, shape) -> np.ndarray:
    n = int(np.prod(shape))
    x, y = oracle_words(seed, offset, n)[:2].astype(np.uint32)
    inv32 = np.float32(2.3283064e-10)          # exactly 2**-32
    inv32_2pi = np.float32(2.3283064e-10 * 6.2831855)
    # uint32 arrays times float32 constants: numpy promotes to float64 for all of the transform
    u = x * inv32.astype(np.float64) + np.float64(inv32) / 2
    v = y * inv32_2pi.astype(np.float64) + np.float64(inv32_2pi) / 2
    assert u.dtype == np.float64 and v.dtype == np.float64
    return (np.sqrt(-2.0 * np.log(u)) * np.sin(v)).astype(np.float32).reshape(shape)
