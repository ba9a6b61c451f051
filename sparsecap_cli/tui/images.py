"""Images at low resolution in the terminal: one ``▀`` per cell, upper pixel as foreground, lower as background."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from rich.style import Style
from rich.text import Text


@lru_cache(maxsize=64)
def half_block(path: str, width: int = 16, height: int = 8) -> Text | None:
    """``path`` scaled to ``width × 2·height`` pixels as ``height`` lines of half blocks; None when unreadable."""
    try:
        from PIL import Image

        with Image.open(Path(path)) as im:
            im = im.convert("RGB").resize((width, height * 2), Image.Resampling.BOX)
            raw = im.tobytes()
    except (ImportError, OSError, ValueError):
        return None
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height):
        for col in range(width):
            i, j = 3 * (2 * row * width + col), 3 * ((2 * row + 1) * width + col)
            up, down = raw[i : i + 3], raw[j : j + 3]
            style = Style(color=f"rgb({up[0]},{up[1]},{up[2]})", bgcolor=f"rgb({down[0]},{down[1]},{down[2]})")
            text.append("▀", style)
        if row < height - 1:
            text.append("\n")
    return text


def placeholder(width: int = 16, height: int = 8, label: str = "no image") -> Text:
    """A dim box the size of an image, for samples whose file is missing (or without Pillow)."""
    lines = ["┌" + "─" * (width - 2) + "┐"]
    for row in range(height - 2):
        inner = label.center(width - 2)[: width - 2] if row == (height - 2) // 2 else " " * (width - 2)
        lines.append("│" + inner + "│")
    lines.append("└" + "─" * (width - 2) + "┘")
    return Text("\n".join(lines), style="dim", no_wrap=True)
