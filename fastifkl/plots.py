"""Figures (matplotlib is an optional extra: ``pip install 'fastifkl[plot]'``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .audio import atomic_path
from .errors import InputError


def pyplot():
    """matplotlib.pyplot on the Agg backend; one-line :class:`InputError` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("figures need matplotlib: pip install 'fastifkl[plot]'") from None
    return plt


def save_figure(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG (atomically) and close it."""
    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def save_cochleagram_png(path: str | Path, energy: np.ndarray, title: str = "") -> Path:
    """Cochleagram (C x M energies) in dB as a PNG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.imshow(10 * np.log10(np.asarray(energy) + 1e-12), origin="lower", aspect="auto", cmap="magma")
    ax.set(title=title or "Cochleagram (dB)", xlabel="frame (10 ms)", ylabel="channel")
    fig.tight_layout()
    return save_figure(fig, Path(path))


def save_masks_png(path: str | Path, masks: dict[str, np.ndarray], title: str = "") -> Path:
    """Binary masks side by side (white = 1, black = 0), as the paper's Fig. 1."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(masks), figsize=(4 * len(masks), 3.5), squeeze=False)
    for ax, (name, m) in zip(axes[0], masks.items()):
        ax.imshow(np.asarray(m), origin="lower", aspect="auto", cmap="gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set(title=name, xlabel="frame (10 ms)")
    axes[0][0].set_ylabel("channel")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, Path(path))
