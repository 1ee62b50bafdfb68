"""Crop regions, expand_crop_region, resize_image modes 0-3 and crop/uncrop vs A1111 v1.10's worked arithmetic."""

import numpy as np
import pytest
from PIL import Image

from inpaintlab.masking import (
    crop_for_only_masked,
    expand_crop_region,
    get_crop_region,
    get_crop_region_v2,
    resize_image,
    uncrop,
)

LANCZOS = Image.Resampling.LANCZOS


@pytest.fixture
def rng():
    return np.random.default_rng(99)


def _img(rng, w, h, mode="RGB"):
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8))
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


# --- crop regions --------------------------------------------------------------------------------------------------


def _numpy_bbox(a):
    ys, xs = np.nonzero(a)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("pad", [0, 3, 16, 500])
def test_get_crop_region_v2_random(rng, pad):
    for _ in range(5):
        a = np.zeros((60, 80), np.uint8)
        x1, y1 = rng.integers(0, 70), rng.integers(0, 50)
        a[y1 : y1 + rng.integers(1, 10), x1 : x1 + rng.integers(1, 10)] = rng.integers(1, 256)
        a[rng.integers(0, 60), rng.integers(0, 80)] = 1  # a single faint pixel counts
        bx1, by1, bx2, by2 = _numpy_bbox(a)
        expected = (max(bx1 - pad, 0), max(by1 - pad, 0), min(bx2 + pad, 80), min(by2 + pad, 60))
        assert get_crop_region_v2(Image.fromarray(a), pad) == expected
        assert get_crop_region_v2(a, pad) == expected  # numpy input, as A1111 accepts
        assert get_crop_region(Image.fromarray(a), pad) == expected


def test_get_crop_region_empty():
    empty = Image.new("L", (80, 60))
    assert get_crop_region_v2(empty) is None
    assert get_crop_region_v2(empty, 10) is None
    # legacy: inverted box (IW - pad, IH - pad, pad, pad), clamped
    assert get_crop_region(empty) == (80, 60, 0, 0)
    assert get_crop_region(empty, 10) == (70, 50, 10, 10)
    assert get_crop_region(empty, 70) == (10, 0, 70, 60)


def test_get_crop_region_bad_pad():
    with pytest.raises(ValueError, match="pad"):
        get_crop_region_v2(Image.new("L", (8, 8), 255), -1)


# --- expand_crop_region --------------------------------------------------------------------------------------------


def test_expand_crop_region_spec_example_1():
    # Image 1024x768, processing 768x512, bbox (600,300,700,340), pad 16 (spec §5).
    a = np.zeros((768, 1024), np.uint8)
    a[300:340, 600:700] = 255
    box = get_crop_region_v2(Image.fromarray(a), 16)
    assert box == (584, 284, 716, 356)
    box = expand_crop_region(box, 768, 512, 1024, 768)
    assert box == (584, 276, 716, 364)
    x1, y1, x2, y2 = box
    assert (x1, y1, x2 - x1, y2 - y1) == (584, 276, 132, 88)  # paste_to


def test_expand_crop_region_spec_example_2():
    assert expand_crop_region((100, 400, 300, 500), 512, 512, 512, 512) == (100, 312, 300, 512)


@pytest.mark.parametrize(
    "box,pw,ph,iw,ih,expected",
    [
        # shift down from the top edge: d = 30 -> (-15, 25) -> (0, 40)
        ((10, 0, 50, 10), 64, 64, 100, 100, (10, 0, 50, 40)),
        # tall box grows in x; left edge shift
        ((0, 0, 10, 40), 64, 64, 100, 100, (0, 0, 40, 40)),
        # odd difference: the extra pixel goes to the right/bottom
        ((50, 50, 60, 63), 64, 64, 100, 100, (49, 50, 62, 63)),
        # equal ratio: ties take the x branch with d = 0
        ((10, 10, 30, 30), 64, 64, 100, 100, (10, 10, 30, 30)),
        # desired size truncates: 100/1.5 = 66.67 -> d = int(6.67) = 6
        ((0, 20, 100, 80), 768, 512, 200, 200, (0, 17, 100, 83)),
        # wanted box taller than the image: shift up, shift down, clamp -> ratio lost
        ((0, 0, 100, 10), 64, 64, 100, 50, (0, 0, 100, 50)),
        # grown box ends exactly on the far edge (y2 == IH): shifted by 0
        ((0, 70, 40, 90), 64, 64, 100, 100, (0, 60, 40, 100)),
        # past the far edge: d = 90 -> (45, 145) -> shifted up 45 -> (0, 100)
        ((0, 90, 100, 100), 64, 64, 100, 100, (0, 0, 100, 100)),
    ],
)
def test_expand_crop_region_hand_cases(box, pw, ph, iw, ih, expected):
    assert expand_crop_region(box, pw, ph, iw, ih) == expected


