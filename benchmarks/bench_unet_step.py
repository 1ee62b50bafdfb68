"""Benchmark: one SD1.5 or SDXL UNet call (a CFG step, batch 2) with our torch ops, our Triton kernels, and diffusers.

    python benchmarks/bench_unet_step.py [--device cuda|cpu] [--quick] [--json PATH] [--md PATH]
    (the same as `python benchmarks/run.py --only unet ...`)

Providers, all with the same random weights (inpaintlab.tiny.reinit_: ~1/sqrt(fan_in) weights, norm affines away
from (1, 0)) and the same inputs:
    torch      UNetModel(UNetConfig(), kernels="torch"): eager torch, SDPA for attention
    triton     UNetModel(UNetConfig(), kernels="triton"): our GroupNorm(+SiLU) and flash-attention kernels, sharing
               the torch model's tensors
    diffusers  diffusers' UNet2DConditionModel loaded from our state dict through diffusers' own
               convert_ldm_unet_checkpoint (its default attention processor, SDPA)

Shapes: CUDA fp16, SD1.5 latents 2x4x64x64 (512x512) and 2x4x96x96 (768x768), context 2x77x768, and SDXL
2x4x128x128 (1024x1024), context 2x77x2048 plus the ADM vector 2x2816 (pooled text and A1111's size conditioning
for 1024x1024, given to diffusers as added_cond_kwargs text_embeds/time_ids); one timestep for both halves of the
CFG batch; --quick keeps SD1.5 512x512 and SDXL 1024x1024. CPU fp32 uses inpaintlab.tiny's UNet configs (SD1 and
SDXL structure; a smoke run of the code path, not a timing) at latents 16x16 (--quick) or 32x32; the Triton provider
runs on CPU only under TRITON_INTERPRET=1 (the interpreter: correctness of the path, not speed).

Timing: CUDA from triton.testing.do_bench (CUDA events, L2 flushed between calls, median and 20th/80th percentile);
CPU from a perf_counter loop after a warm-up call. TFLOP/s use performance.md §2's FLOP model (convolutions,
linears and attention matmuls; norms and elementwise excluded): 1.607 TFLOP per CFG step at 512x512, 4.30 at
768x768; other shapes are counted with torch.utils.flop_counter on the meta device, which reproduces both figures.
Every row also carries the largest difference of the provider's output from the torch provider's.

Two technique rows beside the plain step, same model and inputs, eager torch: "torch+tome0.5" is the call with A1111's
token merging at ratio 0.5 (inpaintlab.guidance.tome; it acts only where attention runs at full latent resolution,
so not in SDXL), "torch+pag" the plain CFG call followed by PAG's extra pass (the cond half of the batch with the
first middle-block self-attention perturbed), i.e. the step's cost with PAG on.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
# performance.md §2: (config, latent side, batch) -> FLOP of one call
SPEC_FLOP = {("sd15", 64, 2): 1.607e12, ("sd15", 96, 2): 4.30e12, ("sd15", 128, 2): 9.35e12}
CUDA_IMAGES = (512, 768)
SDXL_IMAGE = 1024
CUDA_REPS_MS = (200, 2000)  # do_bench warm-up and measuring time per provider (ms): ~100+ calls at 512x512
TRITON_CPU_SKIP = ("skipped: the Triton kernels need CUDA on this device; set TRITON_INTERPRET=1 to run them on the "
                   "CPU under Triton's interpreter")
TRITON_CPU_NOTE = "Triton interpreter on CPU, one call: shows the kernels run inside the model, not their speed"


@dataclasses.dataclass(frozen=True)
class Case:
    config_name: str  # "sd15", "sdxl", "tiny" or "tiny-sdxl"
    latent: int  # latent side; the image side is 8x
    batch: int = 2
    tokens: int = 77


def row(op: str, provider: str, shape: str, dtype: str, **extra) -> dict:
    """A result row with every key of run.py's schema present (None where not defined)."""
    base = dict(op=op, provider=provider, shape=shape, dtype=dtype, ms_p50=None, ms_p20=None, ms_p80=None,
                tflops=None, gb_s=None, pct_peak=None, status="ok", error=None, note=None)
    base.update(extra)
    return base


