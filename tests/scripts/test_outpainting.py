"""Outpainting canvas geometry and Outpainting mk2's matched noise against a NumPy float64 transcription of A1111's
`get_matched_noise` (its loops, fftshift/ifftshift order, PCG64 seed 0 and scikit-image 0.21's float histogram
matching written out with np.unique / np.interp). Tolerance: 1e-9 absolute on values in [0, 1]."""
from __future__ import annotations

import numpy as np
import pytest

from inpaintlab.scripts import Expansion, OutpaintError, expansion, match_histograms, matched_noise


def test_expansion():
    assert expansion(512, 512, 128) == Expansion(128, 128, 128, 128, 768, 768)
    assert expansion(500, 300, 100, ("left", "right")) == Expansion(102, 102, 0, 0, 704, 320)  # 700 → 704
    assert expansion(500, 300, 100, ("left",)) == Expansion(140, 0, 0, 0, 640, 320)
    assert expansion(512, 512, 8, ("down",)) == Expansion(0, 0, 0, 64, 512, 576)
    with pytest.raises(OutpaintError, match="sideways"):
        expansion(64, 64, 8, ("sideways",))


def _fft(data, inverse=False):
    out = np.zeros(data.shape, dtype=np.complex128)
    f = np.fft.ifft2 if inverse else np.fft.fft2
    for c in range(data.shape[2]):
        out[:, :, c] = np.fft.ifftshift(f(np.fft.fftshift(data[:, :, c]), norm="ortho"))
    return out


def _match(source, template):
    out = np.empty_like(source)
    for c in range(source.shape[1]):
        v, idx, counts = np.unique(source[:, c], return_inverse=True, return_counts=True)
        tv, tc = np.unique(template[:, c], return_counts=True)
        out[:, c] = np.interp(np.cumsum(counts) / source.shape[0], np.cumsum(tc) / template.shape[0], tv)[idx]
    return out


def reference(src, mask_rgb, noise_q, color_variation):
    width, height, n = src.shape   # A1111 names the first axis "width"
    grey = np.sum(mask_rgb, axis=2) / 3.0
    img_mask, ref_mask = grey > 1e-6, grey < 1e-3
    win = src * (1.0 - np.stack([grey] * 3, axis=2))
    win /= np.max(win)
    win += np.average(src) * mask_rgb
    src_fft = _fft(win)
    src_dist = np.absolute(src_fft)
    src_phase = src_fft / src_dist
    rng = np.random.default_rng(0)
    window = np.zeros((width, height))
    sx, sy = float(width / min(width, height)), float(height / min(width, height))
    x = (np.arange(width) / width * 2.0 - 1.0) * sx
    for y in range(height):
        fy = (y / height * 2.0 - 1.0) * sy
        window[:, y] = (1 / ((x ** 2 + 1.0) * (fy ** 2 + 1.0))) ** (3.14 / 3.14)
    noise = rng.random((width, height, n))
    noise_grey = np.sum(noise, axis=2) / 3.0
    noise *= color_variation
    for c in range(n):
        noise[:, :, c] += (1.0 - color_variation) * noise_grey
    nf = _fft(noise)
    for c in range(n):
        nf[:, :, c] *= window
    noise = np.real(_fft(nf, inverse=True))
    shaped_fft = _fft(noise)
    shaped_fft = np.absolute(shaped_fft) ** 2 * (src_dist ** noise_q) * src_phase
    shaped = np.real(_fft(shaped_fft, inverse=True))
    shaped -= np.min(shaped)
    shaped /= np.max(shaped)
    shaped[img_mask, :] = _match(shaped[img_mask, :], src[ref_mask, :])
    return np.clip(src * (1.0 - mask_rgb) + shaped * mask_rgb, 0.0, 1.0)


@pytest.mark.parametrize("shape,noise_q,cv", [((48, 40), 1.0, 0.05), ((37, 64), 0.5, 0.3), ((32, 32), 2.2, 0.0)])
def test_matched_noise_matches_numpy_float64(shape, noise_q, cv):
    rng = np.random.default_rng(7)
    h, w = shape
    src = np.zeros((h, w, 3))
    mask = np.ones((h, w, 3))
    # a known centre with structure (uint8 levels, as the script gets them: canvas / 255), unknown border
    y0, x0 = h // 4, w // 5
    known = rng.integers(0, 256, (h - 2 * y0, w - 2 * x0, 3)) / 255.0
    src[y0:h - y0, x0:w - x0] = known
    mask[y0:h - y0, x0:w - x0] = 0
    expected = reference(src.copy(), mask, noise_q, cv)
    got = matched_noise(src, mask, noise_q, cv)
    assert np.abs(got - expected).max() <= 1e-9
    assert np.array_equal(got[mask == 0], src[mask == 0])        # the known picture is untouched
    assert got[mask == 1].std() > 0.05                           # real noise in the hole


def test_match_histograms_and_errors():
    import torch
    rng = np.random.default_rng(3)
    s, t = rng.random((200, 3)), rng.integers(0, 10, (90, 3)) / 9.0
    assert np.abs(match_histograms(torch.from_numpy(s), torch.from_numpy(t)).numpy() - _match(s, t)).max() <= 1e-12
    with pytest.raises(OutpaintError, match="all black"):
        m = np.ones((16, 16, 3))
        m[4:12, 4:12] = 0
        matched_noise(np.zeros((16, 16, 3)), m)
    with pytest.raises(OutpaintError, match="whole picture"):
        matched_noise(np.zeros((16, 16, 3)), np.ones((16, 16, 3)))
