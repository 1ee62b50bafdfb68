"""Techniques: everything a generation does beyond the fixed stage order plugs in here.

The pipeline (`inpaintlab.pipeline.run`) runs A1111 v1.10's stages in one fixed order and names no technique. At
named moments of that order it calls the hooks of the job's techniques. A technique is a `Technique` subclass that
overrides only the hooks it needs; the pipeline calls a hook only on the techniques that override it.

Writing one::

    from inpaintlab.pipeline import Technique

    class KeepMore(Technique):
        name = "keep more"              # shown in errors and sweep keys
        slot = "blend"                  # replaces the binary inpaint blend (one technique per slot)

        def __init__(self, keep=0.5):
            self.keep = keep

        def wrap_denoiser(self, job, model):     # A1111's per-step blend, with part of the original kept
            def blended(x, sigma, **kw):
                m = job.latent_mask * (1 - self.keep)
                return model(x, sigma, **kw) * m + job.init_latent * (1 - m)
            return blended if job.latent_mask is not None else model

        def infotext(self, job, extra):
            extra["Keep more"] = self.keep

    pipe.inpaint(image, mask, "a cat", techniques=[KeepMore(0.3)])

`examples/techniques/` holds a complete one with its test. A technique reads the job's settings
(`job.settings["cfg_scale"]`) and the stage results on `job` (see `Job`); it writes infotext keys into `job.extra`
(A1111 orders the infotext by when a key was set, so write them in the hook where A1111 sets them) or in its
`infotext` hook (after every stage, before the sampler's own keys). Per-job state lives on the technique object:
the pipeline builds the built-in techniques afresh for every job; an outside technique passed to a call is used
for that call only, and must not keep state from one call to the next.

Hooks, in stage order (`HOOKS`, the table the README's architecture section shows):

=====================  ===========================  =====================================================  ===========
hook                   stage                        when, and what it returns                              combination
=====================  ===========================  =====================================================  ===========
setup(job)             settings                     before any work (the sampler is resolved): check       all, order
                                                    settings, set job flags (A1111 `process`; e.g.
                                                    `job.mask_round = False`)
prepare(job)           images and masks             after `job.prep` (the processed image and masks)       all, order
networks(job)          networks                     activate extra networks before any text is encoded     all, order
latents(job)           encode, masked content       after `job.init_latent`, `job.latent_mask`, masked      all, order
                                                    content; before the image conditioning
conditioning(job)      conditioning                 after `job.cond` / `job.uncond` (may replace them)     all, order
noise(job, noise)      noise                        the initial noise, after masked content took its own   chained
  -> noise                                          draw (noise multiplier, extra noise, ControlNet LaMa)
wrap_unet(job, unet)   sample                       the UNet call `unet(x, t, context, y=None, **kw)`;      first =
  -> unet                                           ControlNet, FreeU, token merging, attention patches    innermost
wrap_cfg(job, cfg)     sample                       the CFG layer (`CFGDenoiser` / scheduled): wrap or     first =
  -> denoiser                                       replace it (NGMS, Skip Early CFG, PAG)                 innermost
wrap_denoiser(job, m)  sample                       outside CFG, what the sampler calls: the per-step      first =
  -> denoiser                                       inpaint blends                                         innermost
combine_cfg(job, p)    sample                       compute the guided x0 from `p` (`CFGParts`) or return  first non-
  -> tensor | None                                  None (dynamic thresholding)                            None wins
after_cfg(job, p, d)   sample                       adjust the guided x0 (CFG rescale)                     chained
  -> d
on_step(job, d)        sample                       each sampler callback (`job.step`: this step's index   all, order,
                                                    from 0), before the caller's `callback`                then user's
sampler_noise(job, n)  sample                       each later draw of the image RNG (the ancestral / SDE  chained
  -> noise                                          samplers' noise; not the Brownian-tree draws)
after_sample(job, s)   after sampling               the final latents (A1111 `post_sample`; the binary     chained
  -> samples                                        blend's final latent blend)
decode(job, x) -> x    decode                       each decoded image [1,3,H,W] in [0,1] before the uint8 chained
                                                    truncation (A1111 `postprocess_batch`)
composite(job, r)      composite                    the `Result`'s uint8 images: overlay / paste back      chained
  -> result                                         (A1111 `postprocess_maskoverlay`)
postprocess(job, r)    postprocess                  the finished `Result` (A1111 `postprocess_image`,      chained
  -> result                                         `postprocess`): colour correction, detailer passes
infotext(job, extra)   infotext                     add keys to `extra` (after every stage's keys, before  all, order
                                                    the sampler's)
=====================  ===========================  =====================================================  ===========

Order between techniques: by `order` (smaller first; ties keep the list order), built-ins first, then the
techniques passed by the caller in their order. "all, order": each called in that order. "chained": each gets the
previous one's result. "first = innermost": the first technique wraps the bare object, the next wraps that, so the
last one is outermost (called first). Built-in orders: networks 10, ControlNet 20, blends 50; the default for an
outside technique is 100 (outermost wrappers, last in chains). The sample-stage hooks run under
`torch.inference_mode()`.

Slots: a technique with `slot = "blend"` takes the place of the binary inpaint blend (at most one technique per slot;
two blend techniques in one job are an error). The built-in blends (binary, soft inpainting, Differential
Diffusion) all use that slot; the binary one is the default when no other technique claims it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from ..samplers.cfg import CFGParts

if TYPE_CHECKING:  # pragma: no cover
    from .job import Job
    from ..result import Result

# (hook, how results combine) in the order the pipeline first calls them (the wrappers are built before sampling;
# combine_cfg and after_cfg run at every denoiser call, on_step after it, sampler_noise at each later noise draw).
HOOKS: tuple[tuple[str, str], ...] = (
    ("setup", "all"), ("prepare", "all"), ("networks", "all"), ("latents", "all"), ("conditioning", "all"),
    ("noise", "chain"), ("wrap_unet", "wrap"), ("wrap_cfg", "wrap"), ("wrap_denoiser", "wrap"), ("combine_cfg", "first"),
    ("after_cfg", "chain"), ("on_step", "all"), ("sampler_noise", "chain"), ("after_sample", "chain"),
    ("decode", "chain"), ("composite", "chain"), ("postprocess", "chain"), ("infotext", "all"),
)
HOOK_NAMES = tuple(name for name, _ in HOOKS)
__all__ = ["CFGParts", "HOOKS", "HOOK_NAMES", "Hooks", "Technique", "TechniqueError", "order_techniques", "overrides"]
OUTSIDE_ORDER = 100


class TechniqueError(ValueError):
    """A technique that cannot run with the job's settings, or two techniques that exclude each other."""


