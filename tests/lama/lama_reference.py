"""spandrel==0.4.2's LaMa (test oracle), with its BatchNorm statistics and every weight re-drawn."""
from __future__ import annotations

import torch
from shims import use_torchvision_shim

from inpaintlab.lama import randomize_lama


def spandrel_generator(ngf: int = 64, n_blocks: int = 18, seed: int = 0) -> torch.nn.Module:
    """spandrel's FFCResNetGenerator(4, 3) at the given size, randomised, in eval mode."""
    use_torchvision_shim()
    from spandrel.architectures.LaMa.__arch.LaMa import FFCResNetGenerator

    return randomize_lama(FFCResNetGenerator(4, 3, ngf=ngf, n_blocks=n_blocks), seed).eval()


def spandrel_lama(seed: int = 0) -> torch.nn.Module:
    """spandrel's full LaMa wrapper (hole zeroed, generator, composite) around a randomised big-lama generator."""
    use_torchvision_shim()
    from spandrel.architectures.LaMa import LaMa

    model = LaMa(in_nc=4, out_nc=3)
    randomize_lama(model.model, seed)
    return model.eval()
