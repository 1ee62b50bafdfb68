"""Stage 1, images and masks: the processing size and A1111's mask intake, blur, crop and init image."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from PIL import Image

from ..prepare import prepare_inpaint, processing_size
from .job import Job


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image → [1,3,H,W] float32 in [0,1] (A1111: value / 255; the 2x − 1 happens in the VAE's dtype)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_image(x: torch.Tensor, postprocess: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Image.Image:
    """[3,H,W] decoder output in [-1,1] → uint8 image, truncating like A1111 (no rounding). `postprocess` acts on the
    [1,3,H,W] image in [0,1] before the truncation (where A1111 scripts' postprocess_batch runs)."""
    x = torch.clamp((x.float() + 1.0) / 2.0, min=0.0, max=1.0)
    if postprocess is not None:
        x = postprocess(x[None])[0]
    array = (255.0 * np.moveaxis(x.cpu().numpy(), 0, 2)).astype(np.uint8)
    return Image.fromarray(array)


def size_of(job: Job) -> tuple[int, int]:
    """The processing (width, height): the settings', else the image's rounded down to a multiple of 8 (txt2img:
    512 x 512 by default)."""
    s = job.settings
    if job.image is None:
        width, height = s["width"] or 512, s["height"] or 512
        processing_size((width, height), width, height)
        return width, height
    return processing_size(job.image.size, s["width"], s["height"])


def prepare_images(job: Job) -> None:
    """A1111's mask intake, invert, blur, only-masked crop and init image (`inpaintlab.prepare`); txt2img: none."""
    if job.image is None:
        return
    s = job.settings
    job.prep = prepare_inpaint(job.image, job.mask, job.width, job.height, mask_blur=s["mask_blur"],
                               mask_mode=s["mask_mode"], masked_content=s["masked_content"],
                               inpaint_area=s["inpaint_area"], padding=s["padding"], resize_mode=s["resize_mode"],
                               fill_space=s["fill_space"], mask_round=job.mask_round, mask_blur_y=job.mask_blur_y,
                               latent_mask=job.latent_mask_image)
    job.image_mask = job.prep.image_mask
    job.extra.update(job.prep.extra)
