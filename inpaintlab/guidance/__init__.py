"""Guidance and UNet techniques that A1111 PNGs carry, each as an isolated, exact function or hook.

freeu (sd-webui-freeu), dynamic_thresholding (sd-dynamic-thresholding), pag (PAG and SEG, sd-webui-incantations),
cfg_rescale (CFG_Rescale_webui, neutral-prompt), cfg_rules (A1111's NGMS, Skip Early CFG, pad conds), tome (token
merging with tomesd's semantics and A1111's arguments).
"""
from .cfg_rescale import cfg_rescale, cfg_rescale_mean
from .cfg_rules import combine_cond_only, pad_conds, uncond_skip
from .dynamic_thresholding import DynamicThresholding, interpret_scale
from .freeu import FreeUSettings, FreeUStage, filter_skip, freeu_concat, schedule_ratio
from .pag import PerturbedAttention, SmoothedEnergy, pag_combine, seg_blur
from .tome import TokenMerging, bipartite_merge, token_merging_ratio

__all__ = ["DynamicThresholding", "FreeUSettings", "FreeUStage", "PerturbedAttention", "SmoothedEnergy",
           "TokenMerging", "bipartite_merge", "cfg_rescale", "cfg_rescale_mean", "combine_cond_only", "filter_skip",
           "freeu_concat", "interpret_scale", "pad_conds", "pag_combine", "schedule_ratio", "seg_blur",
           "token_merging_ratio", "uncond_skip"]
