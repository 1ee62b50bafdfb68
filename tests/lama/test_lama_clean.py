"""Inpaint Anything's Cleaner (`clean`), the inpaint_only+lama preprocessor with a LaMa model or file, `inpaintlab clean`.

The Cleaner is re-derived in float64 NumPy from lama-cleaner's steps (pad_img_to_modulo, norm_img, mask > 0, LaMa's
wrapper, clip/astype, the float64 soft blend, Inpaint Anything's astype) around spandrel's generator as the network.
"""
import numpy as np
import pytest
import torch
from PIL import Image
from shims import use_torchvision_shim

use_torchvision_shim()

from lama_reference import spandrel_generator  # noqa: E402

from inpaintlab.cli import main  # noqa: E402
from inpaintlab.controlnet import preprocess as pp  # noqa: E402
from inpaintlab.lama import (FFCResNetGenerator, LamaError, TINY_LAMA, clean, ia_auto_resize, load_lama,  # noqa: E402
                             make_tiny_lama_file, pad_to_modulo)


@pytest.fixture(scope="module")
def pair():
    ref = spandrel_generator(ngf=8, n_blocks=2, seed=7)
    return ref, load_lama(ref.state_dict())


def _picture(h, w, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4: h // 2 + 3, w // 3: w - 5] = 255
    mask[h // 4 - 1, w // 3: w - 5] = 37  # a soft (LANCZOS-like) edge: a hole for the model, 37/255 in the blend
    return image, mask


def _reference_clean(ref, image, mask):
    h, w = mask.shape
    ph, pw = -h % 8, -w % 8
    img = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="symmetric")
    m = np.pad(mask, ((0, ph), (0, pw)), mode="symmetric")
    x = torch.from_numpy(img.transpose(2, 0, 1).astype(np.float32) / 255)[None]
    hole = torch.from_numpy((m.astype(np.float32) / 255 > 0).astype(np.float32))[None, None]
    with torch.no_grad():
        pred = ref(x * (1 - hole), hole)
    res = (hole * pred + (1 - hole) * x)[0].numpy().transpose(1, 2, 0)
    res = np.clip(res * 255, 0, 255).astype(np.uint8)[:h, :w]
    a = mask[:, :, None] / 255
    return (res * a + image * (1 - a)).astype(np.uint8)


@pytest.mark.parametrize("size", [(37, 50), (40, 56)])
def test_clean_matches_rederivation(pair, size):
    ref, ours = pair
    image, mask = _picture(*size)
    before = (image.copy(), mask.copy())
    out = clean(image, mask, ours)
    expected = _reference_clean(ref, image, mask)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - expected).max() <= 1 and (out != expected).mean() < 1e-3
    assert np.array_equal(out[mask == 0], image[mask == 0])  # untouched outside the mask
    assert not np.array_equal(out[mask == 255], image[mask == 255])
    assert np.array_equal(image, before[0]) and np.array_equal(mask, before[1])
    pil = clean(Image.fromarray(image), Image.fromarray(mask).convert("RGB"), ours)
    assert np.array_equal(pil, out)


class _Grey(FFCResNetGenerator):
    """A stub LaMa that records what it is fed and paints mid-grey."""

    def forward(self, x):
        self.seen = x.clone()
        return torch.full_like(x[:, :3], 0.5)


def test_clean_blend_hole_rule_and_symmetric_padding():
    stub = _Grey(TINY_LAMA)
    image, mask = _picture(13, 21, seed=1)
    out = clean(image, mask, stub)
    grey = np.uint8(127)  # clip(0.5 * 255) truncated
    a = mask[:, :, None] / 255.0
    assert np.array_equal(out, (grey * a + image * (1 - a)).astype(np.uint8))
    fed = stub.seen[0].numpy()
    assert fed.shape == (4, 16, 24)
    hole = fed[3]
    assert np.array_equal(hole[:13, :21] > 0, mask > 0)  # the soft edge (37) is a hole too
    assert np.array_equal(hole[13:16, :21], hole[[12, 11, 10], :21])  # symmetric: rows 13..15 = rows 12, 11, 10
    padded = pad_to_modulo(image)
    assert np.array_equal(padded[13:16, :21], image[[12, 11, 10]])
    assert np.array_equal(padded[:13, 21:24], image[:, [20, 19, 18]])
    assert np.all(fed[:3][:, hole > 0] == 0)  # the hole is zeroed before the network


def test_ia_auto_resize_sizes():
    for (w, h), expected in (((513, 770), (512, 768)), ((1000, 750), (1000, 744)), ((637, 959), (632, 952)),
                             ((64, 48), (64, 48))):
        image = np.zeros((h, w, 3), np.uint8)
        resized, mask = ia_auto_resize(image, np.zeros((h, w), np.uint8))
        assert resized.shape[1::-1] == expected and mask.shape[::-1] == expected
    image, mask = _picture(750, 1000)
    resized, rmask = ia_auto_resize(image, mask)
    assert np.array_equal(resized, image[3:747]) and np.array_equal(rmask, mask[3:747])  # centre crop, no resize


def test_clean_bad_inputs(pair):
    _, ours = pair
    image, mask = _picture(16, 24)
    with pytest.raises(LamaError, match="mask is 23x16, image is 24x16"):
        clean(image, mask[:, :23], ours)
    with pytest.raises(LamaError, match="uint8"):
        clean(image.astype(np.float32), mask, ours)
    with pytest.raises(LamaError, match="mask must be uint8"):
        clean(image, mask.astype(np.float32), ours)


def test_controlnet_lama_fill_with_model_and_file(pair, tmp_path):
    """inpaint_only+lama with a LaMa model or file equals the same network given as a function (the old interface)."""
    ref, ours = pair

    def reference_function(color, m):
        x = torch.from_numpy(np.concatenate([color, m[:, :, None]], 2)).permute(2, 0, 1)[None]
        with torch.no_grad():
            return ref(x[:, :3], x[:, 3:]).numpy()[0].transpose(1, 2, 0)

    image, mask = _picture(120, 90, seed=2)
    rgba = np.concatenate([image, mask[:, :, None]], axis=2)
    expected = pp.lama_fill(rgba, reference_function)
    assert np.array_equal(pp.lama_fill(rgba, ours), expected)
    from safetensors.torch import save_file

    path = tmp_path / "ControlNetLama.safetensors"
    save_file(ours.state_dict(), str(path))
    assert np.array_equal(pp.lama_fill(rgba, path), expected)


def test_cli_clean(tmp_path, capsys):
    lama = make_tiny_lama_file(tmp_path / "lama.pth", seed=8)
    image, mask = _picture(30, 44, seed=3)
    Image.fromarray(image).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert main(["clean", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "mask.png"), "--lama", str(lama),
                 "--out", str(out)]) == 0
    written = out / "photo_lama.png"
    assert capsys.readouterr().out.strip() == str(written)
    assert np.array_equal(np.asarray(Image.open(written)), clean(image, mask, load_lama(lama)))
    Image.fromarray(mask[:, :40]).save(tmp_path / "small.png")
    assert main(["clean", str(tmp_path / "photo.png"), "--mask", str(tmp_path / "small.png"), "--lama", str(lama),
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mask is 40x30 but the image is 44x30" in err
    assert not (tmp_path / "out2").exists()  # nothing written, and the folder the failed run made is gone
