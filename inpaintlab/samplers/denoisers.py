"""Denoiser wrappers that stack around the UNet: ``InpaintBlend(CFGDenoiser(EpsDenoiser(unet, ...)))``.

Each layer has the denoiser signature (x, sigma [B]) -> denoised x0 estimate, so samplers never learn about CFG or
masks. Semantics of k-diffusion ``CompVisDenoiser`` / ``CompVisVDenoiser`` and A1111 v1.10 ``CFGDenoiser``
(CFG on denoised outputs, then the inpaint blend).

Text conditioning ("cond") is a ``[B, L, C]`` tensor (SD1/SD2 cross-attention context) or, for SDXL, a dict
``{"crossattn": [B, L, C], "vector": [B, V]}`` as A1111/sgm pass it: the ADM vector (pooled text and size embedding)
travels with its prompt through CFG batching, so the cond and uncond rows each get their own.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import torch

from ..masking.blend import blend_latents
from ..masking.soft import SoftInpaintingSettings, differential_masks, latent_blend, modified_nmask
from .schedules import DiscreteSchedule, LCMSchedule

UNet = Callable[..., torch.Tensor]
Denoiser = Callable[..., torch.Tensor]
Cond = Union[torch.Tensor, Dict[str, torch.Tensor]]


def _check_cond(c: Cond, name: str) -> None:
    if isinstance(c, dict):
        ctx, vec = c.get("crossattn"), c.get("vector")
        if set(c) != {"crossattn", "vector"} or not isinstance(ctx, torch.Tensor) or ctx.ndim != 3 \
                or not isinstance(vec, torch.Tensor) or vec.ndim != 2 or vec.shape[0] != ctx.shape[0]:
            raise ValueError(f"{name} dict must be {{'crossattn': [B, L, C], 'vector': [B, V]}}, got "
                             f"{ {k: tuple(getattr(v, 'shape', ())) for k, v in c.items()} }")
    elif not isinstance(c, torch.Tensor) or c.ndim != 3:
        raise ValueError(f"{name} must be a [B, L, C] tensor, got {getattr(c, 'shape', type(c))}")


def _context(c: Cond) -> torch.Tensor:
    return c["crossattn"] if isinstance(c, dict) else c


def _map_cond(c: Cond, fn: Callable[[torch.Tensor], torch.Tensor]) -> Cond:
    return {k: fn(v) for k, v in c.items()} if isinstance(c, dict) else fn(c)


def cat_conds(conds: Sequence[Cond]) -> Cond:
    """Concatenate conds (tensors or SDXL dicts) along the batch."""
    if isinstance(conds[0], dict):
        return {k: torch.cat([c[k] for c in conds]) for k in conds[0]}
    return torch.cat(list(conds))


def _expand_cond(c: Cond, batch: int) -> Cond:
    return _map_cond(c, lambda v: v.expand(batch, *v.shape[1:]))


def _repeat_cond(c: Cond, n: int) -> Cond:
    return _map_cond(c, lambda v: v.repeat(n, *([1] * (v.ndim - 1))))


def _cond_rows(c: Cond, a: int, b: int) -> Cond:
    return _map_cond(c, lambda v: v[a:b])


def _sigma_batch(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, device=x.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(x.shape[0])
    if sigma.ndim != 1 or sigma.shape[0] != x.shape[0]:
        raise ValueError(f"sigma must have one value per batch item ({x.shape[0]}), got shape {tuple(sigma.shape)}")
    return sigma


def _append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


class EpsDenoiser:
    """Eps-prediction UNet as a denoiser: ``D(x, sigma) = x - sigma * eps(x * c_in, t(sigma), cond)``.

    k-diffusion ``CompVisDenoiser`` semantics: ``c_in = 1 / sqrt(sigma * sigma + 1)`` multiplied in; ``t`` from
    :meth:`DiscreteSchedule.sigma_to_t`, fractional unless ``quantize`` (A1111 ``enable_quantization``); the
    UNet is called as ``unet(x_in, t, context=cond)`` with ``t`` a float32 ``[B]`` tensor.

    ``schedule`` is a :class:`DiscreteSchedule` or an ``alphas_cumprod`` tensor. ``image_cond`` ``[B, 5, h, w]``
    (latent mask, then masked-image latent) is for 9-channel inpainting UNets: it is concatenated after the
    scaling, unscaled, and repeated along the batch when the caller batches cond and uncond together.
    """

    def __init__(self, unet: UNet, schedule: Union[DiscreteSchedule, torch.Tensor],
                 image_cond: Optional[torch.Tensor] = None, quantize: bool = False) -> None:
        if isinstance(schedule, torch.Tensor):
            schedule = DiscreteSchedule.from_alphas_cumprod(schedule)
        if not isinstance(schedule, DiscreteSchedule):
            raise TypeError(f"schedule must be a DiscreteSchedule or an alphas_cumprod tensor, got {type(schedule)}")
        if image_cond is not None and image_cond.ndim != 4:
            raise ValueError(f"image_cond must be [B, C, h, w], got shape {tuple(image_cond.shape)}")
        self.unet = unet
        self.schedule = schedule
        self.image_cond = image_cond
        self.quantize = quantize

    def __repr__(self) -> str:
        ic = None if self.image_cond is None else tuple(self.image_cond.shape)
        return f"EpsDenoiser(schedule={self.schedule!r}, image_cond={ic}, quantize={self.quantize})"

    def get_scalings(self, sigma: torch.Tensor):
        """``(c_out, c_in)`` per batch item."""
        c_out = -sigma
        c_in = 1 / torch.sqrt(sigma * sigma + 1)
        return c_out, c_in

    def _image_cond_for(self, x: torch.Tensor) -> torch.Tensor:
        ic = self.image_cond
        if ic.shape[-2:] != x.shape[-2:] or x.shape[0] % ic.shape[0]:
            raise ValueError(f"image_cond {tuple(ic.shape)} does not fit latents {tuple(x.shape)}: need the same "
                             f"h, w and a batch that divides the latent batch")
        # [cond batch..., uncond batch...] each in image order, as A1111 builds image_cond_in
        return ic.to(device=x.device, dtype=x.dtype).repeat(x.shape[0] // ic.shape[0], 1, 1, 1)

    def _image_cond_rows(self, x: torch.Tensor, image_index: torch.Tensor) -> torch.Tensor:
        ic = self.image_cond
        index = torch.as_tensor(image_index, dtype=torch.long, device=ic.device)
        if index.shape != (x.shape[0],) or ic.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"image_index {tuple(index.shape)} / image_cond {tuple(ic.shape)} do not fit latents "
                             f"{tuple(x.shape)}: need one index per row and the same h, w")
        rows = ic.expand(int(index.max()) + 1, -1, -1, -1) if ic.shape[0] == 1 else ic
        return rows[index].to(device=x.device, dtype=x.dtype)

    @property
    def accepts_cond_mark(self) -> bool:
        """True when the UNet wants to know the cond rows (a ``ControlledUNet``); CFG then passes ``cond_mark``."""
        return bool(getattr(self.unet, "accepts_cond_mark", False))

    def _unet(self, x: torch.Tensor, x_in: torch.Tensor, t: torch.Tensor, cond: Optional[Cond],
              image_index: Optional[torch.Tensor], cond_mark: Optional[torch.Tensor]) -> torch.Tensor:
        """The raw UNet output at timestep ``t`` for the (scaled) input ``x_in``, with the 9-channel image
        conditioning appended and an SDXL dict cond split into context and ADM vector."""
        if self.image_cond is not None:
            ic = self._image_cond_for(x) if image_index is None else self._image_cond_rows(x, image_index)
            x_in = torch.cat([x_in, ic], dim=1)
        extra = {} if cond_mark is None else {"cond_mark": cond_mark}
        if isinstance(cond, dict):
            return self.unet(x_in, t, context=cond["crossattn"], y=cond["vector"], **extra)
        return self.unet(x_in, t, context=cond, **extra)

    def _model_output(self, x: torch.Tensor, x_in: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond],
                      image_index: Optional[torch.Tensor], cond_mark: Optional[torch.Tensor]) -> torch.Tensor:
        t = self.schedule.sigma_to_t(sigma, quantize=self.quantize).to(torch.float32)
        return self._unet(x, x_in, t, cond, image_index, cond_mark)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``image_index`` (``[B]`` ints, optional) names the image each row of ``x`` belongs to, for batches that
        are not ``[cond batch..., uncond batch...]`` (several ``AND`` conds per image); it picks the rows of
        ``image_cond``. ``cond_mark`` (``[B]``, 1 = cond row, 0 = uncond row) is handed to the UNet. An SDXL dict
        cond calls ``unet(x_in, t, context=crossattn, y=vector)``."""
        sigma = _sigma_batch(sigma, x)
        c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        eps = self._model_output(x, x * c_in, sigma, cond, image_index, cond_mark)
        return x + eps * c_out


