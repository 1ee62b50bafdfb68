"""The whole inpaint job rebuilt from independent pieces, compared bit for bit with `Pipeline.inpaint`.

The reference follows A1111 v1.10's job from the VAE encode on, literally: the prepared images (`prepare_inpaint`, itself
checked step by step in test_prepare_reference.py), text conditioning per prompt, the VAE posterior sampled from an
explicitly seeded generator times the literal 0.18215, k-diffusion's own eps denoiser and sampler with A1111's CFG and
blend written out, decode with `1/0.18215`, truncation to uint8 and the overlay. Settings are deliberately not the
defaults (CFG 5.5, a negative prompt, clip skip 2, batch 2, mask weight 0.5) so that a setting the pipeline ignored
would show.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

import inpaintlab
from inpaintlab import masking
from inpaintlab.clip import encode_prompts
from inpaintlab.prepare import prepare_inpaint

SCALE = 0.18215


def sd1_alphas_cumprod() -> torch.Tensor:
    """SD1's scaled-linear schedule: float64 roots linspace squared, float64 cumprod, stored as float32."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return torch.from_numpy(np.cumprod(1.0 - betas)).float()


def picture(w, h, seed):
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return Image.fromarray(np.clip(x + rng.integers(-60, 60, (h, w, 3)), 0, 255).astype(np.uint8))


def reference_inpaint(pipe, kdiff, image, mask, prompt, negative, *, seed, batch, steps, sampler, cfg, strength,
                      clip_skip, weight, width, height, **prep_settings):
    prep = prepare_inpaint(image, mask, width, height, **prep_settings)
    seeds = [seed + i for i in range(batch)]
    vae, unet = pipe.vae, pipe.unet

    # Step 8: encode each image on its own; posterior noise from torch's CPU generator reseeded with the last seed.
    src = torch.from_numpy(np.asarray(prep.init, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    src = 2.0 * src - 1.0
    posterior_generator = torch.Generator().manual_seed(seeds[-1])
    init = torch.cat([vae.encode(src).sample(posterior_generator) for _ in seeds]) * SCALE
    h, w = height // 8, width // 8

    # Step 13: one CPU generator per image seed; ancestral samplers keep drawing from it.
    generators = [torch.Generator().manual_seed(s) for s in seeds]

    def draw():
        return torch.stack([torch.randn((4, h, w), generator=g) for g in generators])

    noise = draw()

    # Steps 9–10: latent mask (Pillow bicubic to 1/8, rounded) and masked content.
    small = prep.image_mask.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    nmask = torch.from_numpy(np.round(np.asarray(small, dtype=np.float32)[:, :, 0] / 255.0))[None, None]
    nmask = nmask.expand(batch, 4, h, w)
    content = prep_settings.get("masked_content", "original")
    if content == "latent_noise":
        init = init * (1 - nmask) + noise * nmask
        posterior_generator = torch.Generator().manual_seed(seeds[-1])  # A1111 reseeds the global generator here
    elif content == "latent_nothing":
        init = init * (1 - nmask)

    # Step 11: 9-channel conditioning.
    image_cond = None
    if pipe.config.is_inpainting:
        cmask = torch.from_numpy(np.round(np.asarray(prep.image_mask, dtype=np.float32) / 255.0))[None, None]
        masked_src = torch.lerp(src, src * (1.0 - cmask), weight)
        cond_latent = vae.encode(masked_src.expand(batch, -1, -1, -1)).sample(posterior_generator) * SCALE
        image_cond = torch.cat([F.interpolate(cmask, size=(h, w)).expand(batch, -1, -1, -1), cond_latent], dim=1)

    # Step 12: conditioning per prompt.
    cond = encode_prompts(pipe.text_encoder, pipe.tokenizer, [prompt] * batch, clip_skip=clip_skip)
    uncond = encode_prompts(pipe.text_encoder, pipe.tokenizer, [negative] * batch, clip_skip=clip_skip)

    # Step 14: A1111's img2img truncation of the full schedule.
    def eps_model(x_in, t, context):
        if image_cond is not None:
            x_in = torch.cat([x_in, torch.cat([image_cond, image_cond])], dim=1)
        return unet(x_in, t, context)

    denoiser = kdiff.external.DiscreteEpsDDPMDenoiser(eps_model, sd1_alphas_cumprod(), quantize=False)
    if sampler == "DPM++ 2M":
        sigmas = kdiff.sampling.get_sigmas_karras(steps, denoiser.sigma_min.item(), denoiser.sigma_max.item())
        run = kdiff.sampling.sample_dpmpp_2m
        extra = {}
    else:  # Euler a: the model's own uniform schedule, noise from the per-image generators
        sigmas = denoiser.get_sigmas(steps)
        run = kdiff.sampling.sample_euler_ancestral
        extra = {"noise_sampler": lambda sigma, sigma_next: draw()}
    t_enc = int(min(strength, 0.999) * steps)
    sigmas = sigmas[steps - t_enc - 1:]
    x = init + noise * sigmas[0]

    # Step 15: CFG on the denoised outputs, batch [cond, uncond], then the blend with the clean init latent.
    def model(x, sigma):
        out = denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), context=torch.cat([cond, uncond]))
        denoised = out[batch:].clone()
        denoised += (out[:batch] - out[batch:]) * cfg
        return denoised * nmask + init * (1 - nmask)

    with torch.no_grad():
        samples = run(model, x, sigmas, disable=True, **extra)
        samples = samples * nmask + init * (1 - nmask)  # step 16
        images = []
        for z in samples:  # step 17
            decoded = vae.decode((1.0 / SCALE) * z[None])[0]
            decoded = torch.clamp((decoded + 1.0) / 2.0, min=0.0, max=1.0)
            images.append(Image.fromarray((255.0 * np.moveaxis(decoded.numpy(), 0, 2)).astype(np.uint8)))
    images = [masking.apply_overlay(im, prep.overlay, prep.paste_to) for im in images]  # step 18
    return samples, images


