"""What a written figure must be: a readable PNG of a useful size with something drawn on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def assert_png(path: Path, *, min_size: tuple[int, int] = (200, 150), min_ink: float = 0.02) -> tuple[int, int]:
    """Check ``path`` is a valid PNG at least ``min_size`` (width, height) pixels with at least ``min_ink`` of its
    pixels away from the background (its most common colour); returns ``(width, height)``."""
    path = Path(path)
    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as im:
        assert im.format == "PNG", f"{path} is a {im.format}, not a PNG"
        im.verify()  # the whole file decodes (a truncated write fails here)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
        size = im.size
    assert size[0] >= min_size[0] and size[1] >= min_size[1], f"{path} is only {size} pixels"
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    ink = np.any(pixels != background, axis=1).mean()
    assert ink >= min_ink, f"{path} is blank: {ink:.1%} of its pixels differ from the background"
    return size