class VDenoiser(EpsDenoiser):
    """v-prediction UNet (SD 2.x 768-v) as a denoiser, k-diffusion ``CompVisVDenoiser`` semantics (sigma_data 1):

    ``c_skip = 1 / (sigma^2 + 1)``, ``c_out = -sigma / sqrt(sigma^2 + 1)``, ``c_in = 1 / sqrt(sigma^2 + 1)``,
    ``D(x, sigma) = v(x * c_in, t(sigma), cond) * c_out + x * c_skip``.

    Everything else (t(sigma), 9-channel ``image_cond``, SDXL dict conds) is as in :class:`EpsDenoiser`.
    """

    sigma_data = 1.0

    def __repr__(self) -> str:
        return "V" + super().__repr__()[3:]

    def get_scalings(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in)`` per batch item, in k-diffusion's expression order."""
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = -sigma * sd / (sigma ** 2 + sd ** 2) ** 0.5
        c_in = 1 / (sigma ** 2 + sd ** 2) ** 0.5
        return c_skip, c_out, c_in

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[Cond] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        c_skip, c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        v = self._model_output(x, x * c_in, sigma, cond, image_index, cond_mark)
        return v * c_out + x * c_skip


class CFGDenoiser:
    """Classifier-free guidance on denoised outputs, A1111 order: ``D_u + (D_c - D_u) * cfg_scale``.

    ``cond``/``uncond`` are text embeddings ``[B, L, C]`` (or ``[1, L, C]``, shared by the batch). When both have
    the same token length, one inner call on the batch ``[cond..., uncond...]``; otherwise (A1111 with
    ``pad_cond_uncond`` off) two calls, cond half first.

    With ``cond_weights`` (one float per ``AND`` sub-prompt, n of them) ``cond`` holds n embeddings per image:
    ``[n, L, C]`` shared by the batch, or ``[B * n, L, C]`` image-major (image 0's n, then image 1's ...), and
    ``D = D_u + sum_j (D_c,j - D_u) * (w_j * cfg_scale)``, added term by term in sub-prompt order as A1111 does.
    The inner batch is then ``[image 0 x n, image 1 x n, ..., uncond batch]``; when n > 1 the inner denoiser also
    gets ``image_index`` (the image of each row, see ``EpsDenoiser``). With different token lengths the conds run
    in chunks of 2B rows, then the uncond batch (A1111 with ``batch_cond_uncond``).
    """

    def __init__(self, inner: Denoiser, cond: Cond, uncond: Cond, cfg_scale: float,
                 cond_weights: Optional[Sequence[float]] = None) -> None:
        for name, c in (("cond", cond), ("uncond", uncond)):
            _check_cond(c, name)
        if isinstance(cond, dict) != isinstance(uncond, dict):
            raise ValueError("cond and uncond must both be tensors or both be SDXL dicts")
        if _context(cond).shape[2] != _context(uncond).shape[2]:
            raise ValueError(f"cond and uncond widths differ: {tuple(_context(cond).shape)} vs "
                             f"{tuple(_context(uncond).shape)}")
        if isinstance(cond, dict) and cond["vector"].shape[1] != uncond["vector"].shape[1]:
            raise ValueError("cond and uncond ADM vector widths differ")
        if cond_weights is not None:
            cond_weights = [float(w) for w in cond_weights]
            if not cond_weights:
                raise ValueError("cond_weights must name at least one sub-prompt weight")
            if _context(cond).shape[0] % len(cond_weights):
                raise ValueError(f"cond batch {_context(cond).shape[0]} is not a multiple of the {len(cond_weights)} "
                                 f"sub-prompt weights")
        self.inner = inner
        self.cond = cond
        self.uncond = uncond
        self.cfg_scale = float(cfg_scale)
        self.cond_weights = cond_weights
        # the unconditional output of the latest call (DDIM CFG++ steps along it)
        self.last_uncond: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        weights = "" if self.cond_weights is None else f", cond_weights={self.cond_weights}"
        return (f"CFGDenoiser(cond={tuple(_context(self.cond).shape)}, uncond={tuple(_context(self.uncond).shape)}, "
                f"cfg_scale={self.cfg_scale}{weights})")

    def _marks(self, cond_rows: int, uncond_rows: int, x: torch.Tensor) -> Callable[[int, int], dict]:
        """``cond_mark`` keyword for rows a..b of the CFG batch, for inner models that ask for it (ControlNet's
        "ControlNet is more important" mode acts on cond rows only); nothing otherwise."""
        if not getattr(self.inner, "accepts_cond_mark", False):
            return lambda a, b: {}
        marks = torch.cat([torch.ones(cond_rows), torch.zeros(uncond_rows)]).to(device=x.device, dtype=x.dtype)
        return lambda a, b: {"cond_mark": marks[a:b]}

    @staticmethod
    def _per_image(c: Cond, batch: int, name: str) -> Cond:
        rows = _context(c).shape[0]
        if rows == batch:
            return c
        if rows == 1:
            return _expand_cond(c, batch)
        raise ValueError(f"{name} batch {rows} does not match the latent batch {batch}")

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.cond_weights is not None:
            return self._composed(x, sigma)
        batch = x.shape[0]
        sigma = _sigma_batch(sigma, x)
        cond = self._per_image(self.cond, batch, "cond")
        uncond = self._per_image(self.uncond, batch, "uncond")
        x_in = torch.cat([x, x])
        sigma_in = torch.cat([sigma, sigma])
        mark = self._marks(batch, batch, x)
        if _context(cond).shape[1] == _context(uncond).shape[1]:
            x_out = self.inner(x_in, sigma_in, cond=cat_conds([cond, uncond]), **mark(0, 2 * batch))
        else:
            x_out = torch.cat([self.inner(x_in[:batch], sigma_in[:batch], cond=cond, **mark(0, batch)),
                               self.inner(x_in[batch:], sigma_in[batch:], cond=uncond, **mark(batch, 2 * batch))])
        denoised_cond, denoised_uncond = x_out[:batch], x_out[batch:]
        self.last_uncond = denoised_uncond
        denoised = denoised_uncond.clone()
        denoised += (denoised_cond - denoised_uncond) * (1.0 * self.cfg_scale)
        return denoised

    def _composed(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        batch, n = x.shape[0], len(self.cond_weights)
        sigma = _sigma_batch(sigma, x)
        rows_in = _context(self.cond).shape[0]
        if rows_in == n:
            conds = _repeat_cond(self.cond, batch)
        elif rows_in == batch * n:
            conds = self.cond
        else:
            raise ValueError(f"cond batch {rows_in} fits neither {n} shared sub-prompts nor {n} per "
                             f"image for {batch} images")
        uncond = self._per_image(self.uncond, batch, "uncond")
        images = torch.arange(batch, device=x.device)
        x_in = torch.cat([x.repeat_interleave(n, dim=0), x])
        sigma_in = torch.cat([sigma.repeat_interleave(n, dim=0), sigma])
        index = torch.cat([images.repeat_interleave(n), images])
        rows = batch * n

        mark = self._marks(rows, batch, x)

        def run(a: int, b: int, c: Cond) -> torch.Tensor:
            # Rows in the default [cond batch, uncond batch] layout need no index (keeps plain inner models usable).
            extra = {"image_index": index[a:b]} if n > 1 else {}
            return self.inner(x_in[a:b], sigma_in[a:b], cond=c, **extra, **mark(a, b))

        if _context(conds).shape[1] == _context(uncond).shape[1]:
            x_out = run(0, rows + batch, cat_conds([conds, uncond]))
        else:
            parts = [run(a, min(a + 2 * batch, rows), _cond_rows(conds, a, min(a + 2 * batch, rows)))
                     for a in range(0, rows, 2 * batch)]
            x_out = torch.cat(parts + [run(rows, rows + batch, uncond)])
        denoised_uncond = x_out[rows:]
        self.last_uncond = denoised_uncond
        denoised = denoised_uncond.clone()
        for i in range(batch):
            for j, weight in enumerate(self.cond_weights):
                denoised[i] += (x_out[i * n + j] - denoised_uncond[i]) * (weight * self.cfg_scale)
        return denoised


def stack_conds(conds: Sequence[Cond]) -> Cond:
    """Concatenate ``[1, L_j, C]`` embeddings along the batch; shorter ones are padded with copies of their last
    token vector (A1111's ``stack_conds``, for ``AND`` sub-prompts with different chunk counts). SDXL dicts pad
    their ``crossattn`` and concatenate their ``vector``."""
    if isinstance(conds[0], dict):
        return {"crossattn": stack_conds([c["crossattn"] for c in conds]),
                "vector": torch.cat([c["vector"] for c in conds])}
    length = max(c.shape[1] for c in conds)
    padded = [c if c.shape[1] == length else torch.cat([c, c[:, -1:].expand(-1, length - c.shape[1], -1)], dim=1)
              for c in conds]
    return torch.cat(padded)


def _scheduled(schedule: Sequence[Tuple[int, torch.Tensor]], call: int) -> torch.Tensor:
    # First entry with call <= end_at_step; past the last one A1111 falls back to the first entry.
    for end_at_step, value in schedule:
        if call <= end_at_step:
            return value
    return schedule[0][1]


class ScheduledCFGDenoiser:
    """CFG whose text embeddings change during sampling: A1111 prompt editing, alternation and ``AND``.

    ``cond_schedules`` has one schedule per ``AND`` sub-prompt, each ``[(end_at_step, [1, L, C] embedding), ...]``
    (``clip.schedule.get_prompt_schedule`` order); ``uncond_schedule`` is one such schedule for the negative prompt.
    Both are shared by every image of the batch. The n-th call (from 0, wherever sampling started) uses, per
    schedule, the first entry with ``n <= end_at_step``, then runs :class:`CFGDenoiser` with ``cond_weights``
    (default: 1.0 for each sub-prompt). Samplers see an ordinary denoiser; only this layer counts calls, so build a
    new one per sampling run.
    """

    def __init__(self, inner: Denoiser, cond_schedules: Sequence[Sequence[Tuple[int, torch.Tensor]]],
                 uncond_schedule: Sequence[Tuple[int, torch.Tensor]], cfg_scale: float,
                 cond_weights: Optional[Sequence[float]] = None) -> None:
        if not cond_schedules or any(not s for s in cond_schedules) or not uncond_schedule:
            raise ValueError("every cond schedule and the uncond schedule need at least one entry")
        for schedule in [*cond_schedules, uncond_schedule]:
            for end_at_step, c in schedule:
                try:
                    _check_cond(c, "schedule entry")
                    ok = _context(c).shape[0] == 1
                except ValueError:
                    ok = False
                if not ok:
                    got = {k: tuple(v.shape) for k, v in c.items()} if isinstance(c, dict) else \
                        getattr(c, "shape", type(c))
                    raise ValueError(f"schedule entries must be [1, L, C] tensors (or SDXL dicts of [1, L, C] and "
                                     f"[1, V]), got {got} at step {end_at_step}")
        if cond_weights is None:
            cond_weights = [1.0] * len(cond_schedules)
        if len(cond_weights) != len(cond_schedules):
            raise ValueError(f"{len(cond_weights)} cond_weights for {len(cond_schedules)} cond schedules")
        self.inner = inner
        self.cond_schedules = [list(s) for s in cond_schedules]
        self.uncond_schedule = list(uncond_schedule)
        self.cfg_scale = float(cfg_scale)
        self.cond_weights = [float(w) for w in cond_weights]
        self.calls = 0
        self.last_uncond: Optional[torch.Tensor] = None

    def __repr__(self) -> str:
        return (f"ScheduledCFGDenoiser(sub_prompts={len(self.cond_schedules)}, "
                f"uncond_entries={len(self.uncond_schedule)}, cfg_scale={self.cfg_scale}, calls={self.calls})")

    def conds_at(self, call: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(cond [n, L, C], uncond [1, L', C])`` used at the given call number."""
        cond = stack_conds([_scheduled(s, call) for s in self.cond_schedules])
        return cond, _scheduled(self.uncond_schedule, call)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        cond, uncond = self.conds_at(self.calls)
        self.calls += 1
        cfg = CFGDenoiser(self.inner, cond, uncond, self.cfg_scale, cond_weights=self.cond_weights)
        denoised = cfg(x, sigma)
        self.last_uncond = cfg.last_uncond
        return denoised


def _check_latent_pair(init_latent: torch.Tensor, mask: torch.Tensor, name: str,
                       mask_ndims: tuple[int, ...] = (3, 4)) -> None:
    if init_latent.ndim != 4 or mask.ndim not in mask_ndims:
        dims = " or ".join(f"{n}-D" for n in mask_ndims)
        raise ValueError(f"init_latent must be 4-D and {name} {dims}, got {tuple(init_latent.shape)}, "
                         f"{tuple(mask.shape)}")
    try:
        torch.broadcast_shapes(mask.shape, init_latent.shape)
    except RuntimeError:
        raise ValueError(f"{name} {tuple(mask.shape)} does not broadcast to init_latent "
                         f"{tuple(init_latent.shape)}") from None


class InpaintBlend:
    """Outermost layer for inpainting: after CFG, keep ``init_latent`` where ``nmask`` is 0.

    ``D = D * nmask + init_latent * (1 - nmask)`` (A1111 for k-diffusion samplers; the clean init latent goes into
    the x0 estimate, not into the noisy x). ``nmask`` is the latent mask, 1 = repaint, broadcastable to x.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, nmask: torch.Tensor) -> None:
        _check_latent_pair(init_latent, nmask, "nmask", mask_ndims=(4,))
        self.inner = inner
        self.init_latent = init_latent
        self.nmask = nmask

    def __repr__(self) -> str:
        return f"InpaintBlend(init_latent={tuple(self.init_latent.shape)}, nmask={tuple(self.nmask.shape)})"

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        denoised = self.inner(x, sigma, **kwargs)
        return blend_latents(denoised, self.init_latent, self.nmask)

    @property
    def last_uncond(self) -> Optional[torch.Tensor]:
        return getattr(self.inner, "last_uncond", None)


class InpaintBlendInput(InpaintBlend):
    """Inpainting for A1111's timestep samplers (``mask_before_denoising``): the blend goes into the model *input*.

    ``model(x * nmask + init_latent * (1 - nmask), t)`` with the clean init latent; the sampler's own x is left alone,
    so its x0 and direction terms use the unblended x.
    """

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.inner(blend_latents(x, self.init_latent, self.nmask), sigma, **kwargs)


class TimestepEpsModel(EpsDenoiser):
    """The eps UNet as A1111's timestep samplers call it: ``unet(x [+ image_cond], t, context=cond)`` returns eps.

    No input scaling and no sigma: ``t`` is the (integer or, for UniPC, fractional) timestep, float32 ``[B]``.
    """

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: Optional[torch.Tensor] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self._unet(x, x, _sigma_batch(t, x).to(torch.float32), cond, image_index, cond_mark)


class LCMDenoiser(EpsDenoiser):
    """A1111's LCM denoiser: k-diffusion eps denoiser on the 50-level LCM table, consistency-model output scaling.

    ``t = sigma_to_t(sigma)`` is the nearest level's timestep (19, 39, ..., 999; int64); the UNet gets it as is.
    Returns ``c_skip x + c_out D`` with ``sigma_data = 0.5`` and c_skip, c_out from ``10 t``.
    """

    def __init__(self, unet: UNet, schedule: Union[DiscreteSchedule, torch.Tensor, None] = None,
                 image_cond: Optional[torch.Tensor] = None) -> None:
        if isinstance(schedule, torch.Tensor):
            schedule = DiscreteSchedule.from_alphas_cumprod(schedule)
        if not isinstance(schedule, LCMSchedule):
            schedule = LCMSchedule(schedule)
        super().__init__(unet, schedule, image_cond=image_cond)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Optional[torch.Tensor] = None,
                 image_index: Optional[torch.Tensor] = None, cond_mark: Optional[torch.Tensor] = None) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        c_out, c_in = (_append_dims(v, x.ndim) for v in self.get_scalings(sigma))
        t = self.schedule.sigma_to_t(sigma)
        eps = self._unet(x, x * c_in, t, cond, image_index, cond_mark)
        denoised = x + eps * c_out
        sigma_data = 0.5
        scaled_t = _append_dims(t, x.ndim) * 10.0
        c_skip = sigma_data ** 2 / (scaled_t ** 2 + sigma_data ** 2)
        c_out_lcm = scaled_t / (scaled_t ** 2 + sigma_data ** 2) ** 0.5
        return c_out_lcm * denoised + c_skip * x

class SoftInpaintBlend:
    """A1111 v1.10 soft inpainting's per-step blend, in place of :class:`InpaintBlend`.

    Each call blends ``latent_blend(init_latent, D, modified_nmask(nmask, sigma[0]))``: a lerp towards the denoised
    estimate by ``nmask ** (sigma ** schedule_bias * preservation_strength)`` with the power-mean magnitude correction
    (float64). ``nmask`` is the *unrounded* latent mask (1 = repaint), [C, h, w] or [B or 1, C or 1, h, w]. There is
    no final latent blend after sampling: decode the sampler output as it is.

    mask_before_denoising: A1111's timestep samplers (DDIM, PLMS, UniPC) blend the clean init latent into the noisy
        input before the model call instead of into its output. exponent_sigma: maps the call's sigma [B] to the value
        A1111 raises (those samplers pass the timestep, which makes every partial pixel keep the original); default:
        the sigma itself.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, nmask: torch.Tensor,
                 settings: Optional[SoftInpaintingSettings] = None, *, mask_before_denoising: bool = False,
                 exponent_sigma: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        _check_latent_pair(init_latent, nmask, "nmask")
        self.inner = inner
        self.init_latent = init_latent
        self.nmask = nmask
        self.settings = settings or SoftInpaintingSettings()
        self.mask_before_denoising = mask_before_denoising
        self.exponent_sigma = exponent_sigma

    def __repr__(self) -> str:
        return (f"SoftInpaintBlend(init_latent={tuple(self.init_latent.shape)}, nmask={tuple(self.nmask.shape)}, "
                f"settings={self.settings}, mask_before_denoising={self.mask_before_denoising})")

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """The blend weight t of the denoised latent at this call's sigma ([B], A1111 uses entry 0)."""
        value = sigma if self.exponent_sigma is None else self.exponent_sigma(sigma)
        return modified_nmask(self.nmask, value[0], self.settings.schedule_bias, self.settings.preservation_strength)

    def blend(self, current: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        t = self.weight(_sigma_batch(sigma, current)).to(current.device)
        return latent_blend(self.init_latent.to(current), current, t, self.settings.transition_contrast_boost)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.mask_before_denoising:
            return self.inner(self.blend(x, sigma), sigma, **kwargs)
        return self.blend(self.inner(x, sigma, **kwargs), sigma)


class DifferentialBlend:
    """Differential Diffusion (Levin & Fried 2023): per step, pixels whose change is below the step's threshold are
    reset to the original latent noised to the current sigma, before the model call.

    ``change_map`` [h, w], [1 or B, 1 or C, h, w]: 1 = change fully, 0 = keep (the inpaint convention; the reference
    pipeline's map is ``1 − change_map``). ``sigmas`` is the schedule the sampler runs (n + 1 values ending in 0), ``noise``
    the noise of the start latent ``init_latent + noise * sigmas[0]``: one noise sample for every step, as the
    reference's ``add_noise`` over all timesteps. Step i (the call whose sigma is ``sigmas[i]``) uses the threshold
    ``i / n``: ``x ← where(1 − change > i/n, init_latent + noise·sigma, x)``.

    The reset changes the sampler's own state: ``x`` is overwritten in place before the model call, so the sampler
    steps from the replaced latent (and its multistep history holds true model outputs), exactly as the reference
    pipeline's scheduler steps from its replaced latents. Every k-diffusion-style sampler passes its state tensor to the
    model, so this works with all of them; pass a start latent you do not need afterwards. Calls at sigmas between
    schedule entries (second-order or churned evaluations) use the step of the next schedule entry below or at them.
    No final blend: decode the sampler output as it is.

    add_noise(init_latent, noise, value [B]) -> noised latent: how the original is noised to a call's value; default
    the k-diffusion form ``init + noise·sigma``. For samplers called with timesteps (A1111's DDIM/PLMS/UniPC), pass the
    timesteps run (descending, then a final 0) as ``sigmas`` and the VP form ``√ā_t·init + √(1 − ā_t)·noise``.
    """

    def __init__(self, inner: Denoiser, init_latent: torch.Tensor, change_map: torch.Tensor, sigmas: torch.Tensor,
                 noise: torch.Tensor,
                 add_noise: Optional[Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]] = None) -> None:
        if change_map.ndim == 2:
            change_map = change_map[None, None]
        _check_latent_pair(init_latent, change_map, "change_map")
        if noise.shape != init_latent.shape:
            raise ValueError(f"noise {tuple(noise.shape)} must have init_latent's shape {tuple(init_latent.shape)}")
        if sigmas.ndim != 1 or sigmas.shape[0] < 2:
            raise ValueError("sigmas must be the 1-D schedule the sampler runs (n + 1 values ending in 0)")
        if float(change_map.min()) < 0 or float(change_map.max()) > 1:
            raise ValueError("change_map values must lie in [0, 1]")
        self.inner = inner
        self.init_latent = init_latent
        self.change_map = change_map
        self.sigmas = sigmas
        self.noise = noise
        self.steps = sigmas.shape[0] - 1
        self.keep = differential_masks(change_map, self.steps)
        self.add_noise = add_noise

    def __repr__(self) -> str:
        return (f"DifferentialBlend(init_latent={tuple(self.init_latent.shape)}, "
                f"change_map={tuple(self.change_map.shape)}, steps={self.steps})")

    def step_index(self, sigma: torch.Tensor) -> int:
        """The step a call at ``sigma`` belongs to: how many schedule sigmas lie strictly above it."""
        above = int((self.sigmas[:-1].to(sigma.device) > sigma).sum())
        return min(above, self.steps - 1)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs) -> torch.Tensor:
        sigma = _sigma_batch(sigma, x)
        keep = self.keep[self.step_index(sigma[0])].to(x.device)
        if self.add_noise is None:
            noised = self.init_latent.to(x) + self.noise.to(x) * _append_dims(sigma, x.ndim).to(x)
        else:
            noised = self.add_noise(self.init_latent.to(x), self.noise.to(x), sigma)
        x.copy_(torch.where(keep, noised, x))
        return self.inner(x, sigma, **kwargs)
