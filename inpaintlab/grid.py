"""Labelled image grids in the manner of A1111's X/Y/Z plot: column labels on top, row labels on the left."""
from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in str(text).split():
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + [line] if line else lines or [""]


def make_grid(images: list[list[Image.Image]], col_labels: list[str] | None = None, row_labels: list[str] | None = None,
              title: str | None = None, font_size: int | None = None) -> Image.Image:
    """Lay out `images[row][col]` with readable labels. Cells may differ in size; each is centred in the largest."""
    rows, cols = len(images), max(len(r) for r in images)
    cell_w = max(im.width for r in images for im in r)
    cell_h = max(im.height for r in images for im in r)
    size = font_size or max(12, min(32, cell_w // 10))
    font = _font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = size + size // 3
    top_lines = max((len(_wrap(probe, t, font, cell_w - 8)) for t in col_labels or []), default=0)
    top = (top_lines * line_h + 8) if col_labels else 0
    left = (min(cell_w, max(probe.textlength(str(t), font=font) for t in row_labels)) + 16) if row_labels else 0
    left = int(left)
    head = (line_h + 8) if title else 0
    grid = Image.new("RGB", (left + cols * cell_w, head + top + rows * cell_h), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((8, 4), title, fill="black", font=font)
    for c, label in enumerate(col_labels or []):
        for k, line in enumerate(_wrap(draw, label, font, cell_w - 8)):
            x = left + c * cell_w + (cell_w - draw.textlength(line, font=font)) / 2
            draw.text((x, head + 4 + k * line_h), line, fill="black", font=font)
    for r, label in enumerate(row_labels or []):
        lines = _wrap(draw, label, font, left - 8)
        y0 = head + top + r * cell_h + (cell_h - len(lines) * line_h) / 2
        for k, line in enumerate(lines):
            draw.text((4, y0 + k * line_h), line, fill="black", font=font)
    for r, row in enumerate(images):
        for c, im in enumerate(row):
            x = left + c * cell_w + (cell_w - im.width) // 2
            y = head + top + r * cell_h + (cell_h - im.height) // 2
            grid.paste(im.convert("RGB"), (x, y))
    return grid


def image_grid(images: list[Image.Image]) -> Image.Image:
    """A1111's batch grid: round(sqrt(n)) rows, images left to right then top to bottom on black, no labels."""
    rows = min(len(images), max(1, round(math.sqrt(len(images)))))
    cols = math.ceil(len(images) / rows)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), "black")
    for i, image in enumerate(images):
        grid.paste(image.convert("RGB"), (i % cols * w, i // cols * h))
    return grid


def grid_infotext(first_cell: str, axes: list[tuple[str, str, list]]) -> str:
    """Infotext of a labelled grid, as A1111's X/Y/Z plot writes it: the first cell's infotext plus `Script: X/Y/Z
    plot` and, per axis, `<letter> Type` (A1111's axis label where it has one) and `<letter> Values` (comma-separated)."""
    from .infotext import format_value

    # "Script: X/Y/Z plot" first, as A1111 writes it, so A1111's PNG Info (and `sweep --from-png`) see a grid.
    pairs = ["Script: X/Y/Z plot"] + [
        f"{letter} Type: {format_value(kind)}, {letter} Values: {format_value(', '.join(map(str, values)))}"
        for letter, kind, values in axes]
    text = first_cell.rstrip()
    head, sep, version = text.rpartition(", Version: ")
    if sep and "\n" not in version:  # Version stays last, as in every A1111 infotext
        return ", ".join([head, *pairs]) + sep + version
    return ", ".join([text, *pairs])
