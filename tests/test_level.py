"""Level normalisation before analysis (fastifkl.level): definition, streaming, invariance."""
import numpy as np
import pytest

from fastifkl.errors import InputError
from fastifkl.level import LEVEL_RMS, LevelMeter, analysis_gain, rms


def test_gain_is_target_over_std():
    x = np.random.default_rng(0).normal(0.3, 0.02, 10000)  # a DC offset much larger than the signal
    assert rms(x) == pytest.approx(np.std(x), rel=1e-12)
    assert analysis_gain(x) == pytest.approx(LEVEL_RMS / np.std(x), rel=1e-12)
    assert analysis_gain(x, 0.2) == pytest.approx(0.2 / np.std(x), rel=1e-12)
    assert analysis_gain(np.zeros(100)) == 1.0 and analysis_gain(np.full(100, 0.5)) == 1.0  # silence / DC only
    with pytest.raises(InputError):
        analysis_gain(x, 0.0)
    with pytest.raises(InputError):
        analysis_gain(np.array([0.0, np.inf]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_meter_equals_the_whole_signal(seed):
    rng = np.random.default_rng(seed)
    x = 0.1 * rng.standard_normal(50000) - 0.2 + np.linspace(0, 0.05, 50000)
    cuts = np.sort(rng.choice(np.arange(1, x.size), 17, replace=False))
    m = LevelMeter()
    for block in np.split(x, cuts):
        m.update(block)
    m.update(np.zeros(0))
    assert m.n == x.size
    assert m.gain() == pytest.approx(analysis_gain(x), rel=1e-12)


@pytest.mark.parametrize("db", [-20.0, 20.0, -40.0])
def test_scaled_signal_is_analysed_identically(db):
    x = np.random.default_rng(3).standard_normal(8000)
    a = 10 ** (db / 20)
    np.testing.assert_allclose(analysis_gain(a * x) * (a * x), analysis_gain(x) * x, rtol=1e-12)
