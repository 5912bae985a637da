"""Delta features across time frames and across frequency channels (REFERENCE.md section 4).

For X of shape (M, C, D) (frames first):
``time_delta(X)[m] = X[m] - X[m-1]`` and ``freq_delta(X)[:, c] = X[:, c] - X[:, c-1]``, with the
first frame / channel replicated, so the delta there is 0.
"""
from __future__ import annotations

import numpy as np


def time_delta(x: np.ndarray, out: np.ndarray | None = None, previous: np.ndarray | None = None) -> np.ndarray:
    """``x[m] - x[m-1]`` along axis 0 (frames), 0 at m = 0.  x: (M, C, D).

    ``previous`` (C, D): the frame before ``x[0]`` when ``x`` is a block of a longer sequence
    (then ``out[0] = x[0] - previous``)."""
    if out is None:
        out = np.empty_like(x)
    if x.shape[0] == 0:
        return out
    if previous is None:
        out[0] = 0.0
    else:
        np.subtract(x[0], previous, out=out[0])
    np.subtract(x[1:], x[:-1], out=out[1:])
    return out


def freq_delta(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``x[:, c] - x[:, c-1]`` along axis 1 (channels), 0 at c = 0.  x: (M, C, D)."""
    if out is None:
        out = np.empty_like(x)
    out[:, 0] = 0.0
    np.subtract(x[:, 1:], x[:, :-1], out=out[:, 1:])
    return out
