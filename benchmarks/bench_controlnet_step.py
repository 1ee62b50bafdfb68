"""Benchmark: one UNet + ControlNet step (CFG batch 2): the ControlNet's 13 residuals, then the UNet with them.

    python benchmarks/bench_controlnet_step.py [--device cuda|cpu] [--quick] [--json PATH] [--md PATH]
    (the same as `python benchmarks/run.py --only controlnet ...`)

Providers, all with the same random weights (inpaintlab.tiny.reinit_) and inputs:
    torch      ControlNet + UNetModel with kernels="torch"
    triton     the same networks with kernels="triton" (our GroupNorm(+SiLU) and flash attention in both)
    diffusers  diffusers.ControlNetModel (converted by diffusers' convert_controlnet_checkpoint) feeding
               UNet2DConditionModel's down/mid_block_additional_residual

Shapes as bench_unet_step: CUDA fp16 SD1.5 at 512x512 (and 768x768 without --quick); CPU fp32 the tiny config with a
matching tiny ControlNet (a smoke run of the code path). FLOP from torch.utils.flop_counter on the meta device.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_unet_step import (TRITON_CPU_NOTE, build_weights_model, cases, count_flop, diffusers_unet,  # noqa: E402
                             ldm_original_config, model_settings, row, share_weights, single_call_providers,
                             time_providers, unet_config)

CONTROLNET_PREFIX = "control_model."


def diffusers_controlnet(ours):
    """diffusers.ControlNetModel holding `ours`' weights through diffusers' own convert_controlnet_checkpoint.

    diffusers 0.42.1's create_controlnet_diffusers_config_from_ldm omits an argument when it calls the UNet config
    function, so the ControlNet config is taken from the UNet config the same way it would do.
    """
    import torch
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint, create_unet_diffusers_config_from_ldm

    checkpoint = {CONTROLNET_PREFIX + k: v for k, v in ours.state_dict().items()}
    unet = create_unet_diffusers_config_from_ldm(ldm_original_config(unet_cfg=ours.config.unet), checkpoint)
    keys = ("in_channels", "down_block_types", "block_out_channels", "layers_per_block", "cross_attention_dim",
            "attention_head_dim", "use_linear_projection", "class_embed_type", "addition_embed_type",
            "addition_time_embed_dim", "projection_class_embeddings_input_dim", "transformer_layers_per_block")
    dconfig = {k: unet[k] for k in keys if k in unet}
    dconfig.update(conditioning_channels=ours.config.hint_channels,
                   conditioning_embedding_out_channels=ours.config.hint_widths)
    converted = convert_controlnet_checkpoint(checkpoint, dconfig)
    with torch.device("meta"):
        theirs = ControlNetModel(**dconfig)
    theirs.load_state_dict(converted, strict=True, assign=True)
    return theirs.eval().requires_grad_(False)


def step_flop(cfg, cn_cfg, x, hint, t, context) -> float:
    """FLOP of one ControlNet + UNet call, counted on the meta device."""
    import torch

    from inpaintlab.controlnet import ControlNet
    from inpaintlab.unet import UNetModel

    with torch.device("meta"):
        unet, cn = UNetModel(cfg), ControlNet(cn_cfg)
        mx, mh, mt, mc = (torch.empty(v.shape) for v in (x, hint, t, context))
    return count_flop(lambda: unet(mx, mt, mc, control=cn(mx, mh, mt, mc)))


def step_providers(unet, cn, x, hint, t, context) -> dict:
    """Builders of the three UNet + ControlNet calls on the same inputs (run by time_providers, torch first)."""
    from inpaintlab.controlnet import ControlNet
    from inpaintlab.unet import UNetModel

    def step(u, c):
        return lambda: u(x, t, context, control=c(x, hint, t, context))

    def build_triton():
        return step(share_weights(UNetModel, unet.config, unet, "triton"),
                    share_weights(ControlNet, cn.config, cn, "triton"))

    def build_diffusers():
        d_unet, d_cn = diffusers_unet(unet), diffusers_controlnet(cn)
        hint_b = hint.expand(x.shape[0], -1, -1, -1)

        def call():
            down, mid = d_cn(x, t, encoder_hidden_states=context, controlnet_cond=hint_b, return_dict=False)
            return d_unet(x, t, encoder_hidden_states=context, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid, return_dict=False)[0]
        return call

    return {"torch": lambda: step(unet, cn), "triton": build_triton, "diffusers": build_diffusers}


def run(device: str = "cuda", quick: bool = False, *, seed: int = 0, cpu_reps: int | None = None) -> list[dict]:
    """Rows for the UNet+ControlNet section (one per case x provider), run.py's row schema."""
    import torch

    from inpaintlab.controlnet import ControlNet, ControlNetConfig
    from inpaintlab.unet import UNetModel

    dtype, cpu_reps, peak, skip = model_settings("bench_controlnet_step", device, quick, cpu_reps)
    notes = {"triton": TRITON_CPU_NOTE} if device == "cpu" else {}
    rows: list[dict] = []
    for case in [c for c in cases(device, quick) if c.config_name in ("sd15", "tiny")]:  # SD1 ControlNets only
        cfg = unet_config(case.config_name)
        cn_cfg = ControlNetConfig(unet=cfg)
        shape = f"{case.batch}x{cfg.in_channels}x{case.latent}x{case.latent}"
        base = dict(op="unet_controlnet_step", shape=shape, dtype=str(dtype).removeprefix("torch."),
                    config=case.config_name, image=f"{8 * case.latent}x{8 * case.latent}",
                    context=f"{case.batch}x{case.tokens}x{cfg.context_dim}")
        try:
            if device == "cuda":
                torch.cuda.empty_cache()
            unet = build_weights_model(UNetModel, cfg, device, dtype, seed)
            cn = build_weights_model(ControlNet, cn_cfg, device, dtype, seed + 7)
            g = torch.Generator(device=device).manual_seed(seed + 1)
            x = torch.randn(case.batch, cfg.in_channels, case.latent, case.latent, generator=g, device=device).to(dtype)
            context = torch.randn(case.batch, case.tokens, cfg.context_dim, generator=g, device=device).to(dtype)
            hint = torch.rand(1, 3, 8 * case.latent, 8 * case.latent, generator=g, device=device).to(dtype)
            t = torch.full((case.batch,), 981.0, device=device)
            base.update(flop=step_flop(cfg, cn_cfg, x, hint, t, context), flop_source="torch.utils.flop_counter")
        except Exception as exc:
            rows.append(row(provider="torch", **base, status="error", error=common.error_text(exc)))
            continue
        rows += time_providers(step_providers(unet, cn, x, hint, t, context), base, device=device, flop=base["flop"],
                               peak_tflops=peak, cpu_reps=cpu_reps, notes=notes, skip=skip,
                               single_call=single_call_providers(device))
    return rows


if __name__ == "__main__":
    import run as suite

    sys.exit(suite.main(["--only", "controlnet", *sys.argv[1:]]))
