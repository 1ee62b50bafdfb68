"""sd-webui-controlnet's preprocessors that are pure image operations (no annotator network), and the parts of the
unit pipeline around them: HWC3, Pixel Perfect, the 64-padded resize.

Each preprocessor takes an HxWx3 uint8 RGB array, the processing resolution, the unit's Threshold A/B and the unit's
numpy random state (only shuffle draws from it), and returns the HxWx3 uint8 detected map the extension would hand
to `detectmap_proc`. Preprocessors that need an annotator
network are named in `NETWORK_PREPROCESSORS`; a unit with one of them runs only with a ready hint image
(module "none").
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import cv2
import numpy as np


def hwc3(x: np.ndarray) -> np.ndarray:
    """Gray -> 3 channels; RGBA -> RGB composited over white (the extension's HWC3)."""
    if x.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {x.dtype}")
    if x.ndim == 2:
        x = x[:, :, None]
    c = x.shape[2]
    if c == 3:
        return x
    if c == 1:
        return np.concatenate([x, x, x], axis=2)
    if c == 4:
        color, alpha = x[:, :, :3].astype(np.float32), x[:, :, 3:4].astype(np.float32) / 255.0
        return (color * alpha + 255.0 * (1.0 - alpha)).clip(0, 255).astype(np.uint8)
    raise ValueError(f"expected 1, 3 or 4 channels, got {c}")


def pixel_perfect_resolution(image_hw: tuple[int, int], target_hw: tuple[int, int], resize_mode: str) -> int:
    """The processing resolution "Pixel Perfect" picks: ``round(k·min(H, W))`` with ``k`` the larger scale factor
    to the target (the smaller one for Resize and Fill)."""
    (raw_h, raw_w), (h, w) = image_hw, target_hw
    k0, k1 = h / raw_h, w / raw_w
    k = min(k0, k1) if resize_mode == "Resize and Fill" else max(k0, k1)
    return int(np.round(k * min(raw_h, raw_w)))


def resize_image_with_pad(img: np.ndarray, resolution: int) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Scale the short side to ``resolution`` (cubic up, area down), pad bottom/right to multiples of 64 by edge
    replication; returns the padded image and the function that crops a result back."""
    h, w = img.shape[:2]
    k = float(resolution) / float(min(h, w))
    th, tw = int(np.round(float(h) * k)), int(np.round(float(w) * k))
    img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_CUBIC if k > 1 else cv2.INTER_AREA)
    ph, pw = int(np.ceil(float(th) / 64.0) * 64 - th), int(np.ceil(float(tw) / 64.0) * 64 - tw)
    padded = np.pad(img, [[0, ph], [0, pw], [0, 0]], mode="edge")
    return padded, lambda x: x[:th, :tw]


def _none(img, res, a, b, rng):
    return img


def _invert(img, res, a, b, rng):
    return 255 - img


def _canny(img, res, a, b, rng):
    padded, remove_pad = resize_image_with_pad(img, res)
    edges = cv2.Canny(padded, int(a), int(b))
    return remove_pad(hwc3(edges))


def _tile_resample(img, res, a, b, rng):
    if a < 1.1:
        return img
    h, w = img.shape[:2]
    return cv2.resize(img, (int(float(w) / float(a)), int(float(h) / float(a))), interpolation=cv2.INTER_AREA)


def _threshold(img, res, a, b, rng):
    padded, remove_pad = resize_image_with_pad(img, res)
    out = np.zeros_like(padded)
    out[np.min(padded, axis=2) > a] = 255
    return remove_pad(out)


def _blur_gaussian(img, res, a, b, rng):
    padded, remove_pad = resize_image_with_pad(img, res)
    return cv2.GaussianBlur(remove_pad(padded), (0, 0), float(a))


def _lineart_standard(img, res, a, b, rng):
    padded, remove_pad = resize_image_with_pad(img, res)
    x = padded.astype(np.float32)
    g = cv2.GaussianBlur(x, (0, 0), 6.0)
    intensity = np.min(g - x, axis=2).clip(0, 255)
    bright = intensity[intensity > 8]
    median = np.median(bright) if bright.size else np.nan
    intensity /= max(16, median) if not np.isnan(median) else 16  # max(16, NaN) is 16 in the extension
    intensity *= 127
    return hwc3(remove_pad(intensity.clip(0, 255).astype(np.uint8)))


def _scribble_xdog(img, res, a, b, rng):
    padded, remove_pad = resize_image_with_pad(img, res)
    g1 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 0.5)
    g2 = cv2.GaussianBlur(padded.astype(np.float32), (0, 0), 5.0)
    dog = (255 - np.min(g2 - g1, axis=2)).clip(0, 255).astype(np.uint8)
    out = np.zeros_like(padded, dtype=np.uint8)
    out[2 * (255 - dog) > a] = 255
    return remove_pad(out)


def _recolor(code: int, channel: int) -> Callable:
    def recolor(img, res, a, b, rng):
        # The extension converts the RGB array with a BGR code (as it does): kept for the same numbers.
        v = cv2.cvtColor(img, code)[:, :, channel].astype(np.float32) / 255.0
        v = (v ** a * 255.0).clip(0, 255).astype(np.uint8)
        return cv2.cvtColor(v, cv2.COLOR_GRAY2RGB)
    return recolor


def noise_disk(rng: np.random.RandomState, h: int, w: int, cell: int) -> np.ndarray:
    """The extension's `make_noise_disk` for one channel: a uniform grid of (h//cell + 2) x (w//cell + 2) draws,
    cubic-upsampled to (h + 2·cell) x (w + 2·cell), cropped by `cell` on each side, min-max normalised (float64)."""
    grid = rng.uniform(low=0, high=1, size=(h // cell + 2, w // cell + 2, 1))
    noise = cv2.resize(grid, (w + 2 * cell, h + 2 * cell), interpolation=cv2.INTER_CUBIC)
    noise = noise[cell:cell + h, cell:cell + w]
    noise = noise - np.min(noise)
    return (noise / np.max(noise))[:, :, None]


def _shuffle(img, res, a, b, rng):
    if rng is None:
        raise ValueError("the shuffle preprocessor draws random numbers: give it a seed (a generation passes "
                         "(seed + subseed) & 0xFFFFFFFF, as the extension seeds numpy)")
    padded, remove_pad = resize_image_with_pad(img, res)
    img = remove_pad(padded)
    h, w = img.shape[:2]
    flow_x = noise_disk(rng, h, w, 256) * float(w - 1)  # two draws from the one stream, x first
    flow_y = noise_disk(rng, h, w, 256) * float(h - 1)
    flow = np.concatenate([flow_x, flow_y], axis=2).astype(np.float32)
    return cv2.remap(img, flow, None, cv2.INTER_LINEAR)


def _color_grid(img, res, a, b, rng):
    h, w = img.shape[:2]
    # the shortest edge to res (area, also when enlarging), the other edge by Python's round of the ratio
    if h < w:
        nh, nw = res, int(round(w / h * res))
    else:
        nh, nw = int(round(h / w * res)), res
    if nh < 64 or nw < 64:
        raise ValueError(f"color grid needs a processing resolution that gives both sides >= 64 pixels, got {res} "
                         f"for a {w}x{h} image")
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    cells = cv2.resize(img, (nw // 64, nh // 64), interpolation=cv2.INTER_CUBIC)
    return cv2.resize(cells, (nw, nh), interpolation=cv2.INTER_NEAREST)


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """A pure-image preprocessor: its function, the UI label the infotext writes, and its sliders as the extension
    shows them (``None``: hidden, written as 0.5) with their defaults; ``resolution`` False: the resolution slider is
    hidden (written as 0.5). ``colorfix``: the map is the image itself, and the unit also pulls the low frequencies
    of every x0 prediction towards the hint's latent (`inject.colorfix_eps`; Threshold A: the blur radius,
    Threshold B with ``+sharp``: the sharpness)."""

    function: Callable[[np.ndarray, int, float, float, np.random.RandomState | None], np.ndarray]
    label: str
    threshold_a: float | None = None
    threshold_b: float | None = None
    resolution: bool = True
    colorfix: bool = False


PREPROCESSORS: dict[str, Preprocessor] = {
    "none": Preprocessor(_none, "none", resolution=False),
    "invert": Preprocessor(_invert, "invert (from white bg & black line)", resolution=False),
    "canny": Preprocessor(_canny, "canny", 100.0, 200.0),
    "tile_resample": Preprocessor(_tile_resample, "tile_resample", 1.0),
    "threshold": Preprocessor(_threshold, "threshold", 127.0),
    "blur_gaussian": Preprocessor(_blur_gaussian, "blur_gaussian", 9.0),
    "lineart_standard": Preprocessor(_lineart_standard, "lineart_standard (from white bg & black line)"),
    "scribble_xdog": Preprocessor(_scribble_xdog, "scribble_xdog", 32.0),
    "recolor_luminance": Preprocessor(_recolor(cv2.COLOR_BGR2LAB, 0), "recolor_luminance", 1.0),
    "recolor_intensity": Preprocessor(_recolor(cv2.COLOR_BGR2HSV, 2), "recolor_intensity", 1.0),
    "shuffle": Preprocessor(_shuffle, "shuffle"),
    "color": Preprocessor(_color_grid, "t2ia_color_grid"),
    "tile_colorfix": Preprocessor(_none, "tile_colorfix", 8.0, colorfix=True),
    "tile_colorfix+sharp": Preprocessor(_none, "tile_colorfix+sharp", 8.0, 1.0, colorfix=True),
}
LABELS = {p.label: name for name, p in PREPROCESSORS.items()}

# Preprocessors that need an annotator network (by name and label stem): only a ready hint ("none") replaces them.
NETWORK_PREPROCESSORS = (
    "openpose", "dw_openpose", "animal_openpose", "densepose", "softedge", "pidinet", "scribble_pidinet",
    "scribble_hed", "t2ia_sketch_pidi", "lineart", "lineart_coarse", "lineart_realistic", "lineart_anime", "depth",
    "normal", "mlsd", "seg", "mediapipe_face", "reference", "ip-adapter", "clip_vision", "instant_id", "revision",
)


def resolve(name: str) -> str:
    """A preprocessor name or the UI label the infotext carries -> its name; a clear error otherwise."""
    if name in PREPROCESSORS:
        return name
    if name in LABELS:
        return LABELS[name]
    stem = name.split(" ")[0]
    if any(stem == n or stem.startswith(n + "_") for n in NETWORK_PREPROCESSORS):
        raise ValueError(f"ControlNet preprocessor {name!r} needs an annotator network, which inpaintlab does not "
                         f"include: run the preprocessor elsewhere and give its result as the unit's image with "
                         f"preprocessor 'none'")
    raise ValueError(f"unknown ControlNet preprocessor {name!r}; pure-image ones: {', '.join(PREPROCESSORS)}")


def numpy_seed(seed: int, subseed: int = -1) -> int:
    """The seed the extension gives numpy before a unit's preprocessor: ``(seed + subseed) & 0xFFFFFFFF``, with a
    subseed of -1 (no variation seed chosen) replaced by the seed itself."""
    seed = max(int(seed), 0)
    subseed = seed if subseed == -1 else max(int(subseed), 0)
    return (seed + subseed) & 0xFFFFFFFF


def run_preprocessor(name: str, image: np.ndarray, resolution: int = 512, threshold_a: float | None = None,
                     threshold_b: float | None = None, seed: int | None = None) -> np.ndarray:
    """The detected map (HxWx3 uint8) of ``image`` (any HWC3 input) at ``resolution``; missing thresholds take the
    preprocessor's defaults. seed: the numpy seed (`numpy_seed`) for shuffle's random flow field; the draws come
    from a private `np.random.RandomState(seed)`, the stream the extension's seeded global numpy draws."""
    p = PREPROCESSORS[resolve(name)]
    a = p.threshold_a if threshold_a is None else threshold_a
    b = p.threshold_b if threshold_b is None else threshold_b
    rng = None if seed is None else np.random.RandomState(int(seed) & 0xFFFFFFFF)
    return p.function(hwc3(np.asarray(image)), int(resolution), a if a is not None else 0.5,
                      b if b is not None else 0.5, rng)
