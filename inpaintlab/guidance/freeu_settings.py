"""sd-webui-freeu's settings (`FreeUSettings`, `FreeUStage`) and their infotext keys, without torch: the settings
row's check reads `FreeU Stages` with them when `inpaintlab info` reads a PNG. The filter itself is `freeu`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

VERSIONS = ("1", "2")


@dataclasses.dataclass(frozen=True)
class FreeUStage:
    """One stage's parameters (the extension's `StageInfo`, field order and defaults kept: its infotext lists the
    fields that differ from these)."""

    backbone_factor: float = 1.0
    skip_factor: float = 1.0
    backbone_offset: float = 0.0
    backbone_width: float = 0.5
    skip_cutoff: float = 0.0
    skip_high_end_factor: float = 1.0


# The extension's first UI preset ("SD1.4 Recommendations"), its UI default.
DEFAULT_STAGES = (FreeUStage(1.2, 0.9), FreeUStage(1.4, 0.2), FreeUStage())


@dataclasses.dataclass(frozen=True)
class FreeUSettings:
    """The extension's settings: up to three stages, schedule (start, stop, smoothness) and version ("1"/"2")."""

    stages: tuple[FreeUStage, ...] = DEFAULT_STAGES
    start: float | int = 0.0
    stop: float | int = 1.0
    smoothness: float = 0.0
    version: str = "2"

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"FreeU version must be '1' or '2', got {self.version!r}")
        if len(self.stages) > 3:
            raise ValueError(f"FreeU has at most 3 stages, got {len(self.stages)}")

    def stage(self, index: int) -> FreeUStage:
        return self.stages[index] if index < len(self.stages) else FreeUStage()

    def hook(self, unet: Any, steps: int) -> Any:
        """Install FreeU on ``unet`` (a UNetModel) for a run of A1111 ``sampling_steps`` = ``steps``: a
        `freeu.FreeUHook`; call ``.step()`` after every denoiser call and ``.remove()`` at the end."""
        from .freeu import FreeUHook

        return FreeUHook(unet, self, steps)

    # -- infotext (the extension's `FreeU Stages`, `FreeU Schedule`, `FreeU Version`) --

    def infotext(self) -> dict[str, str]:
        names = [f.name for f in dataclasses.fields(FreeUStage)]
        defaults = FreeUStage()
        dicts = [{n: getattr(s, n) for n in names if getattr(s, n) != getattr(defaults, n)} for s in self.stages]
        while dicts and not dicts[-1]:
            dicts.pop()
        return {"FreeU Stages": json.dumps(dicts),
                "FreeU Schedule": ", ".join(str(v) for v in (self.start, self.stop, self.smoothness)),
                "FreeU Version": self.version}

    @classmethod
    def from_infotext(cls, stages: str, schedule: str | None = None, version: str | None = None) -> "FreeUSettings":
        """Read the keys back; ``skip_threshold`` (the field's name in the extension's first builds) is accepted."""
        try:
            raw = json.loads(stages)
            if not isinstance(raw, list) or not all(isinstance(d, dict) for d in raw):
                raise ValueError("not a list of objects")
            parsed = []
            for d in raw:
                d = dict(d)
                if "skip_threshold" in d:
                    d["skip_cutoff"] = d.pop("skip_threshold")
                parsed.append(FreeUStage(**{k: float(v) for k, v in d.items()}))
        except (ValueError, TypeError) as e:
            raise ValueError(f"FreeU Stages is not a JSON list of stage settings: {e}") from None
        parsed += [FreeUStage()] * (3 - len(parsed))
        values: Sequence[float | int] = (0.0, 1.0, 0.0)
        if schedule is not None:
            try:
                values = [_int_or_float(v) for v in schedule.split(", ")]
                if len(values) != 3:
                    raise ValueError
            except ValueError:
                raise ValueError(f"FreeU Schedule must be 'start, stop, smoothness', got {schedule!r}") from None
        return cls(tuple(parsed), values[0], values[1], float(values[2]), "2" if version is None else str(version))


def _int_or_float(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)
