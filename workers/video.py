"""Writing rendered frames to an animated GIF (Pillow, which matplotlib already brings)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def write_gif(frames: Sequence[np.ndarray], path: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` (each ``[H, W, 3]`` uint8) to ``path`` as a looping GIF.

    Raises:
        ValueError: no frames, or ``path`` does not end in ``.gif``.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"video files are written as GIF: give a path ending in .gif, got '{path}'")
    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return path
