"""shuffle, t2ia_color_grid and tile_colorfix(+sharp) against controlnet-aux 0.0.10 (shuffle) or NumPy float64
re-derivations of the extension's code (color grid, the colorfix x0 correction), and the two-colour map resize
against `binary_ref` (a NumPy re-derivation of the extension's rule), on random non-square images."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from aux_refs import aux_module
from binary_ref import otsu, resize_binary, thin

from inpaintlab.controlnet import binary_maps
from inpaintlab.controlnet import preprocess as pp
from inpaintlab.controlnet import preprocessors as pure
from inpaintlab.controlnet.inject import SD1_SCHEDULE, colorfix_eps


def _image(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_shuffle_is_controlnet_aux_content_shuffle_with_the_seeded_numpy_stream():
    img = _image(128, 192, 0)  # res 128 = the short side and both sides multiples of 64: no resize anywhere
    got = pure.run_preprocessor("shuffle", img, 128, seed=1234)
    np.random.seed(1234)
    ref = aux_module("shuffle").ContentShuffleDetector()(img, detect_resolution=128, image_resolution=128,
                                                         output_type="np")
    assert np.array_equal(got, ref)
    assert not np.array_equal(got, pure.run_preprocessor("shuffle", img, 128, seed=1235))


def test_shuffle_after_the_padded_resize_uses_two_noise_disks_x_first():
    img = _image(70, 101, 1)
    got = pure.run_preprocessor("shuffle", img, 100, seed=99)
    padded, remove = pure.resize_image_with_pad(img, 100)
    small = remove(padded)
    h, w = small.shape[:2]
    make_noise_disk = aux_module("util").make_noise_disk
    np.random.seed(99)
    fx = make_noise_disk(h, w, 1, 256) * float(w - 1)
    fy = make_noise_disk(h, w, 1, 256) * float(h - 1)
    ref = cv2.remap(small, np.concatenate([fx, fy], axis=2).astype(np.float32), None, cv2.INTER_LINEAR)
    assert got.shape == (100, 144, 3) and np.array_equal(got, ref)
    with pytest.raises(ValueError, match="seed"):
        pure.run_preprocessor("shuffle", img, 100)


def test_numpy_seed_is_seed_plus_subseed_wrapped():
    assert pure.numpy_seed(5) == 10 and pure.numpy_seed(5, 7) == 12
    assert pure.numpy_seed(2 ** 32 - 1, 3) == 2


@pytest.mark.parametrize("hw,res", [((70, 101), 130), ((120, 90), 200), ((96, 96), 64)])
def test_color_grid_float64(hw, res):
    img = _image(*hw, seed=2)
    got = pure.run_preprocessor("t2ia_color_grid", img, res)
    h, w = hw
    nh, nw = (res, int(round(w / h * res))) if h < w else (int(round(h / w * res)), res)
    short = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    cells = cv2.resize(short, (nw // 64, nh // 64), interpolation=cv2.INTER_CUBIC)
    rows = np.floor(np.arange(nh, dtype=np.float64) * (nh // 64) / nh).astype(int)  # nearest: floor(i·src/dst)
    cols = np.floor(np.arange(nw, dtype=np.float64) * (nw // 64) / nw).astype(int)
    assert got.shape == (nh, nw, 3) and np.array_equal(got, cells[rows][:, cols])
    assert len(np.unique(got.reshape(-1, 3), axis=0)) <= (nh // 64) * (nw // 64)
    with pytest.raises(ValueError, match=">= 64"):
        pure.run_preprocessor("color", img, 40)


def test_tile_colorfix_map_is_the_image_and_its_sliders():
    img = _image(40, 56, 3)
    assert np.array_equal(pure.run_preprocessor("tile_colorfix", img, 512, 12), img)
    fix, sharp = pure.PREPROCESSORS["tile_colorfix"], pure.PREPROCESSORS["tile_colorfix+sharp"]
    assert (fix.threshold_a, fix.threshold_b, sharp.threshold_a, sharp.threshold_b) == (8.0, None, 8.0, 1.0)
    assert fix.colorfix and sharp.colorfix and not pure.PREPROCESSORS["tile_resample"].colorfix


def _box_blur64(x, k):
    padded = np.pad(x, [(0, 0), (0, 0), (k, k), (k, k)], mode="edge")
    out = np.zeros_like(x)
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            out += padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    return out / (2 * k + 1) ** 2


@pytest.mark.parametrize("sharpness,weight", [(None, 1.0), (None, 0.6), (1.5, 1.0), (0.7, 1.7)])
def test_colorfix_eps_float64(sharpness, weight):
    g = torch.Generator().manual_seed(5)
    x, eps = torch.randn(3, 4, 9, 13, generator=g), torch.randn(3, 4, 9, 13, generator=g)
    origin = torch.randn(1, 4, 9, 13, generator=g)
    t = torch.tensor([981.0, 981.0, 981.0])
    mark = torch.tensor([1.0, 1.0, 0.0])
    got = colorfix_eps(x, t, eps, origin, 3, sharpness, weight, mark)
    ac = SD1_SCHEDULE.alphas_cumprod64[981]
    x64, e64, o64 = x.double().numpy(), eps.double().numpy(), origin.double().numpy()
    x0 = np.sqrt(1 / ac) * x64 - np.sqrt(1 / ac - 1) * e64
    x0 = x0 - _box_blur64(x0, 3) + _box_blur64(o64, 3)
    if sharpness is not None:
        d = sharpness * 0.01
        neg = d * _box_blur64(x0, 3) + (1 - d) * x0
        x0 = np.concatenate([x0[:2], neg[2:]])
    e = (np.sqrt(1 / ac) * x64 - x0) / np.sqrt(1 / ac - 1)
    w = min(weight, 1.0)
    ref = e * w + e64 * (1 - w)
    err = np.abs(got.double().numpy() - ref).max()
    assert err < 5e-6, err  # float32 schedule buffers and sums against float64 (measured 3e-7..6e-7)
    assert np.abs(ref - e64).max() > 0.1  # the correction is not a no-op here


def _maps(seed):
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), (0, 0), 3)
    edges = np.stack([cv2.Canny(smooth, 20, 60)] * 3, axis=2)
    field = cv2.GaussianBlur(rng.random((70, 101)), (0, 0), 4)
    blobs = np.where(field[:, :, None] > np.median(field), np.array([250, 245, 255]), np.array([3, 0, 10]))
    return {"edges": edges, "blobs": blobs.astype(np.uint8)}


@pytest.mark.parametrize("kind", ["edges", "blobs"])
@pytest.mark.parametrize("size", [(200, 152), (64, 48), (131, 89)])
def test_two_colour_map_resize_against_numpy(kind, size):
    m = _maps(4)[kind]
    assert binary_maps.is_binary(m) and binary_maps.is_one_pixel_edge(m) == (kind == "edges")
    rgba = np.concatenate([m, np.zeros_like(m[:, :, :1])], axis=2)
    got = pp.high_quality_resize(rgba, size)
    ref = resize_binary(m, size)
    assert np.array_equal(got[:, :, :3], ref) and set(np.unique(ref)) == {0, 255}
    if kind == "edges" and size[0] > 130:  # thinning and pruning change the enlarged edge map
        y = cv2.resize(m, size, interpolation=cv2.INTER_CUBIC).astype(np.float64).mean(axis=2).astype(np.uint8)
        assert not np.array_equal(thin(otsu(y), True), otsu(y))


@pytest.mark.parametrize("mode", pp.RESIZE_MODES)
def test_two_colour_maps_through_every_resize_mode(mode):
    m = _maps(5)["edges"]
    rgba = np.concatenate([m, np.zeros_like(m[:, :, :1])], axis=2)
    got = pp.detectmap(rgba, 104, 152, mode, inpaint=False)
    k = (max if mode == "Crop and Resize" else min)(152 / 90, 104 / 130)
    inner = (int(np.round(130 * k)), int(np.round(90 * k)))
    ref = resize_binary(m, (104, 152) if mode == "Just Resize" else inner)
    if mode == "Crop and Resize":
        top, left = (ref.shape[0] - 152) // 2, (ref.shape[1] - 104) // 2
        ref = ref[top:top + 152, left:left + 104]
    elif mode == "Resize and Fill":
        canvas = np.zeros((152, 104, 3), np.uint8)  # the border median of an edge map is black
        top, left = (152 - ref.shape[0]) // 2, (104 - ref.shape[1]) // 2
        canvas[top:top + ref.shape[0], left:left + ref.shape[1]] = ref
        ref = canvas
    assert got.shape == (152, 104, 4) and np.array_equal(got[:, :, :3], ref)
