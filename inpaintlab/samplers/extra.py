"""A1111 v1.10's "Restart" sampler (Xu et al. 2023, "Restart Sampling for Improving Generative Processes").

Heun steps down a Karras schedule rebuilt from the given one's ends, with a restart segment: after the step that
lands next to sigma = 0.1, noise is added back up to the level next to sigma = 2 and that stretch is re-run (once
for 20-35 steps, twice from 36).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch
from tqdm import tqdm

from .sampling import Callback, Denoiser, NoiseSampler, _check_inputs, _default_noise, to_d
from .schedules import get_sigmas_karras


def restart_plan(sigmas: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The (sigma, sigma_next) pairs Restart runs for a given schedule (A1111's default restart list).

    With N = len(sigmas) - 1 >= 20 steps: restart_steps = 9 and 1 restart (N >= 36: N // 4 and 2 restarts); the
    main schedule becomes ``karras(N - restart_steps * restarts, sigmas[-2], sigmas[0])``; the restart segment is
    ``karras(restart_steps + 1, sigma[min_idx], sigma[max_idx])[:-1]`` with min_idx/max_idx the indices nearest
    0.1 and 2. Fewer than 20 steps: the schedule as given, no restarts.
    """
    steps = sigmas.shape[0] - 1
    restarts: Dict[float, List[int]] = {}
    if steps >= 20:
        restart_steps, times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = get_sigmas_karras(steps - restart_steps * times, sigmas[-2].item(), sigmas[0].item(),
                                   device=sigmas.device)
        restarts = {0.1: [restart_steps + 1, times, 2]}
    by_index = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restarts.items()}
    plan = []
    for i in range(len(sigmas) - 1):
        plan.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in by_index:
            n, times, restart_max = by_index[i + 1]
            min_idx = i + 1
            max_idx = int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                segment = get_sigmas_karras(n, sigmas[min_idx].item(), sigmas[max_idx].item(),
                                            device=sigmas.device)[:-1]
                for _ in range(times):
                    plan.extend(zip(segment[:-1], segment[1:]))
    return plan


@torch.no_grad()
def sample_restart(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, extra_args: Optional[dict] = None,
                   callback: Optional[Callback] = None, disable: Optional[bool] = None, s_noise: float = 1.0,
                   noise_sampler: Optional[NoiseSampler] = None) -> torch.Tensor:
    """A1111 "Restart": Heun (Euler onto 0) over :func:`restart_plan`; one noise draw per jump back up.

    20 steps: 39 model calls, 1 draw; 36 steps: 71 calls, 2 draws.
    """
    _check_inputs(x, sigmas)
    extra_args = {} if extra_args is None else extra_args
    noise_sampler = _default_noise(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    last_sigma = None
    for step, (old_sigma, new_sigma) in enumerate(tqdm(restart_plan(sigmas), disable=disable)):
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + noise_sampler(last_sigma, old_sigma) * s_noise * (old_sigma ** 2 - last_sigma ** 2) ** 0.5
        denoised = model(x, old_sigma * s_in, **extra_args)
        d = to_d(x, old_sigma, denoised)
        if callback is not None:
            callback({"x": x, "i": step, "sigma": new_sigma, "sigma_hat": old_sigma, "denoised": denoised})
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            denoised_2 = model(x_2, new_sigma * s_in, **extra_args)
            d_2 = to_d(x_2, new_sigma, denoised_2)
            x = x + ((d + d_2) / 2) * dt
        last_sigma = new_sigma
    return x
