"""The settings row of A1111's `token_merging_ratio_hr` ("Token merging ratio for high-res pass"): token merging in
the hires fix's second pass only. It loads without torch (the other token merging rows are in `guidance.rows`)."""
from __future__ import annotations

from ..settings import SETTINGS, Setting, register

ROWS = (
    Setting("token_merging_ratio_hr", float, 0.0, "token merging ratio of the hires fix's second pass (0: "
            "token_merging_ratio; 0-0.9)", ("txt2img",), infotext="Token merging ratio hr",
            check=lambda v: None if 0 <= v <= 0.9 else "must be in [0, 0.9]", keyword=False),
)


def register_rows() -> None:
    for row in ROWS:
        if row.name not in SETTINGS:
            register(row)


register_rows()