def build_weights_model(model_cls: type, config, device: str, dtype, seed: int, kernels: str = "torch"):
    """model_cls(config, kernels) on `device` with inpaintlab.tiny.reinit_ weights (drawn in fp32, then cast)."""
    import torch

    from inpaintlab.tiny import reinit_

    with torch.device("meta"):
        model = model_cls(config, kernels=kernels)
    model = model.to_empty(device=device)
    reinit_(model, seed)
    return model.to(dtype).eval().requires_grad_(False)


def share_weights(model_cls: type, config, source, kernels: str):
    """A second model of the same class and config whose parameters are `source`'s tensors (no copy)."""
    import torch

    with torch.device("meta"):
        model = model_cls(config, kernels=kernels)
    model.load_state_dict(source.state_dict(), strict=True, assign=True)
    return model.eval().requires_grad_(False)


def ldm_original_config(unet_cfg=None, vae_cfg=None) -> dict:
    """The parts of v1-inference.yaml (as a dict) that diffusers' single-file converters read."""
    from inpaintlab.unet import UNetConfig
    from inpaintlab.vae import VAEConfig

    unet_cfg, vae_cfg = unet_cfg or UNetConfig(), vae_cfg or VAEConfig()
    unet = dict(in_channels=unet_cfg.in_channels, out_channels=unet_cfg.out_channels,
                model_channels=unet_cfg.model_channels, attention_resolutions=list(unet_cfg.attention_resolutions),
                num_res_blocks=unet_cfg.num_res_blocks, channel_mult=list(unet_cfg.channel_mult),
                num_heads=unet_cfg.num_heads, use_spatial_transformer=True,
                transformer_depth=unet_cfg.transformer_depth, context_dim=unet_cfg.context_dim, use_checkpoint=True,
                legacy=False)
    if unet_cfg.num_head_channels > 0:  # SD2 / SDXL (v2-inference.yaml, sd_xl_base.yaml)
        del unet["num_heads"]
        unet.update(num_head_channels=unet_cfg.num_head_channels,
                    use_linear_in_transformer=unet_cfg.use_linear_in_transformer,
                    transformer_depth=(unet_cfg.transformer_depth if isinstance(unet_cfg.transformer_depth, int)
                                       else list(unet_cfg.transformer_depth)))
    if unet_cfg.adm_in_channels is not None:
        unet.update(num_classes="sequential", adm_in_channels=unet_cfg.adm_in_channels)
    ddconfig = dict(double_z=True, z_channels=vae_cfg.z_channels, resolution=256, in_channels=vae_cfg.in_channels,
                    out_ch=vae_cfg.out_ch, ch=vae_cfg.ch, ch_mult=list(vae_cfg.ch_mult),
                    num_res_blocks=vae_cfg.num_res_blocks, attn_resolutions=[], dropout=0.0)
    return {"model": {"params": {
        "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "image_size": 64, "channels": 4,
        "conditioning_key": "hybrid" if unet_cfg.in_channels == 9 else "crossattn",
        "scale_factor": vae_cfg.scale_factor,
        "unet_config": {"params": unet},
        "first_stage_config": {"params": {"embed_dim": vae_cfg.embed_dim, "ddconfig": ddconfig}}}}}


def diffusers_twin(ours, diffusers_cls: type, prefix: str, make_config: Callable, convert: Callable,
                   original_config: dict):
    """A diffusers model holding `ours`' weights: our state dict under its ldm checkpoint `prefix`, converted by
    diffusers' own single-file functions (`make_config`, `convert`), loaded with assign=True (no copy)."""
    import torch

    checkpoint = {prefix + k: v for k, v in ours.state_dict().items()}
    dconfig = make_config(original_config, checkpoint)
    converted = convert(checkpoint, dconfig)
    with torch.device("meta"):
        theirs = diffusers_cls(**dconfig)
    theirs.load_state_dict(converted, strict=True, assign=True)
    return theirs.eval().requires_grad_(False)


