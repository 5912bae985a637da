"""The one frame grid used everywhere: 20 ms frames with a 10 ms hop at 16 kHz.

Frame ``m`` covers samples ``[m * HOP, m * HOP + FRAME_LEN)``; only frames that lie wholly
inside the signal exist, so a signal of ``N`` samples has
``M = 1 + (N - FRAME_LEN) // HOP`` frames (``N >= FRAME_LEN``).
"""
from __future__ import annotations

import numpy as np

from . import FRAME_LEN, HOP
from .errors import InputError


def n_frames(n_samples: int, frame_len: int = FRAME_LEN, hop: int = HOP) -> int:
    """Number of whole frames in ``n_samples`` samples (0 if shorter than one frame)."""
    if n_samples < frame_len:
        return 0
    return 1 + (n_samples - frame_len) // hop


def check_length(n_samples: int, what: str = "signal") -> int:
    """Return the frame count, raising :class:`InputError` if there is not one whole frame."""
    m = n_frames(n_samples)
    if m < 1:
        raise InputError(
            f"{what} is too short: {n_samples} samples, need at least {FRAME_LEN} (one 20 ms frame)"
        )
    return m


def frames(x: np.ndarray, frame_len: int = FRAME_LEN, hop: int = HOP) -> np.ndarray:
    """Strided read-only view of the frames of ``x`` along its last axis.

    Parameters
    ----------
    x : ndarray, shape (..., N)

    Returns
    -------
    ndarray, shape (..., M, frame_len)
    """
    m = n_frames(x.shape[-1], frame_len, hop)
    win = np.lib.stride_tricks.sliding_window_view(x, frame_len, axis=-1)
    return win[..., : (m - 1) * hop + 1 : hop, :]
