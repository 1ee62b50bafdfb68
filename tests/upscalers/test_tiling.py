"""A1111's tiling, BGR feeding and scale handling against a float64 re-derivation from the spec.

The reference cuts and pastes with Pillow's own crop/paste (A1111's primitives: `split_grid`, `combine_grid` with
uint8 ramp masks), feeds BGR through spandrel's network in float64 and rounds with NumPy. With our network also in
float64 the two must agree bit for bit; our float32 path may differ by one level where float32 rounding crosses a
half (measured: at most 1, on well under 1 % of the values).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from upscaler_fixtures import esrgan_layout, randomise, spandrel

from inpaintlab.upscalers import Tiling, UpscalerError, UpscalerModel, model_pass, resize_image, upscale
from inpaintlab.upscalers.load import build


def _esrgan(scale=4, seed=0):
    spandrel()
    from spandrel.architectures.ESRGAN import ESRGAN
    n_up = int(math.log2(scale))
    sd = esrgan_layout(randomise(ESRGAN(in_nc=3, out_nc=3, num_filters=8, num_blocks=1, scale=scale).state_dict(), seed),
                       "new", nb=1, n_up=n_up)
    ref = spandrel().ModelLoader().load_from_state_dict(dict(sd))
    ref.model.double().eval()
    return UpscalerModel(*build(sd)), ref


def _image(w, h, seed=0):
    # Smooth plus noisy content so that rounding and blending both matter.
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8), "RGB")


def _ref_patch(ref, tile: Image.Image) -> Image.Image:
    arr = np.asarray(tile.convert("RGB"))[:, :, ::-1].transpose(2, 0, 1) / 255.0        # BGR, float64
    with torch.no_grad():
        out = ref(torch.from_numpy(np.ascontiguousarray(arr))[None]).numpy()[0]          # pads, clamps
    out = np.round(np.clip(out, 0, 1).transpose(1, 2, 0) * 255.0).astype(np.uint8)[:, :, ::-1]
    return Image.fromarray(np.ascontiguousarray(out), "RGB")


def _ref_grid_upscale(ref, img: Image.Image, tile: int, overlap: int) -> Image.Image:
    """split_grid → per-tile model → combine_grid, transcribed from the spec with Pillow primitives."""
    w, h = img.size
    cols, rows = math.ceil((w - overlap) / (tile - overlap)), math.ceil((h - overlap) / (tile - overlap))
    dx = (w - tile) / (cols - 1) if cols > 1 else 0
    dy = (h - tile) / (rows - 1) if rows > 1 else 0
    grid = []
    for r in range(rows):
        y = int(r * dy)
        y = h - tile if y + tile >= h else y
        row = []
        for c in range(cols):
            x = int(c * dx)
            x = w - tile if x + tile >= w else x
            out = _ref_patch(ref, img.crop((x, y, x + tile, y + tile)))
            s = out.width // tile
            row.append((x * s, out))
        grid.append((y * s, row))
    tw, iw, ih, ov = tile * s, w * s, h * s, overlap * s
    mask_w = Image.fromarray((np.arange(ov, dtype=np.float32)[None].repeat(tw, 0) * 255 / ov).astype(np.uint8), "L")
    mask_h = Image.fromarray((np.arange(ov, dtype=np.float32)[:, None].repeat(iw, 1) * 255 / ov).astype(np.uint8), "L")
    combined = Image.new("RGB", (iw, ih))
    for y, row in grid:
        line = Image.new("RGB", (iw, tw))
        for x, t in row:
            if x == 0:
                line.paste(t, (0, 0))
                continue
            line.paste(t.crop((0, 0, ov, tw)), (x, 0), mask=mask_w)
            line.paste(t.crop((ov, 0, tw, tw)), (x + ov, 0))
        if y == 0:
            combined.paste(line, (0, 0))
            continue
        combined.paste(line.crop((0, 0, iw, ov)), (0, y), mask=mask_h)
        combined.paste(line.crop((0, ov, iw, tw)), (0, y + ov))
    return combined


@pytest.mark.parametrize("size,tile,overlap", [((45, 30), 16, 4), ((37, 22), 12, 0), ((10, 9), 16, 8)])
def test_grid_tiling_matches_float64_rederivation(size, tile, overlap):
    model, ref = _esrgan()
    img = _image(*size)
    expected = np.asarray(_ref_grid_upscale(ref, img, tile, overlap))
    model.to(dtype=torch.float64)
    got = model_pass(model, img, Tiling("grid", tile, overlap))
    assert got.size == (size[0] * 4, size[1] * 4) == expected.shape[1::-1]
    assert np.array_equal(np.asarray(got), expected)
    final = upscale(img, 4, model, Tiling("grid", tile, overlap))  # floored to multiples of 8 by one Lanczos
    dest = (size[0] * 4 // 8 * 8, size[1] * 4 // 8 * 8)
    assert np.array_equal(np.asarray(final), np.asarray(Image.fromarray(expected).resize(dest, Image.Resampling.LANCZOS)))
    model.to(dtype=torch.float32)
    got32 = np.asarray(model_pass(model, img, Tiling("grid", tile, overlap))).astype(int)
    diff = np.abs(got32 - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_side_within_the_overlap_runs_untiled():
    # A1111 crashes here (split_grid makes no rows when a side is not longer than the overlap).
    model, _ = _esrgan(seed=2)
    img = _image(20, 7, 4)
    assert np.array_equal(np.asarray(model_pass(model, img, Tiling("grid", 16, 8))),
                          np.asarray(model_pass(model, img, Tiling("grid", 0, 0))))


def test_average_tiling_matches_float64_rederivation():
    sp = spandrel()
    from spandrel.architectures.SwinIR import SwinIR
    sd = randomise(SwinIR(img_size=8, embed_dim=8, depths=[2], num_heads=[2], window_size=4, upscale=2,
                          upsampler="pixelshuffledirect").state_dict(), 3)
    ref = sp.ModelLoader().load_from_state_dict(dict(sd))
    ref.model.double().eval()
    model = UpscalerModel(*build(sd)).to(dtype=torch.float64)
    img = _image(41, 27, 1)
    tile, overlap, s = 16, 4, 2
    x = np.asarray(img)[:, :, ::-1].transpose(2, 0, 1) / 255.0
    h, w = x.shape[1:]
    acc, cnt = np.zeros((3, h * s, w * s)), np.zeros((3, h * s, w * s))
    ys = list(range(0, h - tile, tile - overlap)) + [h - tile]
    xs = list(range(0, w - tile, tile - overlap)) + [w - tile]
    for y in ys:
        for xx in xs:
            patch = torch.from_numpy(np.ascontiguousarray(x[:, y:y + tile, xx:xx + tile]))[None]
            with torch.no_grad():
                acc[:, y * s:(y + tile) * s, xx * s:(xx + tile) * s] += ref(patch).numpy()[0]
            cnt[:, y * s:(y + tile) * s, xx * s:(xx + tile) * s] += 1
    expected = np.round(np.clip(acc / cnt, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)[:, :, ::-1]
    got = np.asarray(upscale(img, 2, model, Tiling("average", tile, overlap)))
    # 41×27 ×2 = 82×54 → floored to 80×48 by Lanczos; compare before that step: one model pass.
    raw = np.asarray(model_pass(model, img, Tiling("average", tile, overlap)))
    assert np.array_equal(raw, expected)
    assert got.shape == (48, 80, 3)


def test_scale_handling_passes_and_lanczos(monkeypatch):
    import inpaintlab.upscalers.scale as scale_mod
    model, _ = _esrgan(scale=2, seed=4)
    passes = []
    real = scale_mod.model_pass
    monkeypatch.setattr(scale_mod, "model_pass", lambda m, im, t=None: passes.append(im.size) or real(m, im, t))
    img = _image(20, 12, 2)
    out = upscale(img, 2.5, model)                      # 2× model: 2×, 4×, then Lanczos down to 50×30 → 48×24
    assert passes == [(20, 12), (40, 24)] and out.size == (48, 24)
    four = real(model, real(model, img))
    assert np.array_equal(np.asarray(out), np.asarray(four.resize((48, 24), Image.Resampling.LANCZOS)))
    passes.clear()
    assert upscale(img, 1, model).size == (16, 8) and passes == [(20, 12)]   # scale 1 still runs once
    passes.clear()
    assert upscale(img, 2, model).size == (40, 24) and passes == [(20, 12)]


def test_builtin_upscalers_and_resize_image():
    img = _image(21, 13, 3)
    lz = Image.Resampling.LANCZOS
    assert upscale(img, 2, "None") is img
    step = img.resize((42, 26), lz)
    assert np.array_equal(np.asarray(upscale(img, 2, "Lanczos")), np.asarray(step.resize((40, 24), lz)))
    near = img.resize((42, 26), Image.Resampling.NEAREST)
    assert np.array_equal(np.asarray(upscale(img, 2, "Nearest")), np.asarray(near.resize((40, 24), lz)))
    # resize_image: "None" is one Lanczos; "Lanczos" is three (to int(w·s), to the multiple of 8, to the target).
    assert np.array_equal(np.asarray(resize_image(img, 45, 27, "None")), np.asarray(img.resize((45, 27), lz)))
    s = max(45 / 21, 27 / 13)
    a = img.resize((int(21 * s), int(13 * s)), lz)
    b = a.resize((int(21 * s // 8 * 8), int(13 * s // 8 * 8)), lz)
    assert np.array_equal(np.asarray(resize_image(img, 45, 27, "Lanczos")), np.asarray(b.resize((45, 27), lz)))
    # A smaller target skips the upscaler.
    assert np.array_equal(np.asarray(resize_image(img, 10, 6, "Nearest")), np.asarray(img.resize((10, 6), lz)))
    with pytest.raises(UpscalerError, match="not a built-in upscaler"):
        upscale(img, 2, "R-ESRGAN 4x+")
    with pytest.raises(UpscalerError, match="overlap"):
        model, _ = _esrgan(seed=5)
        upscale(img, 2, model, Tiling("grid", 8, 8))