class Technique:
    """Base class: override the hooks you need (see the module docstring for the table). Every hook gets the `Job`."""

    name: str = "technique"
    order: int = OUTSIDE_ORDER
    slot: str | None = None

    def key(self) -> str:
        """What distinguishes this technique's results from another's (sweeps key their cells with it)."""
        fields = vars(self)
        return f"{type(self).__module__}.{type(self).__qualname__}({', '.join(f'{k}={fields[k]!r}' for k in sorted(fields))})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # The hooks, in stage order; defaults do nothing (the pipeline skips hooks a technique does not override).
    def setup(self, job: Job) -> None: ...
    def prepare(self, job: Job) -> None: ...
    def networks(self, job: Job) -> None: ...
    def latents(self, job: Job) -> None: ...
    def noise(self, job: Job, noise: torch.Tensor) -> torch.Tensor: return noise
    def sampler_noise(self, job: Job, noise: torch.Tensor) -> torch.Tensor: return noise
    def conditioning(self, job: Job) -> None: ...
    def wrap_unet(self, job: Job, unet: Callable) -> Callable: return unet
    def wrap_cfg(self, job: Job, cfg: Callable) -> Callable: return cfg
    def combine_cfg(self, job: Job, parts: CFGParts) -> torch.Tensor | None: return None
    def after_cfg(self, job: Job, parts: CFGParts, denoised: torch.Tensor) -> torch.Tensor: return denoised
    def wrap_denoiser(self, job: Job, model: Callable) -> Callable: return model
    def on_step(self, job: Job, d: dict) -> None: ...
    def after_sample(self, job: Job, samples: torch.Tensor) -> torch.Tensor: return samples
    def decode(self, job: Job, x: torch.Tensor) -> torch.Tensor: return x
    def composite(self, job: Job, result: Result) -> Result: return result
    def postprocess(self, job: Job, result: Result) -> Result: return result
    def infotext(self, job: Job, extra: dict[str, Any]) -> None: ...


def overrides(technique: Technique, hook: str) -> bool:
    """True when `technique` implements `hook` (the pipeline calls nothing else)."""
    return getattr(type(technique), hook) is not getattr(Technique, hook)


def order_techniques(builtin: list[Technique], outside: list[Technique]) -> list[Technique]:
    """Built-ins then outside techniques, stably sorted by `order`; checks the slots (one technique per slot)."""
    for t in outside:
        if not isinstance(t, Technique):
            raise TypeError(f"techniques must be inpaintlab.pipeline.Technique objects, got {type(t).__name__}")
    techniques = sorted([*builtin, *outside], key=lambda t: t.order)
    taken: dict[str, Technique] = {}
    for t in techniques:
        if t.slot is not None:
            if t.slot in taken:
                raise TechniqueError(f"{taken[t.slot].name} and {t.name} both take the {t.slot} slot; choose one")
            taken[t.slot] = t
    return techniques


class Hooks:
    """Calls one hook on the job's techniques with its combination rule (see HOOKS)."""

    def __init__(self, techniques: list[Technique]) -> None:
        self.techniques = techniques

    def having(self, hook: str) -> list[Technique]:
        return [t for t in self.techniques if overrides(t, hook)]

    def call(self, hook: str, job: Job, *args: Any) -> None:
        for t in self.having(hook):
            getattr(t, hook)(job, *args)

    def chain(self, hook: str, job: Job, value: Any, *args: Any) -> Any:
        """Each technique gets the previous one's result (`after_cfg` takes its parts first)."""
        for t in self.having(hook):
            value = getattr(t, hook)(job, *args, value)
        return value

    def first(self, hook: str, job: Job, *args: Any) -> Any:
        for t in self.having(hook):
            value = getattr(t, hook)(job, *args)
            if value is not None:
                return value
        return None
