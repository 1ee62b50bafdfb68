"""The skeleton's hooks: called in stage order, wrappers nested as the table says, chained hooks chained, and the
CFG parts a technique sees reproduce A1111's combination bit for bit (with and without `AND` sub-prompts)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.pipeline import HOOKS, Technique, TechniqueError
from inpaintlab.samplers import a1111_combine

FAST = dict(steps=3, cfg_scale=5.0, seed=5, width=32, height=32)


@pytest.fixture(scope="module")
def pipe(tiny_checkpoint):
    return inpaintlab.load(tiny_checkpoint, kernels="torch")


def inputs():
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    mask = Image.new("L", (32, 32))
    ImageDraw.Draw(mask).rectangle((8, 8, 23, 23), fill=255)
    return image, mask


class Recorder(Technique):
    """Implements every hook; records (name, hook) in call order and tags the objects it wraps."""

    def __init__(self, name, log, order=100):
        self.name, self.log, self.order = name, log, order

    def _note(self, hook):
        self.log.append((self.name, hook))

    def setup(self, job): self._note("setup")
    def prepare(self, job): self._note("prepare")
    def networks(self, job): self._note("networks")
    def latents(self, job): self._note("latents")
    def conditioning(self, job): self._note("conditioning")

    def infotext(self, job, extra):
        self._note("infotext")
        extra[f"{self.name} key"] = 1

    def noise(self, job, noise):
        self._note("noise")
        return noise

    def sampler_noise(self, job, noise):
        self._note("sampler_noise")
        return noise

    def _wrap(self, hook, inner):
        def wrapped(*args, **kwargs):
            self.log.append((self.name, hook + " call"))
            return inner(*args, **kwargs)
        self._note(hook)
        return wrapped

    def wrap_unet(self, job, unet): return self._wrap("wrap_unet", unet)
    def wrap_cfg(self, job, cfg): return self._wrap("wrap_cfg", cfg)
    def wrap_denoiser(self, job, model): return self._wrap("wrap_denoiser", model)

    def combine_cfg(self, job, parts):
        self._note("combine_cfg")
        return None

    def after_cfg(self, job, parts, denoised):
        self._note("after_cfg")
        return denoised

    def on_step(self, job, d): self._note(f"on_step {job.step}")

    def after_sample(self, job, samples):
        self._note("after_sample")
        return samples

    def decode(self, job, x):
        self._note("decode")
        return x

    def composite(self, job, result):
        self._note("composite")
        return result

    def postprocess(self, job, result):
        self._note("postprocess")
        return result


def test_hooks_run_in_stage_order_and_wrappers_nest_first_innermost(pipe):
    image, mask = inputs()
    log = []
    plain = pipe.inpaint(image, mask, "a cat", sampler="Euler a", **FAST)
    result = pipe.inpaint(image, mask, "a cat", sampler="Euler a", techniques=[Recorder("b", log), Recorder("a", log, 90)],
                          callback=lambda d: log.append(("user", "callback")), **FAST)
    assert torch.equal(result.samples, plain.samples)  # hooks that change nothing change nothing
    assert [np.asarray(i).tobytes() for i in result.images] == [np.asarray(i).tobytes() for i in plain.images]
    firsts = list(dict.fromkeys(hook.split(" ")[0] for name, hook in log if name == "a"))
    stage_order = [h for h, _ in HOOKS]
    assert [h for h in stage_order if h in firsts] == firsts  # each hook's first call follows the stage order
    assert log[:2] == [("a", "setup"), ("b", "setup")]  # smaller order first
    one_call = log[log.index(("b", "wrap_denoiser")) + 1:]
    calls = [entry for entry in one_call if entry[1].endswith(" call")][:6]
    # b was added after a, so b's wrappers are outside a's: the sampler calls b's denoiser first, the UNet last
    assert calls == [("b", "wrap_denoiser call"), ("a", "wrap_denoiser call"), ("b", "wrap_cfg call"),
                     ("a", "wrap_cfg call"), ("b", "wrap_unet call"), ("a", "wrap_unet call")]
    steps = [hook for name, hook in log if name == "a" and hook.startswith("on_step")]
    assert steps == ["on_step 0", "on_step 1", "on_step 2"]
    assert log[log.index(("b", "on_step 0")) + 1] == ("user", "callback")
    assert sum(1 for e in log if e == ("a", "sampler_noise")) == 2  # Euler a: one ancestral draw per step but the last
    assert result.infotext.index("a key: 1") < result.infotext.index("b key: 1")


@pytest.mark.parametrize("prompt", ["a cat", "a cat AND a dog :0.5", "a [cat:dog:1]"])
def test_cfg_parts_rebuild_a1111s_combination_bit_for_bit(pipe, prompt):
    seen = []

    class Same(Technique):
        def combine_cfg(self, job, parts):
            seen.append(parts)
            return a1111_combine(parts)

    kwargs = dict(FAST, batch_size=2)
    plain = pipe.txt2img(prompt, "blurry", **kwargs)
    same = pipe.txt2img(prompt, "blurry", techniques=[Same()], **kwargs)
    assert torch.equal(same.samples, plain.samples)
    n = len(seen[0].weights)
    assert seen[0].cond.shape[0] == 2 * n and seen[0].uncond.shape[0] == 2
    assert n == (2 if "AND" in prompt else 1)

    class Rescaled(Technique):  # after_cfg sees the combined x0 and may change it
        def after_cfg(self, job, parts, denoised):
            return denoised * 0 + parts.uncond

    no_guidance = pipe.txt2img(prompt, "blurry", techniques=[Rescaled()], **kwargs)
    assert not torch.equal(no_guidance.samples, plain.samples)


def test_blend_slot_is_exclusive_and_techniques_are_type_checked(pipe):
    image, mask = inputs()

    class Blend(Technique):
        name, slot = "mine", "blend"

    with pytest.raises(TechniqueError, match="mine and Differential Diffusion|Differential Diffusion and mine"):
        pipe.inpaint(image, mask, "a cat", differential_diffusion=True, techniques=[Blend()], **FAST)
    with pytest.raises(TypeError, match="Technique objects"):
        pipe.inpaint(image, mask, "a cat", techniques=[object()], **FAST)
    # a blend technique that does nothing leaves the binary blend out: the masked area is plain img2img
    free = pipe.inpaint(image, mask, "a cat", techniques=[Blend()], **FAST)
    assert free.overlay_masks is None and not torch.equal(free.samples, pipe.inpaint(image, mask, "a cat", **FAST).samples)
