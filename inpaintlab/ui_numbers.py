"""How A1111 prints a number that came from a UI slider or number box.

Gradio hands a slider value to Python as the JSON number the browser sent, so a whole value arrives as an ``int``
and A1111's infotext reads ``Soft inpainting schedule bias: 1`` (not ``1.0``), while ``1.5`` stays ``1.5``. Settings
are floats here; ``ui_number`` turns them back into what A1111 would have printed.
"""
from __future__ import annotations

from typing import Any


def ui_number(value: Any) -> Any:
    """``int(value)`` for a whole, finite float; anything else unchanged (bools included)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
