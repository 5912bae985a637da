"""JSON for the package's files: NumPy scalars and arrays and paths become plain JSON values."""
from __future__ import annotations

import numpy as np


def json_default(o):
    """``default=`` hook of :func:`json.dumps` for model metadata and reports.

    NumPy integers and floats become Python numbers, arrays lists, paths strings; anything
    else is written as its ``str``.
    """
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)  # paths, and anything else JSON has no type for
