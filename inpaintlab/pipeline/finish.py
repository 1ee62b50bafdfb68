"""Stages 8-11: decode, composite, postprocess and infotext."""
from __future__ import annotations

from typing import Any

from ..infotext import build_infotext
from ..result import Result
from .conditioning import strip_comments, ti_hashes
from .job import Job
from .load import VERSION_TAG


def params(job: Job) -> dict[str, Any]:
    """The fixed infotext keys (A1111's order is the infotext module's)."""
    s, config = job.settings, job.pipe.config
    cfg_scale = s["cfg_scale"]
    out = {
        "Steps": s["steps"], "Sampler": job.sampler, "Schedule type": job.schedule_label,
        "CFG scale": int(cfg_scale) if float(cfg_scale).is_integer() else cfg_scale,
        "Size": f"{job.width}x{job.height}", "Model hash": config.model_hash, "Model": config.model_name,
        "VAE hash": config.vae_hash, "VAE": config.vae_name,
        "Clip skip": s["clip_skip"] if s["clip_skip"] > 1 else None, **job.noise_cfg.params(job.sampler, s["eta"]),
    }
    if job.kind != "txt2img" or s.get("enable_hr"):
        out["Denoising strength"] = s["denoising_strength"]
    if config.is_inpainting:
        out["Conditional mask weight"] = s.get("inpainting_mask_weight", 1.0)
    return out


def finish(job: Job) -> Result:
    """Decode (with the `decode` hooks before the uint8 truncation), composite, postprocess, then the infotexts."""
    hooks = job.hooks
    postprocess = None
    if hooks.having("decode"):
        def postprocess(x):
            return hooks.chain("decode", job, x)
    prep = job.prep
    result = Result((job.loaded or job.pipe).decode_latents(job.samples, postprocess), [], job.noise_cfg.seeds,
                    job.noise_cfg.subseeds, init_latent=job.init_latent, start_latent=job.start_latent,
                    samples=job.samples, latent_mask=job.latent_mask, sigmas=job.sigmas,
                    repaint_mask=None if prep is None else prep.repaint_mask,
                    overlay_mask=None if prep is None else prep.overlay_mask)
    result = hooks.chain("composite", job, result)
    result = hooks.chain("postprocess", job, result)
    result.infotexts = infotexts(job)
    return result


def infotexts(job: Job) -> list[str]:
    """One infotext per image: fixed keys, the keys set while the job ran, the techniques' `infotext` keys, the
    sampler's keys, then "TI hashes" (A1111's order)."""
    s = job.settings
    extra = dict(job.extra)
    job.hooks.call("infotext", job, extra)
    extra.update(job.sampler_params)
    prompt, negative_prompt = strip_comments(s["prompt"]), strip_comments(s["negative_prompt"])
    if job.pipe.embeddings:
        extra["TI hashes"] = ti_hashes(job, prompt, negative_prompt)
    fixed = params(job)
    noise_cfg = job.noise_cfg
    subseeds = noise_cfg.subseeds or [None] * len(noise_cfg.seeds)
    return [build_infotext(prompt, negative_prompt, {**fixed, "Seed": seed, "Variation seed": sub}, extra,
                           version=VERSION_TAG)
            for seed, sub in zip(noise_cfg.seeds, subseeds)]
