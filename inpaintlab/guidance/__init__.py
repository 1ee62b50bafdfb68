"""Guidance and UNet techniques that A1111 PNGs carry, each as an isolated, exact function or hook.

freeu (sd-webui-freeu), dynamic_thresholding (sd-dynamic-thresholding), pag (PAG and SEG, sd-webui-incantations),
cfg_rescale (CFG_Rescale_webui, neutral-prompt), cfg_rules (A1111's NGMS, Skip Early CFG, pad conds), tome (token
merging with tomesd's semantics and A1111's arguments). Their settings rows are in `rows` (no torch: the settings
registry loads it with itself); everything else is imported on first use.
"""
from .._lazy import lazy_package

lazy_package(__name__, {
    "cfg_rescale": ".cfg_rescale", "cfg_rescale_mean": ".cfg_rescale",
    "combine_cond_only": ".cfg_rules", "pad_conds": ".cfg_rules", "uncond_skip": ".cfg_rules",
    "DynamicThresholding": ".dynamic_thresholding", "interpret_scale": ".dynamic_thresholding",
    "FreeUSettings": ".freeu_settings", "FreeUStage": ".freeu_settings", "filter_skip": ".freeu", "freeu_concat": ".freeu",
    "schedule_ratio": ".freeu",
    "PerturbedAttention": ".pag", "SmoothedEnergy": ".pag", "pag_combine": ".pag", "seg_blur": ".pag",
    "TokenMerging": ".tome", "bipartite_merge": ".tome", "token_merging_ratio": ".tome",
})

__all__ = ["DynamicThresholding", "FreeUSettings", "FreeUStage", "PerturbedAttention", "SmoothedEnergy",
           "TokenMerging", "bipartite_merge", "cfg_rescale", "cfg_rescale_mean", "combine_cond_only", "filter_skip",
           "freeu_concat", "interpret_scale", "pad_conds", "pag_combine", "schedule_ratio", "seg_blur",
           "token_merging_ratio", "uncond_skip"]
