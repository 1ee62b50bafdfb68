"""Resize / Normalize / ToTensor / Compose as classes over the functions in ``functional``."""
from . import functional
from .functional import InterpolationMode


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x


class Resize:
    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
        self.size, self.interpolation, self.antialias = size, interpolation, antialias

    def __call__(self, x):
        return functional.resize(x, self.size, self.interpolation, antialias=self.antialias)


class Normalize:
    def __init__(self, mean, std, inplace=False):
        self.mean, self.std = mean, std

    def __call__(self, x):
        return functional.normalize(x, self.mean, self.std)


class ToTensor:
    def __call__(self, x):
        return functional.to_tensor(x)


__all__ = ["Compose", "InterpolationMode", "Normalize", "Resize", "ToTensor", "functional"]
