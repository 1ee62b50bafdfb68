"""The example technique from outside the package (examples/techniques/feathered_blend.py) through the public
pipeline: it replaces the binary blend, its setting is a keyword and a sweep axis, and the maths is checked against
a float64 re-derivation of its own rule on the real sampler run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab import settings as registry
from inpaintlab.infotext import parse_infotext, settings_from_infotext
from inpaintlab.pipeline import Technique, TechniqueError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "techniques"))
from feathered_blend import FeatheredBlend  # noqa: E402

FAST = dict(steps=3, cfg_scale=5.0, seed=11, width=32, height=32, sampler="Euler")


@pytest.fixture(autouse=True)
def _registry():
    """The example registers its row on first use; take it out again so other tests see the package's rows only."""
    yield
    registry.SETTINGS.pop("feather_power", None)
    registry.INFOTEXT_KEYS.pop("Feathered blend", None)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def inputs():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).ellipse((6, 6, 25, 25), fill=255)
    return image, mask


class Spy(Technique):
    """Records what the sampler's model returns before any blend (order 0: the innermost wrapper)."""

    order = 0

    def __init__(self):
        self.calls = []

    def wrap_denoiser(self, job, model):
        def spy(x, sigma, **kwargs):
            out = model(x, sigma, **kwargs)
            self.calls.append(out.double())
            return out
        return spy


def test_feathered_blend_replaces_the_binary_blend_with_its_own_rule(pipe):
    image, mask = inputs()
    spy, blend = Spy(), FeatheredBlend()
    result = pipe.inpaint(image, mask, "a cat", mask_blur=6, techniques=[spy, blend], feather_power=2.0, **FAST)
    m = result.latent_mask.double()
    assert ((m > 0) & (m < 1)).any()  # unrounded: the technique's setup ran before the masks were made
    w = m ** 2.0
    init = result.init_latent.double()
    # the final latent is the last step's blend, then the final blend: both w * D + (1 - w) * init, re-derived here
    expected = spy.calls[-1] * w + init * (1 - w)  # Euler's last step lands on its denoised estimate (sigma 0)
    expected = expected * w + init * (1 - w)
    assert torch.allclose(result.samples.double(), expected, atol=1e-5, rtol=0)
    fields = parse_infotext(result.infotext)
    assert fields["Feathered blend"] == "True" and fields["Feather power"] == "2.0"
    assert settings_from_infotext(result.infotext, strict=True)["feather_power"] == 2.0
    keep = np.asarray(result.overlay_mask) == 0  # the original pixels come back outside the blurred mask
    np.testing.assert_array_equal(np.asarray(result.images[0])[keep], np.asarray(image)[keep])

    binary = pipe.inpaint(image, mask, "a cat", mask_blur=6, **FAST)
    assert "Feathered blend" not in binary.infotext
    assert not torch.equal(binary.samples, result.samples)


def test_one_blend_per_job_and_unknown_keywords_refused(pipe):
    image, mask = inputs()
    with pytest.raises(TechniqueError, match="soft inpainting and feathered blend both take the blend slot"):
        pipe.inpaint(image, mask, "a cat", soft_inpainting=True, techniques=[FeatheredBlend()], **FAST)
    with pytest.raises(TypeError, match="feather_powr"):
        pipe.inpaint(image, mask, "a cat", techniques=[FeatheredBlend()], feather_powr=2.0, **FAST)
    with pytest.raises(ValueError, match="feather_power must be > 0"):
        pipe.inpaint(image, mask, "a cat", techniques=[FeatheredBlend()], feather_power=0.0, **FAST)


def test_the_technique_and_its_setting_in_a_sweep(tiny_checkpoint, tmp_path):
    from inpaintlab.study import sweep

    image, mask = inputs()
    image.save(tmp_path / "image.png")
    mask.save(tmp_path / "mask.png")
    FeatheredBlend()  # registers its row, so the spec may use it as an axis
    spec = {"model": str(tiny_checkpoint), "image": str(tmp_path / "image.png"), "mask": str(tmp_path / "mask.png"),
            "base": {"prompt": "a cat", "steps": 2, "width": 32, "height": 32, "mask_blur": 6, "sampler": "Euler"},
            "x": {"feather_power": [0.5, 3.0]}, "y": {"cfg_scale": [5]}, "seeds": [1], "kernels": "torch"}
    rows = sweep(spec, tmp_path / "out", techniques=[FeatheredBlend()])
    powers = [parse_infotext(r["infotext"])["Feather power"] for r in rows]
    assert powers == ["0.5", "3.0"]
    # the same spec into the same folder without the technique: other cell keys, so nothing is reused
    plain = sweep(spec, tmp_path / "out")
    assert {r["key"] for r in plain}.isdisjoint(r["key"] for r in rows)
    assert all("Feathered blend" not in r["infotext"] for r in plain)
    assert json.loads((tmp_path / "out" / "results.jsonl").read_text().splitlines()[0])["key"] == plain[0]["key"]
