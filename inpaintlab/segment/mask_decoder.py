"""SAM's mask decoder and HQ-SAM's (one extra high-quality token fed by early ViT features)."""
from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d
from .transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Tokens [iou, mask×4, prompts…] through the two-way transformer; the image tokens are upscaled ×4 and each
    mask token's hypernetwork gives a 256×256 logit map. multimask -> masks 1..3, else mask 0."""

    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3, *, kernels: str = "torch"):
        super().__init__()
        d = transformer_dim
        self.transformer = TwoWayTransformer(2, d, 8, 2048, kernels=kernels)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(d, 256, self.num_mask_tokens, 3)

    def _tokens(self, sparse: torch.Tensor, extra: list[torch.Tensor]) -> torch.Tensor:
        out = torch.cat([self.iou_token.weight, self.mask_tokens.weight, *extra], dim=0)
        return torch.cat([out.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse], dim=1)

    def _run(self, image_embeddings, image_pe, sparse, dense, extra):
        tokens = self._tokens(sparse, extra)
        # One image embedding is shared by every prompt of the batch: expand (no copy) where the reference repeats.
        src = image_embeddings.expand(tokens.shape[0], -1, -1, -1) + dense
        pos = image_pe.expand(tokens.shape[0], -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        return hs, up

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool,
                interm_embeddings: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hs, up = self._run(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, [])
        masks = self._hyper(hs, up, self.output_hypernetworks_mlps, 1)
        iou = self.iou_prediction_head(hs[:, 0])
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]

    @staticmethod
    def _hyper(hs, up, mlps, first):
        hyper = torch.stack([mlp(hs[:, first + i]) for i, mlp in enumerate(mlps)], dim=1)
        b, c, h, w = up.shape
        return (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)


class MaskDecoderHQ(MaskDecoder):
    """HQ-SAM: an `hf_token` after the mask tokens; its mask uses `embedding_maskfeature(up) + hq_features`, where
    hq_features = embedding_encoder(image embedding) + compress_vit_feat(first global block's output).
    multimask: the SAM mask with the best of IoUs 1..3 plus the HQ mask (logits summed), IoU = that best IoU;
    single: SAM mask 0 plus the HQ mask. `hq_token_only` returns the HQ mask alone."""

    def __init__(self, transformer_dim: int = 256, vit_dim: int = 1024, *, kernels: str = "torch"):
        super().__init__(transformer_dim, kernels=kernels)
        d = transformer_dim
        self.hf_token = nn.Embedding(1, d)
        self.hf_mlp = MLP(d, d, d // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, d, 2, stride=2), LayerNorm2d(d), nn.GELU(),
            nn.ConvTranspose2d(d, d // 8, 2, stride=2))
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, 2, stride=2), LayerNorm2d(d // 4), nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, 2, stride=2))
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(d // 8, d // 4, 3, 1, 1), LayerNorm2d(d // 4), nn.GELU(),
            nn.Conv2d(d // 4, d // 8, 3, 1, 1))
        self.hq_token_only = False

    def hq_features(self, image_embeddings: torch.Tensor, interm: list[torch.Tensor]) -> torch.Tensor:
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(interm[0].permute(0, 3, 1, 2))

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                multimask_output, interm_embeddings=None, hq_features=None):
        if hq_features is None:
            hq_features = self.hq_features(image_embeddings, interm_embeddings)
        hs, up = self._run(image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
                           [self.hf_token.weight])
        masks = self._hyper(hs, up, self.output_hypernetworks_mlps, 1)
        up_hq = self.embedding_maskfeature(up) + hq_features
        masks_hq = self._hyper(hs, up_hq, [self.hf_mlp], 1 + self.num_mask_tokens)
        iou = self.iou_prediction_head(hs[:, 0])
        if multimask_output:
            iou, best = iou[:, 1:].max(dim=1)
            iou = iou[:, None]
            sam = masks[:, 1:][torch.arange(masks.shape[0], device=masks.device), best][:, None]
        else:
            iou, sam = iou[:, :1], masks[:, :1]
        return (masks_hq if self.hq_token_only else sam + masks_hq), iou
