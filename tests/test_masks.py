"""IBM and HIT/FA scores against direct definitions."""
import numpy as np
import pytest

from fastifkl import masks


def test_ibm_threshold_definition():
    rng = np.random.default_rng(0)
    es = rng.random((5, 40)) ** 3
    en = rng.random((5, 40)) ** 3
    m = masks.ibm(es, en, lc_db=-10)
    with np.errstate(divide="ignore"):
        ref = (10 * np.log10(es / en) > -10).astype(np.uint8)
    np.testing.assert_array_equal(m, ref)
    assert masks.ibm(np.zeros((1, 2)), np.zeros((1, 2))).sum() == 0
    assert masks.ibm(np.ones((1, 2)), np.zeros((1, 2))).sum() == 2


def test_scores_by_counting():
    ibm = np.array([[1, 1, 1, 0, 0, 0, 0, 0]])
    est = np.array([[1, 0, 1, 1, 0, 0, 0, 0]])
    s = masks.scores(est, ibm)
    assert s["hit"] == pytest.approx(2 / 3)
    assert s["fa"] == pytest.approx(1 / 5)
    assert s["hit_fa"] == pytest.approx(2 / 3 - 1 / 5)
    assert s["accuracy"] == pytest.approx(6 / 8)


def test_scores_random_against_brute_force_and_pooling():
    rng = np.random.default_rng(1)
    parts = [(rng.random((64, 50)) > 0.5, rng.random((64, 50)) > 0.7) for _ in range(3)]
    counts = [masks.confusion(e, i) for e, i in parts]
    pooled = masks.pooled_scores(counts)
    e = np.concatenate([p[0] for p in parts], 1)
    i = np.concatenate([p[1] for p in parts], 1)
    hit = sum(1 for a, b in zip(e.ravel(), i.ravel()) if a and b) / i.sum()
    fa = sum(1 for a, b in zip(e.ravel(), i.ravel()) if a and not b) / (~i).sum()
    assert pooled["hit"] == pytest.approx(hit) and pooled["fa"] == pytest.approx(fa)
    assert pooled == masks.scores(e, i)


def test_perfect_and_empty():
    ibm = np.array([[1, 0], [0, 1]])
    s = masks.scores(ibm, ibm)
    assert s["hit"] == 1 and s["fa"] == 0 and s["accuracy"] == 1
    s = masks.scores(np.zeros((2, 2)), np.zeros((2, 2)))
    assert np.isnan(s["hit"]) and s["fa"] == 0


def test_ratio_mask_definition():
    rng = np.random.default_rng(0)
    p = rng.random((4, 30))
    m = masks.ratio(p, floor_db=-15.0, beta=1.0)
    np.testing.assert_allclose(m, np.maximum(p, 10 ** (-15 / 20)))
    assert masks.ratio(np.zeros((1, 3)), -20.0).tolist() == [[0.1, 0.1, 0.1]]  # -20 dB of amplitude = 0.1
    np.testing.assert_array_equal(masks.ratio(np.ones((2, 2)), -15.0, 2.0), np.ones((2, 2)))
    np.testing.assert_allclose(masks.ratio(p, -np.inf, 2.0), p ** 2)
    np.testing.assert_allclose(masks.ratio(np.full((1, 1), 0.25), -40.0, 0.5), [[0.5]])
    for bad in (dict(posterior=p + 1), dict(posterior=p, beta=0.0), dict(posterior=p, floor_db=3.0),
                dict(posterior=np.full((1, 1), np.nan))):
        with pytest.raises(Exception, match="posteriors|beta|floor_db"):
            masks.ratio(**bad)
