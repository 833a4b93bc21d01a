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


def dream_frames(real: np.ndarray, dreamed: np.ndarray, context: int, scale: int = 4) -> list[np.ndarray]:
    """Each real frame beside the model's decoded one, enlarged ``scale`` times.

    A bar above the decoded frame is green while the model still sees real
    observations (the first ``context`` steps) and red once it only imagines.

    Shapes:
        real, dreamed: [T, H, W, 3] uint8 -> T frames [scale*H + 6, 2*scale*W + 4, 3]
    """
    if real.shape != dreamed.shape or real.ndim != 4:
        raise ValueError(f"dream_frames needs two [T, H, W, C] arrays of one shape, got {real.shape} and "
                         f"{dreamed.shape}")
    frames = []
    for t, (left, right) in enumerate(zip(real, dreamed, strict=True)):
        left, right = (np.repeat(np.repeat(side, scale, 0), scale, 1)[..., :3] for side in (left, right))
        height, width = left.shape[:2]
        frame = np.full((height + 6, 2 * width + 4, 3), 255, dtype=np.uint8)
        frame[6:, :width] = left
        frame[6:, width + 4:] = right
        frame[:4, width + 4:] = (40, 170, 60) if t < context else (200, 40, 40)
        frames.append(frame)
    return frames


def plot_dream(real: np.ndarray, dreamed: np.ndarray, context: int, path: str | Path) -> Path:
    """Plot each observation dimension of a real episode against the model's open-loop prediction.

    Shapes:
        real, dreamed: [T, O]
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"vector observations are plotted: give a path ending in .png, got '{path}'")
    dims = real.shape[1]
    cols = min(dims, 4)
    rows = -(-dims // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    steps = np.arange(real.shape[0])
    for dim, ax in enumerate(axes.flat):
        if dim >= dims:
            ax.axis("off")
            continue
        ax.axvspan(0, context - 1, color="tab:green", alpha=0.12, lw=0)
        ax.plot(steps, real[:, dim], color="black", lw=1.2, label="real")
        ax.plot(steps, dreamed[:, dim], color="tab:red", lw=1.2, ls="--", label="model")
        ax.set_title(f"obs[{dim}]", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"open-loop prediction: {context} observed steps (shaded), then imagined from actions", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
