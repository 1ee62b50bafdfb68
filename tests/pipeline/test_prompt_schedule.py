"""Prompt editing, alternation and AND through the pipeline, on the tiny random-weight checkpoint.

Oracle: A1111 v1.10's prompt-scheduling rules applied by hand: which text each UNet call
must see, counted from 0 at the start of the (truncated) run, with schedules over the user's step count. The UNet is
wrapped to record the text context of every call; the expected contexts are encoded independently of the sampling.
"""
import numpy as np
import pytest
import torch
from PIL import Image

import inpaintlab
from inpaintlab.infotext import parse_infotext
from inpaintlab.samplers import CFGDenoiser, DiscreteSchedule, EpsDenoiser, ImageRNG, sample_euler

FAST = dict(steps=4, cfg_scale=5.0, seed=321, sampler="Euler")  # Euler: one UNet call per step


class RecordingUNet(torch.nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet
        self.contexts = []
        self.inputs = []

    def forward(self, x_in, t, context=None):
        self.contexts.append(context.clone())
        self.inputs.append(x_in.clone())
        return self.unet(x_in, t, context=context)


@pytest.fixture()
def pipe(tiny_checkpoint):
    pipe = inpaintlab.load(tiny_checkpoint, kernels="torch")
    pipe.unet = RecordingUNet(pipe.unet)
    return pipe


def picture(w=64, h=64, seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def test_prompt_editing_switches_at_the_boundary(pipe):
    # [cat:dog:0.5] at 4 steps -> [(2, "cat"), (4, "dog")]: calls 0, 1, 2 use "cat", call 3 "dog".
    pair = pipe.encode_prompts(["cat", "dog"])  # A1111 encodes a prompt's schedule texts as one batch
    empty = pipe.encode_prompts([""])
    assert not torch.equal(pair[0], pair[1])
    torch.testing.assert_close(pair, torch.cat([pipe.encode_prompt("cat"), pipe.encode_prompt("dog")]),
                               rtol=0, atol=1e-6)
    result = pipe.txt2img("[cat:dog:0.5]", width=32, height=32, **FAST)
    contexts = pipe.unet.contexts
    assert len(contexts) == 4
    for call, context in enumerate(contexts):
        expected = pair[0] if call <= 2 else pair[1]
        assert torch.equal(context, torch.stack([expected, empty[0]])), call
    assert parse_infotext(result.infotext)["Prompt"] == "[cat:dog:0.5]"  # the raw prompt is what is recorded



def test_img2img_schedule_spans_the_full_step_count(pipe):
    # strength 0.5 at 4 steps runs 3 calls (0..2): all <= 2, so "[cat:dog:0.5]" never reaches "dog" (spec §7).
    image = picture()
    pair = pipe.encode_prompts(["cat", "dog"])
    scheduled = pipe.img2img(image, "[cat:dog:0.5]", denoising_strength=0.5, **FAST)
    assert len(pipe.unet.contexts) == 3
    assert all(torch.equal(c[0], pair[0]) for c in pipe.unet.contexts)
    pipe.unet.contexts.clear()
    plain = pipe.img2img(image, "cat", denoising_strength=0.5, **FAST)
    # "cat" alone takes the fixed-prompt path; its context matches the scheduled one to encoder rounding
    torch.testing.assert_close(pipe.unet.contexts[0][0], pair[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(scheduled.samples, plain.samples, rtol=0, atol=1e-6)  # measured: 0


def test_alternation_and_negative_schedule(pipe):
    # [cat|dog] at 4 steps: entries 1..4 take options 0,1,0,1; call k uses entry max(k, 1): cat, cat, dog, cat.
    # Negative [ugly::1]: "ugly" for calls 0, 1, then "".
    cats = pipe.encode_prompts(["cat", "dog", "cat", "dog"])
    negs = pipe.encode_prompts(["ugly", ""])
    pipe.txt2img("[cat|dog]", "[ugly::1]", width=32, height=32, **FAST)
    expected_cond = [cats[0], cats[0], cats[1], cats[2]]
    expected_uncond = [negs[0], negs[0], negs[1], negs[1]]
    for call, context in enumerate(pipe.unet.contexts):
        assert torch.equal(context[0], expected_cond[call]), call
        assert torch.equal(context[1], expected_uncond[call]), call


def test_and_passes_two_conds_per_image(pipe):
    cat, dog, empty = pipe.encode_prompt("cat"), pipe.encode_prompt(" dog"), pipe.encode_prompt("")
    result = pipe.txt2img("cat AND dog:0.5", width=32, height=32, batch_size=2, **FAST)
    assert len(pipe.unet.contexts) == 4
    for context in pipe.unet.contexts:  # [img0: cat, dog, img1: cat, dog, uncond x2]
        assert context.shape[0] == 6
        for row, expected in enumerate([cat, dog, cat, dog, empty, empty]):
            assert torch.equal(context[row], expected[0]), row
    assert parse_infotext(result.infotext)["Prompt"] == "cat AND dog:0.5"

    # Wiring: the same Euler run built by hand from the public pieces (weights 1 and 0.5 in CFG) matches exactly.
    model = CFGDenoiser(EpsDenoiser(pipe.unet.unet, DiscreteSchedule()), torch.cat([cat, dog]), empty, 5.0,
                        cond_weights=[1.0, 0.5])
    noise = ImageRNG((4, 4, 4), [321, 322]).next()
    with torch.inference_mode():
        expected = sample_euler(model, noise * result.sigmas[0], result.sigmas, disable=True)
    assert torch.equal(result.samples, expected)

    # The weight enters CFG: with dog at weight 0 the result equals the prompt "cat" alone up to rounding, and
    # at 0.5 it does not.
    pipe.unet.contexts.clear()
    zero = pipe.txt2img("cat AND dog:0", width=32, height=32, **FAST)
    alone = pipe.txt2img("cat", width=32, height=32, **FAST)
    half = pipe.txt2img("cat AND dog:0.5", width=32, height=32, **FAST)
    # Measured: 0 with AVX2 kernels, 8.9e-5 with AVX-512 ones (the UNet batch is 3 rows against 2, and oneDNN picks
    # its kernels by batch); the weight-0.5 prompt moves the result by far more.
    torch.testing.assert_close(zero.samples, alone.samples, rtol=0, atol=5e-4)
    assert (half.samples - alone.samples).abs().max() > 1e-2


def test_nine_channel_model_with_and(tiny_inpainting_checkpoint):
    pipe = inpaintlab.load(tiny_inpainting_checkpoint, kernels="torch")
    pipe.unet = RecordingUNet(pipe.unet)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = pipe.inpaint(picture(), mask, "a [red:blue:2] door AND wood:0.7", batch_size=2, **FAST)
    assert len(out.images) == 2 and np.isfinite(out.samples.numpy()).all()
    # Rows [img0 x2, img1 x2, uncond img0, img1]: each row carries its own image's 5 conditioning channels
    # (the two images' masked-image latents differ through their posterior samples).
    for x_in in pipe.unet.inputs:
        ic = x_in[:, 4:]
        assert x_in.shape[0] == 6 and not torch.equal(ic[0], ic[2])
        for row, image in enumerate([0, 0, 1, 1, 0, 1]):
            assert torch.equal(ic[row], ic[4 + image]), row
