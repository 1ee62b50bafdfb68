"""Reference SAM models with random weights for the parity tests (segment-anything 1.0, segment-anything-hq 0.3,
MobileSAM's TinyViT from controlnet-aux), and the re-randomisation that keeps zero/one initialisations from hiding
indexing bugs. Tiny encoder configurations keep the suite fast; the decoders are the released size."""
import importlib.util
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

from shims import use_torchvision_shim

use_torchvision_shim()
sa = pytest.importorskip("segment_anything")
sa_hq = pytest.importorskip("segment_anything_hq")

TINY_VIT = dict(img_size=256, embed_dim=64, depth=3, num_heads=2, window_size=5, global_attn_indexes=(1,))
# TinyViT-SAM hard-codes a 64×64 output (1024 input) and a stride-1 last merge (320 channels): keep those, shrink the rest.
TINY_TINYVIT = dict(embed_dims=[16, 32, 24, 320], depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4],
                    window_sizes=[7, 7, 14, 7])


def rerandomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and buffer perturbed: norm weights 1 + 0.1·N, everything else + 0.05·N (zero-initialised
    biases, rel-pos tables, pos_embed, attention biases included); BatchNorm statistics randomised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            noise = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * noise)
            elif name.endswith("weight") and t.ndim == 1:
                t.copy_(1 + 0.1 * noise)
            elif name.endswith("positional_encoding_gaussian_matrix"):
                continue
            else:
                t.add_(0.05 * noise)
    return model.eval()


def _heads(hq: bool, vit_dim: int):
    mod = sa_hq.modeling if hq else sa.modeling
    transformer = mod.TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8)
    if hq:
        return mod.MaskDecoderHQ(num_multimask_outputs=3, transformer=transformer, transformer_dim=256,
                                 iou_head_depth=3, iou_head_hidden_dim=256, vit_dim=vit_dim)
    return mod.MaskDecoder(num_multimask_outputs=3, transformer=transformer, transformer_dim=256, iou_head_depth=3,
                           iou_head_hidden_dim=256)


def reference_vit_sam(hq: bool = False, seed: int = 0, **config):
    """segment_anything's (or HQ's) Sam with a ViT encoder (TINY_VIT unless overridden), re-randomised."""
    torch.manual_seed(seed)
    cfg = {**TINY_VIT, **config}
    mod = sa_hq.modeling if hq else sa.modeling
    enc = mod.ImageEncoderViT(depth=cfg["depth"], embed_dim=cfg["embed_dim"], img_size=cfg["img_size"], mlp_ratio=4,
                              norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=cfg["num_heads"],
                              patch_size=16, qkv_bias=True, use_rel_pos=True,
                              global_attn_indexes=cfg["global_attn_indexes"], window_size=cfg["window_size"],
                              out_chans=256)
    grid = cfg["img_size"] // 16
    prompt = mod.PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                               input_image_size=(cfg["img_size"],) * 2, mask_in_chans=16)
    sam = mod.Sam(image_encoder=enc, prompt_encoder=prompt, mask_decoder=_heads(hq, cfg["embed_dim"]),
                  pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    return rerandomise(sam, seed)


def tiny_vit_module(hq: bool = False):
    """MobileSAM's tiny_vit_sam.py, executed from its file (controlnet-aux's copy; HQ's for the light HQ model)."""
    if hq:
        return sa_hq.modeling.tiny_vit_sam
    name = "mobile_sam_tiny_vit_sam"
    if name not in sys.modules:
        ca = importlib.util.find_spec("controlnet_aux")
        if ca is None:
            pytest.skip("controlnet-aux (MobileSAM reference) is not installed")
        path = Path(ca.origin).parent / "segment_anything" / "modeling" / "tiny_vit_sam.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def reference_mobile_sam(hq: bool = False, seed: int = 0, **config):
    torch.manual_seed(seed)
    cfg = {**TINY_TINYVIT, **config}
    enc = tiny_vit_module(hq).TinyViT(img_size=1024, in_chans=3, num_classes=1000, mlp_ratio=4.0, drop_rate=0.0,
                                      drop_path_rate=0.0, use_checkpoint=False, mbconv_expand_ratio=4.0,
                                      local_conv_size=3, layer_lr_decay=0.8, **cfg)
    mod = sa_hq.modeling if hq else sa.modeling
    prompt = mod.PromptEncoder(embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                               mask_in_chans=16)
    sam = mod.Sam(image_encoder=enc, prompt_encoder=prompt, mask_decoder=_heads(hq, cfg["embed_dims"][2]),
                  pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    rerandomise(sam, seed)
    for m in sam.modules():  # the eval-mode bias cache was taken at construction, before re-randomising
        if hasattr(m, "attention_biases") and hasattr(m, "ab"):
            del m.ab
            m.train(False)
    return sam


def state_dict(model: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}