def test_expand_crop_region_properties(rng):
    for _ in range(300):
        iw, ih = int(rng.integers(16, 300)), int(rng.integers(16, 300))
        pw, ph = 8 * int(rng.integers(1, 129)), 8 * int(rng.integers(1, 129))
        x1, y1 = int(rng.integers(0, iw - 1)), int(rng.integers(0, ih - 1))
        x2, y2 = int(rng.integers(x1 + 1, iw + 1)), int(rng.integers(y1 + 1, ih + 1))
        e = expand_crop_region((x1, y1, x2, y2), pw, ph, iw, ih)
        ex1, ey1, ex2, ey2 = e
        assert all(isinstance(v, int) for v in e)
        # inside the image and containing the original box
        assert 0 <= ex1 <= x1 and 0 <= ey1 <= y1 and x2 <= ex2 <= iw and y2 <= ey2 <= ih
        # exactly one axis changes, the one A1111 picks
        grow_h = (x2 - x1) / (y2 - y1) > pw / ph
        if grow_h:
            assert (ex1, ex2) == (x1, x2)
            want = int((x2 - x1) / (pw / ph) - (y2 - y1)) + (y2 - y1)
            got = ey2 - ey1
        else:
            assert (ey1, ey2) == (y1, y2)
            want = int((y2 - y1) * (pw / ph) - (x2 - x1)) + (x2 - x1)
            got = ex2 - ex1
        limit = ih if grow_h else iw
        # grown to the truncated desired length, unless the image is too small for it
        assert got == min(want, limit)
        if want <= limit:
            # aspect ratio within one pixel of truncation
            assert abs((ex2 - ex1) / (ey2 - ey1) - pw / ph) <= (pw / ph) / (ey2 - ey1) + 1 / (ey2 - ey1) + 1e-9


def test_expand_crop_region_rejects_empty_box():
    with pytest.raises(ValueError, match="crop_region"):
        expand_crop_region((10, 10, 10, 20), 64, 64, 100, 100)


# --- resize_image --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_resize_mode_0(rng, mode):
    im = _img(rng, 50, 30, mode)
    out = resize_image(0, im, 64, 40)
    assert out.mode == mode and out.size == (64, 40)
    assert np.array_equal(np.array(out), np.array(im.resize((64, 40), LANCZOS)))


def test_resize_mode_1_crop_wide_source(rng):
    # 100x50 (ratio 2) -> 64x64: r = 1 <= 2 -> sw = 100*64//50 = 128, sh = 64, pasted at x = 32 - 64 = -32.
    im = _img(rng, 100, 50)
    out = np.array(resize_image(1, im, 64, 64))
    assert np.array_equal(out, np.array(im.resize((128, 64), LANCZOS))[:, 32:96])


def test_resize_mode_1_crop_tall_source(rng):
    # 50x100 -> 64x32: r = 2 > 0.5 -> sw = 64, sh = 100*64//50 = 128, pasted at y = 16 - 64 = -48.
    im = _img(rng, 50, 100)
    out = np.array(resize_image(1, im, 64, 32))
    assert np.array_equal(out, np.array(im.resize((64, 128), LANCZOS))[48:80])


def test_resize_mode_1_odd_overflow(rng):
    # 5x6 -> 10x11: r = 0.909 > 0.833 -> sw = 10, sh = 6*10//5 = 12, pasted at y = 5 - 6 = -1: one row cut at each end.
    im = _img(rng, 5, 6)
    out = np.array(resize_image(1, im, 10, 11))
    assert np.array_equal(out, np.array(im.resize((10, 12), LANCZOS))[1:12])
    # 6x5 -> 13x10: r = 1.3 > 1.2 -> sw = 13, sh = 5*13//6 = 10, exact fit at (0, 0).
    im = _img(rng, 6, 5)
    assert np.array_equal(np.array(resize_image(1, im, 13, 10)), np.array(im.resize((13, 10), LANCZOS)))


def test_resize_mode_1_and_2_return_rgb_for_l(rng):
    im = _img(rng, 40, 20, "L")
    for mode in (1, 2, 3):
        out = resize_image(mode, im, 32, 32)
        assert out.mode == "RGB"
        a = np.array(out)
        assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])


