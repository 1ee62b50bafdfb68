"""SAM 2's mask decoder (sam2==1.1.0 `modeling/sam/mask_decoder.py`, as SAM2Base builds it for the released sizes)."""
from __future__ import annotations

import torch
from torch import nn

from ..common import MLP
from .heads import LayerNorm2d, TwoWayTransformer

# dynamic_multimask_via_stability's constants (used only when a single mask is asked for and the option is on)
STABILITY_DELTA = 0.05
STABILITY_THRESH = 0.98


class MaskDecoder(nn.Module):
    """Tokens [obj_score, iou, mask x4, prompts...] -> two-way transformer -> upscaled embedding with skips -> masks.

    Returns low-res mask logits [B, K, 256, 256] and sigmoid IoU scores [B, K] (K = 3 with multimask_output,
    else 1). The object score head exists for the video path; the image predictor ignores it.
    """

    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3, kernels: str = "auto"):
        super().__init__()
        d = transformer_dim
        self.transformer = TwoWayTransformer(2, d, 8, 2048, kernels=kernels)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.obj_score_token = nn.Embedding(1, d)
        # Indices 2 and 4 are the GELUs: kept as modules so the convolutions load as output_upscaling.{0,1,3}.
        self.output_upscaling = nn.Sequential(nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
                                              LayerNorm2d(d // 4), nn.GELU(),
                                              nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2), nn.GELU())
        self.conv_s0 = nn.Conv2d(d, d // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(d, d // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(d, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(d, d, 1, 3)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                      dense: torch.Tensor, high_res_features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """All 4 mask outputs: logits [B, 4, 256, 256] and IoU [B, 4]. The image is shared by the whole batch."""
        tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)
        b = tokens.shape[0]
        src = image_embeddings.expand(b, -1, -1, -1) + dense
        pos = image_pe.expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token_out = hs[:, 1, :]
        mask_tokens_out = hs[:, 2:2 + self.num_mask_tokens, :]
        src = src.transpose(1, 2).reshape(b, c, h, w)
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        up = act1(ln1(dc1(src) + feat_s1))
        up = act2(dc2(up) + feat_s0)
        hyper = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                            dim=1)
        _, c, h, w = up.shape
        masks = (hyper @ up.reshape(b, c, h * w)).reshape(b, -1, h, w)
        return masks, self.iou_prediction_head(iou_token_out)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, high_res_features: list[torch.Tensor], multimask_output: bool,
                dynamic_multimask: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        masks, iou = self.predict_masks(image_embeddings, image_pe, sparse, dense, high_res_features)
        if multimask_output:
            return masks[:, 1:], iou[:, 1:]
        if dynamic_multimask:
            return _dynamic_multimask(masks, iou)
        return masks[:, :1], iou[:, :1]


def _stability(logits: torch.Tensor) -> torch.Tensor:
    flat = logits.flatten(-2)
    inter = (flat > STABILITY_DELTA).sum(-1).float()
    union = (flat > -STABILITY_DELTA).sum(-1).float()
    return torch.where(union > 0, inter / union, 1.0)


def _dynamic_multimask(masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2's `dynamic_multimask_via_stability`: an unstable single mask (stability < 0.98 at +-0.05) is replaced
    by the multimask output with the highest predicted IoU."""
    best = torch.argmax(iou[:, 1:], dim=-1)
    rows = torch.arange(iou.shape[0], device=iou.device)
    best_masks = masks[:, 1:][rows, best].unsqueeze(1)
    best_iou = iou[:, 1:][rows, best].unsqueeze(1)
    stable = _stability(masks[:, :1]) >= STABILITY_THRESH  # [B, 1]
    return (torch.where(stable[..., None, None], masks[:, :1], best_masks),
            torch.where(stable, iou[:, :1], best_iou))
