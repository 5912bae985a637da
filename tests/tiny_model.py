"""A small valid model file built by hand (no training): for tests of loading and the CLI."""
from pathlib import Path

import numpy as np

from fastifkl.separator import Separator, cfs_for


def tiny_model(path, n_channels: int = 8, n_points: int = 12, seed: int = 0, platt: bool = False) -> Path:
    """Write a valid Gaussian-kernel model with random support vectors to ``path`` (with a random
    Platt calibration per channel when ``platt``)."""
    rng = np.random.default_rng(seed)
    sep = Separator(kernel="gaussian", n_channels=n_channels)
    sep.cfs_ = cfs_for(n_channels)
    n_dims = 195
    sep.mean_ = rng.normal(size=(n_channels, n_dims))
    sep.std_ = rng.uniform(0.5, 2.0, size=(n_channels, n_dims))
    sep.bias_ = rng.normal(size=n_channels)
    sep.sigma_ = np.full(n_channels, 20.0)
    sep.points_ = [rng.normal(size=(n_points + c, n_dims)).astype(np.float32) for c in range(n_channels)]
    sep.coef_ = [rng.normal(size=n_points + c) for c in range(n_channels)]
    sep.training_ = {"mixtures": 0}
    sep.channel_info_ = [{"n_sv": n_points + c} for c in range(n_channels)]
    sep.platt_ = np.column_stack([rng.uniform(-3, -0.5, n_channels), rng.normal(size=n_channels)]) if platt else None
    return sep.save(path)