def diffusers_unet(ours):
    """diffusers' UNet2DConditionModel holding `ours`' weights, converted by diffusers' own ldm converter."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, create_unet_diffusers_config_from_ldm

    return diffusers_twin(ours, UNet2DConditionModel, LDM_UNET_PREFIX, create_unet_diffusers_config_from_ldm,
                          convert_ldm_unet_checkpoint, ldm_original_config(unet_cfg=ours.config))


def count_flop(fn: Callable[[], object]) -> float:
    """FLOP of fn() as torch.utils.flop_counter counts them (matmuls, convolutions, attention), meta tensors OK."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return float(counter.get_total_flops())


def unet_config(name: str):
    from inpaintlab.tiny import TINY_SDXL_UNET, TINY_UNET
    from inpaintlab.unet import SDXL_UNET, UNetConfig

    return {"sd15": UNetConfig(), "sdxl": SDXL_UNET, "tiny": TINY_UNET, "tiny-sdxl": TINY_SDXL_UNET}[name]


def adm_inputs(cfg, batch: int, image: int, g, device: str, dtype):
    """SDXL only (else None): (y, pooled, time_ids) for a square `image`: random pooled text, A1111's sizes."""
    import torch

    from inpaintlab.unet import sdxl_adm_vector

    if cfg.adm_in_channels is None:
        return None
    pooled = torch.randn(batch, cfg.adm_in_channels - 1536, generator=g, device=device)
    sizes = ((image, image), (0, 0), (image, image))
    y = sdxl_adm_vector(pooled, *sizes).to(device)
    time_ids = torch.tensor([[*sizes[0], *sizes[1], *sizes[2]]] * batch, dtype=torch.float32, device=device)
    return y.to(dtype), pooled.to(dtype), time_ids.to(dtype)


def unet_flop(case: Case, use_spec: bool = True) -> tuple[float, str]:
    """FLOP of one UNet call and where the figure comes from (performance.md's table when it has the case)."""
    key = (case.config_name, case.latent, case.batch)
    if use_spec and key in SPEC_FLOP and case.tokens == 77:
        return SPEC_FLOP[key], "performance.md §2"
    import torch

    from inpaintlab.unet import UNetModel

    cfg = unet_config(case.config_name)
    with torch.device("meta"):
        model = UNetModel(cfg)
        x = torch.empty(case.batch, cfg.in_channels, case.latent, case.latent)
        t = torch.empty(case.batch)
        context = torch.empty(case.batch, case.tokens, cfg.context_dim)
        y = None if cfg.adm_in_channels is None else torch.empty(case.batch, cfg.adm_in_channels)
    return count_flop(lambda: model(x, t, context, y)), "torch.utils.flop_counter"