def test_resize_mode_2_top_bottom_bars(rng):
    # 100x50 -> 64x64: r = 1 < 2 -> sw = 64, sh = 50*64//100 = 32, pasted at y = 32 - 16 = 16, bars of 16 rows.
    im = _img(rng, 100, 50)
    out = np.array(resize_image(2, im, 64, 64))
    resized = im.resize((64, 32), LANCZOS)
    assert np.array_equal(out[16:48], np.array(resized))
    top = np.array(resized.resize((64, 16), box=(0, 0, 64, 0)))
    bottom = np.array(resized.resize((64, 16), box=(0, 32, 64, 32)))
    assert np.array_equal(out[:16], top)
    assert np.array_equal(out[48:], bottom)
    # every bar row is the same edge sample, stretched
    assert (out[:16] == out[0:1]).all() and (out[48:] == out[48:49]).all()


def test_resize_mode_2_bars_are_the_edge_rows(rng):
    # When the resized image's first and last two rows are constant in y, the stretched edge equals that row.
    row_top = rng.integers(0, 256, (1, 64, 3), dtype=np.uint8)
    row_bot = rng.integers(0, 256, (1, 64, 3), dtype=np.uint8)
    mid = rng.integers(0, 256, (28, 64, 3), dtype=np.uint8)
    src = np.concatenate([row_top.repeat(2, 0), mid, row_bot.repeat(2, 0)])  # 64x32, already at target width
    out = np.array(resize_image(2, Image.fromarray(src), 64, 64))  # sw = 64, sh = 32: no resampling of src
    assert np.array_equal(out[16:48], src)
    assert (out[:16] == row_top).all() and (out[48:] == row_bot).all()


def test_resize_mode_2_side_bars(rng):
    # 50x100 -> 64x64: r = 1 > 0.5 -> sw = 50*64//100 = 32, sh = 64, pasted at x = 16, bars 16 columns wide.
    im = _img(rng, 50, 100)
    out = np.array(resize_image(2, im, 64, 64))
    resized = im.resize((32, 64), LANCZOS)
    assert np.array_equal(out[:, 16:48], np.array(resized))
    assert np.array_equal(out[:, :16], np.array(resized.resize((16, 64), box=(0, 0, 0, 64))))
    assert np.array_equal(out[:, 48:], np.array(resized.resize((16, 64), box=(32, 0, 32, 64))))
    assert (out[:, :16] == out[:, 0:1]).all() and (out[:, 48:] == out[:, 48:49]).all()
    # mode 3 behaves as mode 2 inside resize_image
    assert np.array_equal(np.array(resize_image(3, im, 64, 64)), out)


def test_resize_mode_2_same_ratio_no_bars(rng):
    im = _img(rng, 30, 20)
    assert np.array_equal(np.array(resize_image(2, im, 60, 40)), np.array(im.resize((60, 40), LANCZOS)))


def test_resize_image_bad_args(rng):
    im = _img(rng, 8, 8)
    with pytest.raises(ValueError, match="resize_mode"):
        resize_image(4, im, 8, 8)
    with pytest.raises(ValueError, match="size"):
        resize_image(0, im, 0, 8)
    with pytest.raises(TypeError):
        resize_image(0, np.zeros((8, 8)), 8, 8)


# --- crop / uncrop -------------------------------------------------------------------------------------------------


def test_crop_for_only_masked(rng):
    image, mask = _img(rng, 100, 80), _img(rng, 100, 80, "L")
    box = (10, 20, 60, 45)  # 50x25 -> 64x64 with mode 2 (top/bottom bars)
    out_img, out_mask = crop_for_only_masked(image, mask, box, 64, 64)
    assert out_img.mode == "RGB" and out_mask.mode == "L" and out_img.size == out_mask.size == (64, 64)
    assert np.array_equal(np.array(out_img), np.array(resize_image(2, image.crop(box), 64, 64)))
    m2 = np.array(resize_image(2, mask.crop(box), 64, 64))
    assert np.array_equal(np.array(out_mask), m2[..., 0])
    assert crop_for_only_masked(image, None, box, 64, 64)[1] is None


def test_uncrop_places_crop_at_paste_to(rng):
    gen = _img(rng, 64, 64)
    out = uncrop(gen, (10, 20, 30, 40), (100, 80))
    assert out.mode == "RGBA" and out.size == (100, 80)
    a = np.array(out)
    # 64x64 -> 30x40 with mode 1: r = 0.75 <= 1 -> sw = 64*40//64 = 40, sh = 40, pasted at x = 15 - 20 = -5
    expected = np.array(gen.resize((40, 40), LANCZOS))[:, 5:35]
    assert np.array_equal(a[20:60, 10:40, :3], expected)
    assert (a[20:60, 10:40, 3] == 255).all()
    outside = np.ones((80, 100), bool)
    outside[20:60, 10:40] = False
    assert (a[outside] == 0).all()  # fully transparent canvas elsewhere