CASES = {
    "whole-fill-dpmpp2m-batch2": dict(
        inpainting=False, size=(80, 64), box=(24, 16, 55, 47), sampler="DPM++ 2M", batch=2,
        settings=dict(masked_content="fill", mask_blur=3, inpaint_area="whole", width=64, height=48)),
    "only-masked-latent-noise-9ch-not-masked": dict(
        inpainting=True, size=(96, 72), box=(10, 10, 85, 61), sampler="DPM++ 2M", batch=1,
        settings=dict(masked_content="latent_noise", mask_blur=2, inpaint_area="only_masked", padding=8,
                      mask_mode="not_masked", width=48, height=32)),
    "whole-original-euler-a-9ch-batch2": dict(
        inpainting=True, size=(64, 64), box=(8, 30, 40, 60), sampler="Euler a", batch=2,
        settings=dict(masked_content="original", mask_blur=4, inpaint_area="whole", width=64, height=64)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_pipeline_equals_the_step_by_step_reference(name, kdiff, tiny_checkpoint, tiny_inpainting_checkpoint):
    case = CASES[name]
    pipe = inpaintlab.load(tiny_inpainting_checkpoint if case["inpainting"] else tiny_checkpoint, kernels="torch")
    image = picture(*case["size"], seed=7)
    mask = Image.new("L", case["size"])
    ImageDraw.Draw(mask).rectangle(case["box"], fill=255)
    common = dict(seed=4242, steps=6, cfg=5.5, strength=0.6, clip_skip=2, weight=0.5)
    settings = dict(case["settings"])
    width, height = settings.pop("width"), settings.pop("height")

    result = pipe.inpaint(image, mask, "a (red:1.3) door", "blurry, [lowres]", steps=common["steps"],
                          sampler=case["sampler"], cfg_scale=common["cfg"], seed=common["seed"],
                          denoising_strength=common["strength"], clip_skip=common["clip_skip"],
                          inpainting_mask_weight=common["weight"], batch_size=case["batch"], width=width,
                          height=height, **settings)
    with torch.inference_mode():
        samples, images = reference_inpaint(pipe, kdiff, image, mask, "a (red:1.3) door", "blurry, [lowres]",
                                            batch=case["batch"], sampler=case["sampler"], width=width,
                                            height=height, **common, **settings)
    assert torch.equal(result.samples, samples), (result.samples - samples).abs().max()
    for ours, ref in zip(result.images, images, strict=True):
        assert ours.tobytes() == ref.tobytes()
    if case["batch"] > 1:
        assert result.images[0].tobytes() != result.images[1].tobytes()  # each image has its own seed