def time_providers(providers: dict[str, Callable[[], Callable[[], object]]], base: dict, *, device: str, flop: float,
                   peak_tflops: float | None, cpu_reps: int, notes: dict[str, str] | None = None,
                   skip: dict[str, str] | None = None, single_call: frozenset[str] = frozenset()) -> list[dict]:
    """Time each provider; a failing provider gets an error row and the others still run.

    providers: name -> builder; the builder returns the zero-argument call to time. Every provider's first call is
    compared with the "torch" provider's (which must come first) and serves as its warm-up. CUDA: one
    triton.testing.do_bench per provider (CUDA events; L2 flushed between calls). CPU: `cpu_reps` rounds in which
    every provider is called once, so load from other processes on a shared machine hits all providers alike.
    base: the row fields shared by all providers. skip: name -> why it is not run. single_call: providers timed by
    their first call alone (the Triton interpreter, whose single call of a small model takes tens of seconds).
    """
    import torch

    notes, skip = notes or {}, skip or {}
    rows = {name: row(provider=name, **base, note=notes.get(name)) for name in providers}
    calls, times, reference = {}, {}, None

    def fail(name: str, exc: BaseException) -> None:
        rows[name].update(status="error", error=common.error_text(exc))
        calls.pop(name, None)
        if device == "cuda":
            torch.cuda.empty_cache()

    with torch.inference_mode():
        for name, build in providers.items():
            if name in skip:
                rows[name].update(status="skipped", note=skip[name])
                continue
            try:  # one provider failing (missing package, kernel error, OOM) must not end the suite
                call = build()
                start = time.perf_counter()
                out = call()
                if device == "cuda":
                    torch.cuda.synchronize()
                times[name] = [(time.perf_counter() - start) * 1e3]
                out = out.float()
                rows[name]["finite"] = bool(torch.isfinite(out).all())
                if reference is None and name == "torch":
                    reference = out
                if reference is not None:
                    scale = reference.abs().max().item()
                    rows[name]["max_abs_diff"] = (out - reference).abs().max().item()
                    rows[name]["max_rel_diff"] = rows[name]["max_abs_diff"] / scale if scale else None
                del out
                calls[name] = call
            except Exception as exc:
                fail(name, exc)
        timed = [name for name in calls if name not in single_call]
        if device == "cuda":
            import triton.testing

            for name in timed:
                try:
                    times[name] = triton.testing.do_bench(calls[name], warmup=CUDA_REPS_MS[0], rep=CUDA_REPS_MS[1],
                                                          return_mode="all")
                    rows[name]["timing"] = "triton.testing.do_bench"
                except Exception as exc:
                    fail(name, exc)
        else:
            for name in timed:
                times[name], rows[name]["timing"] = [], f"perf_counter, {cpu_reps} interleaved rounds"
            for _ in range(cpu_reps):
                for name in [n for n in timed if n in calls]:
                    try:
                        start = time.perf_counter()
                        calls[name]()
                        times[name].append((time.perf_counter() - start) * 1e3)
                    except Exception as exc:
                        fail(name, exc)
        for name in calls:
            if name in single_call:
                rows[name]["timing"] = "one call"
            p50, p20, p80 = common.quantiles_ms(times[name])
            tflops = flop / (p50 * 1e-3) / 1e12
            rows[name].update(ms_p50=p50, ms_p20=p20, ms_p80=p80, tflops=tflops, timed_calls=len(times[name]),
                              pct_peak=None if peak_tflops is None else 100 * tflops / peak_tflops)
    return list(rows.values())


def model_providers(ours, cfg, x, t, context, adm=None) -> dict[str, Callable[[], Callable[[], object]]]:
    """Builders of the three UNet calls on the same inputs (run by time_providers, torch first). adm: SDXL's
    (y, pooled, time_ids) from `adm_inputs`."""
    from inpaintlab.unet import UNetModel

    y = None if adm is None else adm[0]

    def build_triton():
        model = share_weights(UNetModel, cfg, ours, "triton")
        return lambda: model(x, t, context, y)

    def build_diffusers():
        theirs = diffusers_unet(ours)
        extra = {}
        if adm is not None and theirs.config.addition_embed_type == "text_time":
            extra["added_cond_kwargs"] = {"text_embeds": adm[1], "time_ids": adm[2]}
        elif adm is not None:  # narrow test contexts: diffusers takes the ADM input as a projected class embedding
            extra["class_labels"] = y
        return lambda: theirs(x, t, encoder_hidden_states=context, return_dict=False, **extra)[0]

    return {"torch": lambda: (lambda: ours(x, t, context, y)), "triton": build_triton, "diffusers": build_diffusers}


TECHNIQUE_NOTES = {"torch+tome0.5": "token merging, ratio 0.5 (A1111's tomesd arguments)",
                   "torch+pag": "plain call + PAG's extra pass on the cond half (perturbed middle attention)"}


def technique_providers(ours, x, t, context, adm=None) -> dict[str, Callable[[], Callable[[], object]]]:
    """The plain call with token merging at 0.5, and the plain call followed by PAG's extra pass."""
    from inpaintlab.guidance.pag import PerturbedAttention
    from inpaintlab.guidance.tome import TokenMerging

    y = None if adm is None else adm[0]
    half = x.shape[0] // 2

    def tome():
        with TokenMerging(ours, 0.5):
            return ours(x, t, context, y)

    def pag():
        out = ours(x, t, context, y)
        with PerturbedAttention(ours):
            ours(x[:half], t[:half], context[:half], None if y is None else y[:half])
        return out

    return {"torch+tome0.5": lambda: tome, "torch+pag": lambda: pag}


