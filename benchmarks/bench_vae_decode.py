"""Benchmark: SD1.5 VAE decode, 512x512 batch 1, with our torch ops, our Triton kernels, and diffusers.

    python benchmarks/bench_vae_decode.py [--device cuda|cpu] [--quick] [--json PATH] [--md PATH]
    (the same as `python benchmarks/run.py --only vae ...`)

Providers, all with the same random weights (inpaintlab.tiny.reinit_) and the same unscaled latents z [1,4,64,64]:
    torch      AutoencoderKL(VAEConfig(), kernels="torch").decode(z)
    triton     kernels="triton": our GroupNorm(+SiLU) kernel for all 30 decoder GroupNorms; the mid-block attention
               (one 512-wide head) stays on SDPA, as the model always does
    diffusers  diffusers' AutoencoderKL loaded from our state dict through diffusers' own convert_ldm_vae_checkpoint,
               `.decode(z)` (post_quant_conv + decoder, the same unscaled-latent contract)

CUDA runs fp16; CPU runs fp32 with inpaintlab.tiny's VAE config at latents 8x8 (--quick) or 16x16, a smoke run of
the code path (the Triton provider only under TRITON_INTERPRET=1). TFLOP/s use performance.md §2's 2.51 TFLOP per
512x512 decode (convolutions and the attention matmuls); other shapes are counted with torch.utils.flop_counter.
Timing as in bench_unet_step.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_unet_step as unet_bench  # noqa: E402  (shared model-benchmark helpers)
import common  # noqa: E402

SPEC_FLOP = {("sd15", 64, 1): 2.51e12}  # performance.md §2: VAE decoder, 512x512, batch 1
TRITON_NOTE_CUDA = "Triton GroupNorm(+SiLU); the 512-wide single-head attention stays on SDPA"


def vae_config(name: str):
    from inpaintlab.tiny import TINY_VAE
    from inpaintlab.vae import VAEConfig

    return VAEConfig() if name == "sd15" else TINY_VAE


def diffusers_vae(ours):
    """diffusers' AutoencoderKL holding `ours`' weights, converted by diffusers' own ldm converter."""
    from diffusers import AutoencoderKL as DiffusersAutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint, create_vae_diffusers_config_from_ldm

    return unet_bench.diffusers_twin(ours, DiffusersAutoencoderKL, unet_bench.LDM_VAE_PREFIX,
                                     create_vae_diffusers_config_from_ldm, convert_ldm_vae_checkpoint,
                                     unet_bench.ldm_original_config(vae_cfg=ours.config))


def vae_flop(config_name: str, latent: int, batch: int, use_spec: bool = True) -> tuple[float, str]:
    """FLOP of one decode and where the figure comes from (performance.md's table when it has the case)."""
    if use_spec and (config_name, latent, batch) in SPEC_FLOP:
        return SPEC_FLOP[(config_name, latent, batch)], "performance.md §2"
    import torch

    from inpaintlab.vae import AutoencoderKL

    cfg = vae_config(config_name)
    with torch.device("meta"):
        model = AutoencoderKL(cfg)
        z = torch.empty(batch, cfg.embed_dim, latent, latent)
    return unet_bench.count_flop(lambda: model.decode(z)), "torch.utils.flop_counter"


def run(device: str = "cuda", quick: bool = False, *, seed: int = 0, cpu_reps: int | None = None) -> list[dict]:
    """Rows for the VAE-decode section (one per provider), run.py's row schema."""
    import torch

    from inpaintlab.vae import AutoencoderKL

    dtype, cpu_reps, peak, skip = unet_bench.model_settings("bench_vae_decode", device, quick, cpu_reps)
    config_name, latent, batch = ("sd15", 64, 1) if device == "cuda" else ("tiny", 8 if quick else 16, 1)
    cfg = vae_config(config_name)
    notes = {"triton": TRITON_NOTE_CUDA if device == "cuda" else unet_bench.TRITON_CPU_NOTE}
    side = latent * cfg.downscale
    base = dict(op="vae_decode", shape=f"{batch}x{cfg.embed_dim}x{latent}x{latent}",
                dtype=str(dtype).removeprefix("torch."), config=config_name, image=f"{side}x{side}")
    try:
        flop, flop_source = vae_flop(config_name, latent, batch)
        base.update(flop=flop, flop_source=flop_source)
        ours = unet_bench.build_weights_model(AutoencoderKL, cfg, device, dtype, seed)
        g = torch.Generator(device=device).manual_seed(seed + 1)
        z = torch.randn(batch, cfg.embed_dim, latent, latent, generator=g, device=device).to(dtype)
    except Exception as exc:
        return [unet_bench.row(provider="torch", **base, status="error", error=common.error_text(exc))]

    def build_triton():
        model = unet_bench.share_weights(AutoencoderKL, cfg, ours, "triton")
        return lambda: model.decode(z)

    def build_diffusers():
        theirs = diffusers_vae(ours)
        return lambda: theirs.decode(z, return_dict=False)[0]

    providers = {"torch": lambda: (lambda: ours.decode(z)), "triton": build_triton, "diffusers": build_diffusers}
    return unet_bench.time_providers(providers, base, device=device, flop=flop, peak_tflops=peak, cpu_reps=cpu_reps,
                                     notes=notes, skip=skip, single_call=unet_bench.single_call_providers(device))


if __name__ == "__main__":
    import run as suite

    sys.exit(suite.main(["--only", "vae", *sys.argv[1:]]))
