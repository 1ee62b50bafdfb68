"""Classifier-free guidance layers: A1111 v1.10's ``CFGDenoiser`` (on denoised outputs, ``AND`` sub-prompts) and
the scheduled form for prompt editing and alternation."""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .conds import Cond, Denoiser, _check_cond, _cond_rows, _context, _expand_cond, _repeat_cond, _sigma_batch, cat_conds


@dataclasses.dataclass
class CFGParts:
    """What the CFG layer computed at one call, for a replacement combination (dynamic thresholding, CFG rescale).

    x, sigma: the call's input ([B, ...], [B]); cond: the conditional x0 estimates, [B * n] rows image-major (n =
    len(weights), the ``AND`` sub-prompts; n = 1 and weights [1.0] without them); uncond: the [B] unconditional
    estimates; cfg_scale: the scale. A1111's combination (`a1111_combine`) is
    ``uncond + sum_j (cond_j - uncond) * (weights[j] * cfg_scale)``.
    """

    x: torch.Tensor
    sigma: torch.Tensor
    cond: torch.Tensor
    uncond: torch.Tensor
    weights: List[float]
    cfg_scale: float


def a1111_combine(parts: CFGParts) -> torch.Tensor:
    """A1111's CFG combination, term by term in sub-prompt order (bit-identical to `CFGDenoiser`'s own)."""
    batch, n = parts.uncond.shape[0], len(parts.weights)
    denoised = parts.uncond.clone()
    if n == 1:
        denoised += (parts.cond - parts.uncond) * (parts.weights[0] * parts.cfg_scale)
        return denoised
    for i in range(batch):
        for j, weight in enumerate(parts.weights):
            denoised[i] += (parts.cond[i * n + j] - parts.uncond[i]) * (weight * parts.cfg_scale)
    return denoised


Combine = Callable[[CFGParts], torch.Tensor]


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

    ``combine`` (optional) replaces the combination: it gets the call's `CFGParts` and returns the guided x0.
    """

    def __init__(self, inner: Denoiser, cond: Cond, uncond: Cond, cfg_scale: float,
                 cond_weights: Optional[Sequence[float]] = None, combine: Optional[Combine] = None) -> None:
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
        self.combine = combine
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
        if self.combine is not None:
            return self.combine(CFGParts(x, sigma, denoised_cond, denoised_uncond, [1.0], self.cfg_scale))
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
        if self.combine is not None:
            return self.combine(CFGParts(x, sigma, x_out[:rows], denoised_uncond, list(self.cond_weights),
                                         self.cfg_scale))
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
                 cond_weights: Optional[Sequence[float]] = None, combine: Optional[Combine] = None) -> None:
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
        self.combine = combine
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
        cfg = CFGDenoiser(self.inner, cond, uncond, self.cfg_scale, cond_weights=self.cond_weights,
                          combine=self.combine)
        denoised = cfg(x, sigma)
        self.last_uncond = cfg.last_uncond
        return denoised