def single_call_providers(device: str) -> frozenset[str]:
    return frozenset({"triton"}) if device == "cpu" else frozenset()


def model_settings(script: str, device: str, quick: bool,
                   cpu_reps: int | None) -> tuple[object, int, float | None, dict[str, str]]:
    """(dtype, CPU rounds, dense fp16 peak or None, providers to skip) of a model section: fp16 on CUDA, fp32 on the
    CPU, where the Triton provider is skipped unless TRITON_INTERPRET=1."""
    import torch

    from inpaintlab.kernels import interpreting

    common.check_device(script, device)
    dtype = torch.float16 if device == "cuda" else torch.float32
    peak = common.peak_tflops(common.device_name(device), dtype) if device == "cuda" else None
    skip = {} if device == "cuda" or interpreting() else {"triton": TRITON_CPU_SKIP}
    return dtype, cpu_reps or (3 if quick else 5), peak, skip


def cases(device: str, quick: bool) -> list[Case]:
    if device == "cuda":
        return ([Case("sd15", image // 8) for image in (CUDA_IMAGES[:1] if quick else CUDA_IMAGES)]
                + [Case("sdxl", SDXL_IMAGE // 8)])
    return [Case("tiny", 16 if quick else 32), Case("tiny-sdxl", 16 if quick else 32)]


def run(device: str = "cuda", quick: bool = False, *, seed: int = 0, cpu_reps: int | None = None) -> list[dict]:
    """Rows for the UNet-step section (one per case x provider), run.py's row schema."""
    import torch

    from inpaintlab.unet import UNetModel

    dtype, cpu_reps, peak, skip = model_settings("bench_unet_step", device, quick, cpu_reps)
    notes = {"triton": TRITON_CPU_NOTE} if device == "cpu" else {}
    rows: list[dict] = []
    by_config: dict[str, object] = {}
    for case in cases(device, quick):
        cfg = unet_config(case.config_name)
        shape = f"{case.batch}x{cfg.in_channels}x{case.latent}x{case.latent}"
        if cfg.adm_in_channels is not None:  # SDXL rows stay apart from SD1 rows of the same latent shape
            shape += f"+y{case.batch}x{cfg.adm_in_channels}"
        base = dict(op="unet_step", shape=shape, dtype=str(dtype).removeprefix("torch."), config=case.config_name,
                    image=f"{8 * case.latent}x{8 * case.latent}",
                    context=f"{case.batch}x{case.tokens}x{cfg.context_dim}")
        try:
            flop, flop_source = unet_flop(case)
            base.update(flop=flop, flop_source=flop_source)
            if case.config_name not in by_config:  # one set of models per config, reused across image sizes
                by_config.clear()
                if device == "cuda":
                    torch.cuda.empty_cache()
                by_config[case.config_name] = build_weights_model(UNetModel, cfg, device, dtype, seed)
            ours = by_config[case.config_name]
            g = torch.Generator(device=device).manual_seed(seed + 1)
            x = torch.randn(case.batch, cfg.in_channels, case.latent, case.latent, generator=g, device=device).to(dtype)
            context = torch.randn(case.batch, case.tokens, cfg.context_dim, generator=g, device=device).to(dtype)
            t = torch.full((case.batch,), 981.0, device=device)  # one timestep for both halves of the CFG batch
            adm = adm_inputs(cfg, case.batch, 8 * case.latent, g, device, dtype)
            if adm is not None:
                base["adm"] = f"{case.batch}x{cfg.adm_in_channels}"
        except Exception as exc:
            rows.append(row(provider="torch", **base, status="error", error=common.error_text(exc)))
            continue

        providers = {**model_providers(ours, cfg, x, t, context, adm), **technique_providers(ours, x, t, context, adm)}
        rows += time_providers(providers, base, device=device, flop=flop, peak_tflops=peak, cpu_reps=cpu_reps,
                               notes={**notes, **TECHNIQUE_NOTES}, skip=skip,
                               single_call=single_call_providers(device))
    return rows


if __name__ == "__main__":
    import run as suite

    sys.exit(suite.main(["--only", "unet", *sys.argv[1:]]))
