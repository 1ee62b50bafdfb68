"""The job: one generation's settings (validated by `inpaintlab.settings`) and what each stage made of them.

`Pipeline.txt2img`, `img2img` and `inpaint` build a `Job` from their keywords, then `run(job)` fills its fields stage
by stage. Techniques read it (settings and stage results) and may change the fields of the stage whose hook they
implement; the fields list says which stage sets each.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

import torch
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from ..noise import NoiseSettings
    from ..prepare import Prepared
    from ..samplers import ImageRNG, SamplerConfig
    from .pipeline import Pipeline
    from .technique import Hooks, Technique

KINDS = ("txt2img", "img2img", "inpaint")


@dataclasses.dataclass(eq=False)
class Job:
    """One generation. `settings`: every setting of the call by its keyword name (defaults filled in);
    `kind`: "txt2img" or "inpaint" (img2img is inpaint without a mask)."""

    pipe: Pipeline
    kind: str
    settings: dict[str, Any]
    image: Image.Image | None = None
    mask: Image.Image | None = None
    callback: Callable[[dict], Any] | None = None
    progress: bool = False
    # set before `setup`
    techniques: list[Technique] = dataclasses.field(default_factory=list)
    outside: list[Technique] = dataclasses.field(default_factory=list)  # the caller's own, in their order
    hooks: Hooks | None = None
    sampler: str = ""                        # A1111's sampler name and schedule label after alias resolution
    schedule_label: str = ""
    sampler_config: SamplerConfig | None = None
    sampler_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    sampler_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # the sampler's infotext keys
    width: int = 0
    height: int = 0
    noise_cfg: NoiseSettings | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # infotext keys in the order they were set
    mask_round: bool = True                  # round the latent and conditioning masks (A1111's default)
    mask_blur_y: int | None = None           # a vertical mask blur other than `mask_blur` (A1111's mask_blur_y)
    latent_mask_image: Image.Image | None = None  # A1111's p.latent_mask: the latent mask and fill, set by scripts
    # images and masks
    prep: Prepared | None = None
    image_mask: Image.Image | None = None
    # encode and masked content
    source: torch.Tensor | None = None       # the init image in [-1, 1] (VAE dtype); None for txt2img
    posterior_rng: torch.Generator | None = None
    init_latent: torch.Tensor | None = None
    latent_mask: torch.Tensor | None = None  # [B,4,h,w], 1 = repaint (None without a mask)
    shape: tuple[int, ...] = ()
    # noise
    rng: ImageRNG | None = None
    noise: torch.Tensor | None = None
    # conditioning
    cond: Any = None
    uncond: Any = None
    image_cond: torch.Tensor | None = None
    # sample
    sigmas: torch.Tensor | None = None       # the schedule run (timesteps for DDIM, PLMS, UniPC)
    start_latent: torch.Tensor | None = None
    extra_noise: float = 0.0                 # A1111's img2img_extra_noise for this run (0: none)
    t_enc: int | None = None                 # img2img steps override (hires fix: A1111's fixed-steps branch)
    sampling_steps: int = 0                  # callbacks per run (the step counter's range)
    step: int = 0                            # the current sampling step, from 0
    samples: torch.Tensor | None = None
    loaded: Pipeline | None = None           # the model in use when it is not `pipe` (a refiner after its switch):
                                             # its VAE decodes, as A1111 decodes with whatever model is loaded
    state: dict[str, Any] = dataclasses.field(default_factory=dict)  # scratch space for techniques, by name

    def __getitem__(self, name: str) -> Any:
        return self.settings[name]

    @property
    def device(self) -> torch.device:
        return self.pipe.device

    @property
    def seeds(self) -> list[int]:
        return self.noise_cfg.seeds

    @property
    def batch_size(self) -> int:
        return self.settings["batch_size"]

    @property
    def has_mask(self) -> bool:
        """True when this job repaints part of the image (a latent mask exists)."""
        return self.latent_mask is not None
