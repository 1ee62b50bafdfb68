"""Inpainting end to end on tiny SD 2.x-v and SDXL-inpainting checkpoints, through the real loader.

Oracles: the overlay rule (pixels outside the blurred mask bit-identical to the input), the k-diffusion v denoiser
wrapping the UNet, and SDXL's ADM vector rebuilt here from the pooled text output and a float64 sinusoid of A1111's
sizes (original = target = processing height x width, crop (0, 0), also in only-masked mode).
"""
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab.clip import encode_prompts_sdxl
from inpaintlab.infotext import parse_infotext
from inpaintlab.pipeline.images import tensor_to_image

FAST = dict(steps=3, cfg_scale=5.0, seed=77)


def picture(w, h):
    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return Image.fromarray(np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def rect_mask(size, box):
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).rectangle(box, fill=255)
    return m


class Recorder:
    """Wraps the UNet's forward and keeps every call's timestep and ADM vector."""

    def __init__(self, unet):
        self.calls, self._forward = [], unet.forward

        def forward(x, t, context, y=None):
            self.calls.append({"t": t.clone(), "y": None if y is None else y.clone(), "x": x.shape})
            return self._forward(x, t, context, y)

        unet.forward = forward


@pytest.fixture(scope="module")
def pipes(tiny_family_checkpoints):
    return {name: inpaintlab.load(tiny_family_checkpoints[name], kernels="torch")
            for name in ("sd2-v", "sdxl-inpainting")}


@pytest.mark.parametrize("name,masked_content,inpaint_area", [
    ("sd2-v", "fill", "whole"), ("sd2-v", "latent_noise", "only_masked"),
    ("sdxl-inpainting", "original", "only_masked"), ("sdxl-inpainting", "latent_nothing", "whole"),
])
def test_inpaint_keeps_pixels_outside_the_mask(pipes, name, masked_content, inpaint_area):
    pipe = pipes[name]
    image, mask = picture(96, 64), rect_mask((96, 64), (40, 16, 71, 47))
    result = pipe.inpaint(image, mask, "a red door", "blurry", masked_content=masked_content, inpaint_area=inpaint_area,
                          width=64, height=64, padding=8, **FAST)
    out, src = np.asarray(result.images[0]), np.asarray(image.resize((64, 64), Image.LANCZOS)
                                                       if inpaint_area == "whole" else image)
    assert result.images[0].size == ((64, 64) if inpaint_area == "whole" else (96, 64))
    untouched = np.asarray(result.overlay_mask) == 0
    assert untouched.sum() > 1000
    np.testing.assert_array_equal(out[untouched], src[untouched])
    inside = np.asarray(result.overlay_mask) == 255
    assert np.abs(out[inside].astype(int) - src[inside]).mean() > 3  # repainted
    fields = parse_infotext(result.infotext)
    assert fields["Model"] == f"tiny-{name}" and fields["Size"] == "64x64"
    assert ("Conditional mask weight" in fields) == (name == "sdxl-inpainting")


def test_v_model_runs_the_v_denoiser(pipes, kdiff):
    """One Euler step of the pipeline equals k-diffusion's CompVisVDenoiser-style step on the same UNet."""
    pipe = pipes["sd2-v"]
    assert pipe.config.prediction == "v"
    image = picture(64, 64)
    result = pipe.img2img(image, "a house", "", sampler="Euler", steps=1, denoising_strength=1.0, seed=5,
                          cfg_scale=1.0)
    cond = pipe.encode_prompts(["a house"])
    ref_model = kdiff.external.DiscreteVDDPMDenoiser(lambda x, t, cond: pipe.unet(x, t, cond),
                                                     pipe.schedule.alphas_cumprod, quantize=False)
    x, sigma = result.start_latent, result.sigmas[0]
    with torch.inference_mode():
        denoised = ref_model(x, sigma.expand(1), cond=cond)
    expected = x + (x - denoised) / sigma * (result.sigmas[1] - sigma)  # Euler to sigma_1 = 0
    assert result.sigmas[1] == 0
    torch.testing.assert_close(result.samples, expected, rtol=0, atol=1e-5)


def _size_features(h: int, w: int) -> torch.Tensor:
    rows = []
    for n in (h, w, 0, 0, h, w):
        freqs = [math.exp(-math.log(10000.0) * i / 128) for i in range(128)]
        rows += [math.cos(n * f) for f in freqs] + [math.sin(n * f) for f in freqs]
    return torch.tensor(rows, dtype=torch.float64)


def test_sdxl_adm_vector_per_branch_in_only_masked_mode(pipes):
    pipe = pipes["sdxl-inpainting"]
    recorder = Recorder(pipe.unet)
    image, mask = picture(96, 64), rect_mask((96, 64), (60, 10, 70, 20))  # crop box much smaller than 64 x 32
    pipe.inpaint(image, mask, "a cat", "", inpaint_area="only_masked", width=64, height=32, padding=4, **FAST)
    with torch.inference_mode():
        _, pooled = encode_prompts_sdxl(pipe.text_encoder, pipe.text_encoder_2, pipe.tokenizer, ["a cat"],
                                        tokenizer_g=pipe.tokenizer_2)
    sizes = _size_features(32, 64)
    assert len(recorder.calls) == 3
    for call in recorder.calls:
        y = call["y"].double()
        assert y.shape == (2, pooled.shape[1] + 1536) and call["x"][1] == 9
        torch.testing.assert_close(y[0, :pooled.shape[1]], pooled[0].double(), rtol=0, atol=1e-6)
        assert torch.equal(y[1, :pooled.shape[1]], torch.zeros(pooled.shape[1], dtype=torch.float64))  # empty neg.
        for row in y:
            torch.testing.assert_close(row[pooled.shape[1]:], sizes, rtol=0, atol=2e-4)  # fp32 sin/cos of 32 and 64


def test_sdxl_fp16_vae_nan_falls_back_to_float32(tiny_family_checkpoints, caplog):
    pipe = inpaintlab.load(tiny_family_checkpoints["sdxl"], kernels="torch")
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pipe.vae.half()
    with torch.no_grad():  # finite in fp16, but the next conv's sums pass 65504: inf, then NaN in the GroupNorm
        pipe.vae.post_quant_conv.bias += 6e4
        reference_model_bias = pipe.vae.post_quant_conv.bias.float().clone()
    with caplog.at_level("WARNING"):
        images = pipe.decode_latents(latents)
    assert "converting the VAE to 32-bit floats" in caplog.text
    assert next(pipe.vae.parameters()).dtype == torch.float32
    assert torch.equal(pipe.vae.post_quant_conv.bias, reference_model_bias)
    assert images[0].size == (64, 64)
    with torch.inference_mode():  # what a float32 VAE gives for the same weights
        expected = pipe.vae.decode((1.0 / 0.13025) * latents)
    assert np.array_equal(np.asarray(images[0]), np.asarray(tensor_to_image(expected[0])))


def test_sd1_controlnet_is_refused_for_sdxl_and_sd2_by_name(pipes, tmp_path):
    from inpaintlab.tiny import make_tiny_controlnet

    sd1_controlnet = make_tiny_controlnet(tmp_path / "tiny-controlnet.safetensors")
    for name, label in (("sdxl-inpainting", "SDXL"), ("sd2-v", "SD 2.x")):
        with pytest.raises(ValueError, match=rf"ControlNet 'tiny-controlnet' is an SD 1.x ControlNet and cannot be "
                                             rf"used with this {label} checkpoint"):
            pipes[name].txt2img("a cat", width=64, height=64, steps=1, controlnet=sd1_controlnet,
                                controlnet_image=picture(64, 64))
