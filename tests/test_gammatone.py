"""Gammatone filterbank, cochleagram and resynthesis against independent references."""
import numpy as np
import pytest

import naive
from fastifkl import _gammatone_kernels as gk
from fastifkl import gammatone as gt
from fastifkl.errors import InputError

SR = 16000


def gain_at(h, f, sr=SR):
    """|H(f)| of an FIR (a long impulse response) by direct evaluation."""
    n = np.arange(h.size)
    return np.abs(np.sum(h * np.exp(-2j * np.pi * f * n / sr)))


def test_erb_space_uniform_on_erb_rate_scale():
    cfs = gt.erb_space(80, 5000, 64)
    assert cfs.shape == (64,)
    assert cfs[0] == pytest.approx(80) and cfs[-1] == pytest.approx(5000)
    e = 21.4 * np.log10(1 + 0.00437 * cfs)  # Glasberg & Moore ERB-rate, written out
    assert np.allclose(np.diff(e), (e[-1] - e[0]) / 63, rtol=1e-12)
    assert np.all(np.diff(cfs) > 0)


def test_filterbank_matches_naive_loop_and_scipy_lfilter():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(2000)
    cfs = gt.erb_space(80, 5000, 8)
    ours = gt.filterbank(x, SR, cfs)
    ref = naive.filterbank_loop(x, cfs)
    # the naive reference has no normalisation: scale each channel by our design gain
    _, _, gain = gt.design(cfs, SR)
    np.testing.assert_allclose(ours, ref * gain[:, None], rtol=0, atol=1e-10 * np.abs(ours).max())
    # and the scipy.signal.lfilter twin (tests/naive.py)
    np.testing.assert_allclose(ours, naive.filterbank_lfilter(x, SR, cfs), rtol=0, atol=1e-10 * np.abs(ours).max())


@pytest.mark.parametrize("n_ch", [1, 7, 17, 64, 100])
def test_any_channel_count(n_ch):
    x = np.random.default_rng(1).standard_normal(800)
    cfs = gt.erb_space(100, 6000, n_ch)
    r = gt.filterbank(x, SR, cfs)
    assert r.shape == (n_ch, 800)
    np.testing.assert_allclose(r, naive.filterbank_lfilter(x, SR, cfs), atol=1e-10 * np.abs(r).max())


def _peaks_and_bandwidths(h: np.ndarray, nfft: int) -> tuple[np.ndarray, np.ndarray]:
    """Peak frequency and -3 dB bandwidth (Hz) of each row of impulse responses ``h``."""
    spec = np.abs(np.fft.rfft(h, nfft, axis=1))
    freqs = np.fft.rfftfreq(nfft, 1 / SR)
    peaks, bws = [], []
    for s in spec:
        k = int(np.argmax(s))
        lo, hi = k, k
        while s[lo - 1] >= s[k] / np.sqrt(2):
            lo -= 1
        while s[hi + 1] >= s[k] / np.sqrt(2):
            hi += 1
        peaks.append(freqs[k])
        bws.append(freqs[hi] - freqs[lo])
    return np.array(peaks), np.array(bws)


def _analytic_bandwidth(cf: float) -> float:
    # analytic 4th-order gammatone: |H| = (1 + ((f - cf)/b)^2)^-2 -> -3 dB width 2 b sqrt(2^(1/4) - 1)
    b = 1.019 * 24.7 * (4.37 * cf / 1000 + 1)
    return 2 * b * np.sqrt(2 ** 0.25 - 1)


def test_peak_and_bandwidth_against_analytic_gammatone():
    """Measured on the filter's own impulse response (not the design formula)."""
    cfs = gt.erb_space(80, 5000, 64)
    n = 16000
    imp = np.zeros(n)
    imp[0] = 1.0
    h = gt.filterbank(imp, SR, cfs)
    peaks, bws = _peaks_and_bandwidths(h, 1 << 20)
    for c, cf in enumerate(cfs):
        assert abs(peaks[c] - cf) / cf < 0.02, (cf, peaks[c])
        assert gain_at(h[c], cf) == pytest.approx(1.0, abs=1e-6)  # 0 dB at cf
        bw, bw_analytic = bws[c], _analytic_bandwidth(cf)
        assert abs(bw - bw_analytic) / bw_analytic < 0.05, (cf, bw, bw_analytic)


def test_cochleagram_is_framewise_energy():
    rng = np.random.default_rng(2)
    r = rng.standard_normal((3, 16000 + 77))
    e = gt.cochleagram(r)
    m = 1 + (r.shape[1] - 320) // 160
    assert e.shape == (3, m)
    brute = np.array([[np.sum(r[c, i * 160 : i * 160 + 320] ** 2) for i in range(m)] for c in range(3)])
    np.testing.assert_allclose(e, brute, rtol=1e-12)


def test_cochleagram_too_short():
    with pytest.raises(InputError, match="too short"):
        gt.cochleagram(np.zeros((4, 319)))


def bandlimit(x, lo, hi):
    X = np.fft.rfft(x)
    f = np.fft.rfftfreq(x.size, 1 / SR)
    X[(f < lo) | (f > hi)] = 0
    return np.fft.irfft(X, x.size)


def test_all_ones_resynthesis_reproduces_input_in_passband():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(3 * SR)
    m = 1 + (x.size - 320) // 160
    y = gt.resynthesize(x, np.ones((64, m)), SR)
    xb, yb = bandlimit(x, 150, 4000), bandlimit(y, 150, 4000)
    core = slice(800, x.size - 800)  # exclude the first/last 50 ms (half-frame taper, edge effects)
    xb, yb = xb[core], yb[core]
    g = np.dot(xb, yb) / np.dot(yb, yb)  # least-squares gain still needed after calibration
    assert abs(20 * np.log10(g)) < 1.0  # calibrated to within 1 dB
    snr = 10 * np.log10(np.sum(xb ** 2) / np.sum((xb - g * yb) ** 2))
    assert snr >= 40.0, snr


def test_zero_mask_gives_silence_and_mask_weights_sum_to_one():
    x = np.random.default_rng(4).standard_normal(4000)
    m = 1 + (4000 - 320) // 160
    assert np.all(gt.resynthesize(x, np.zeros((64, m))) == 0)
    w = gt.frame_weights(np.ones((2, m)), 4000)
    np.testing.assert_allclose(w[:, 160 : (m - 1) * 160 + 160], 1.0, atol=1e-12)


def test_resynthesis_is_linear_in_the_mask():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(5000)
    m = 1 + (5000 - 320) // 160
    m1 = (rng.random((64, m)) > 0.5).astype(float)
    y1 = gt.resynthesize(x, m1)
    y2 = gt.resynthesize(x, 1 - m1)
    np.testing.assert_allclose(y1 + y2, gt.resynthesize(x, np.ones((64, m))), atol=1e-9)


def test_resynthesis_matches_forward_backward_reference():
    rng = np.random.default_rng(6)
    x = rng.standard_normal(3000)
    cfs = gt.erb_space(80, 5000, 6)
    m = 1 + (3000 - 320) // 160
    mask = (rng.random((6, m)) > 0.3).astype(float)
    r = naive.filterbank_lfilter(x, SR, cfs)
    rr = np.stack([naive.filterbank_lfilter(ch[::-1].copy(), SR, cfs[c : c + 1])[0][::-1] for c, ch in enumerate(r)])
    win = np.hanning(321)[:-1]
    w = np.zeros((6, 3000))
    for i in range(m):
        w[:, i * 160 : i * 160 + 320] += mask[:, i : i + 1] * win
    ref = np.sum(rr * w, axis=0) * gt.resynthesis_gain(cfs)
    np.testing.assert_allclose(gt.resynthesize(x, mask, SR, cfs), ref, atol=1e-10 * np.abs(ref).max())


@pytest.mark.parametrize(
    "bad, msg",
    [
        (np.array([]), "empty"),
        (np.array([0.0, np.nan, 1.0]), "NaN"),
        (np.zeros((2, 100)), "1-D"),
    ],
)
def test_filterbank_rejects_bad_signals(bad, msg):
    with pytest.raises(InputError, match=msg):
        gt.filterbank(bad)


def test_resynthesize_rejects_wrong_mask_shape():
    with pytest.raises(InputError, match="mask has shape"):
        gt.resynthesize(np.zeros(1000), np.ones((64, 3)))


def test_resynthesize_reuses_given_responses():
    x = np.random.default_rng(7).standard_normal(4000)
    m = 1 + (4000 - 320) // 160
    mask = (np.random.default_rng(8).random((64, m)) > 0.5).astype(float)
    R = gt.filterbank(x)
    R0 = R.copy()
    np.testing.assert_array_equal(gt.resynthesize(x, mask, responses=R), gt.resynthesize(x, mask))
    np.testing.assert_array_equal(R, R0)  # not modified
    with pytest.raises(InputError, match="responses have shape"):
        gt.resynthesize(x, mask, responses=R[:3])


def test_filterbank_out_buffer():
    x = np.random.default_rng(9).standard_normal(3000)
    buf = np.full((64, 3000), np.nan)
    r = gt.filterbank(x, out=buf)
    assert r is buf
    np.testing.assert_array_equal(buf, gt.filterbank(x))
    with pytest.raises(InputError, match="out must be"):
        gt.filterbank(x, out=np.empty((64, 2999)))


@pytest.mark.parametrize("n", [4000, 4123, 330])
def test_resynthesis_from_one_zero_phase_pass(rng, n):
    """Several masks from one zero-phase pass (the experiment's fast path): the same bits as
    ``resynthesize`` alone, and equal to the (C x N) frame-weight formulation."""
    x = rng.standard_normal(n)
    cfs = gt.erb_space(80, 5000, 16)
    mask = (rng.random((16, 1 + (n - 320) // 160)) > 0.5).astype(np.uint8)
    r = gt.zero_phase(x, SR, cfs)
    y = gt.resynthesize(x, mask, SR, cfs, filtered=r)
    np.testing.assert_array_equal(y, gt.resynthesize(x, mask, SR, cfs))
    np.testing.assert_array_equal(r, gt.zero_phase(x, SR, cfs, responses=gt.filterbank(x, SR, cfs)))
    ref = np.einsum("cn,cn->n", r, gt.frame_weights(mask, n)) * gt.resynthesis_gain(cfs, SR)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# The SIMD tile kernel against the generic Numba kernel (its scalar twin), the float32 output,
# and the recycled output buffers


def _scalar_twin(x, cfs, reverse_inplace_of=None):
    pr, pi, g = gt._coeffs(cfs, SR)
    if reverse_inplace_of is None:
        out = np.empty((len(cfs), x.size))
        gk.kernel(x, False, pr, pi, g, False, out, gk.per_task(len(cfs)))
    else:
        out = reverse_inplace_of.copy()
        gk.kernel(x, True, pr, pi, g, True, out, gk.per_task(len(cfs)))
    return out


@pytest.mark.parametrize("n_ch", [1, 8, 9, 16, 64, 71])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 1003])
def test_simd_tiles_match_scalar_kernel(n_ch, n):
    """Whole 8-channel tiles, the C % 8 remainder, and the n % 8 tail of the time loop."""
    rng = np.random.default_rng(n_ch * 1000 + n)
    x = rng.standard_normal(n)
    cfs = gt.erb_space(90, 7000, n_ch)
    ref = _scalar_twin(x, cfs)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(gt.filterbank(x, SR, cfs), ref, rtol=0, atol=1e-13 * scale)
    # float32: 16-channel tiles in float32 arithmetic, remainder channels through gk.group
    r32 = gt.filterbank(x, SR, cfs, dtype=np.float32)
    assert r32.dtype == np.float32
    assert (np.abs(r32 - ref).max(axis=1) / np.abs(ref).max(axis=1)).max() < 3e-5
    # the backward in-place pass of resynthesis (per-channel input, reversed time)
    pr, pi, g = gt._coeffs(cfs, SR)
    back = ref.copy()
    gk.bank_backward_inplace(pr, pi, g, back)
    ref_back = _scalar_twin(x, cfs, reverse_inplace_of=ref)
    np.testing.assert_allclose(back, ref_back, rtol=0, atol=1e-13 * np.abs(ref_back).max())


def test_float32_output():
    x = np.random.default_rng(10).standard_normal(4001)
    r64 = gt.filterbank(x)
    r32 = gt.filterbank(x, dtype=np.float32)
    assert r32.dtype == np.float32 and r32.shape == r64.shape
    # float32 arithmetic: within 3e-5 of each channel's peak (measured: < 1e-5)
    rel = np.abs(r32 - r64).max(axis=1) / np.abs(r64).max(axis=1)
    assert rel.max() < 3e-5, rel.max()
    assert np.abs(r32 - r64).max() > 0  # really float32
    buf = np.empty((64, 4001), np.float32)
    assert gt.filterbank(x, out=buf) is buf  # dtype taken from out
    np.testing.assert_array_equal(buf, r32)
    with pytest.raises(InputError, match="out must be"):
        gt.filterbank(x, out=buf, dtype=np.float64)
    with pytest.raises(InputError, match="dtype must be"):
        gt.filterbank(x, dtype=np.int16)


def test_float32_output_meets_the_accuracy_criteria():
    """Peak within 2 % of cf, -3 dB bandwidth within 5 %, all-ones resynthesis >= 40 dB."""
    cfs = gt.erb_space(80, 5000, 64)
    imp = np.zeros(16000)
    imp[0] = 1.0
    h = gt.filterbank(imp, SR, cfs, dtype=np.float32).astype(np.float64)
    peaks, bws = _peaks_and_bandwidths(h, 1 << 18)
    for c, cf in enumerate(cfs):
        assert abs(peaks[c] - cf) / cf < 0.02, (cf, peaks[c])
        bw, bw_analytic = bws[c], _analytic_bandwidth(cf)
        assert abs(bw - bw_analytic) / bw_analytic < 0.05, (cf, bw, bw_analytic)
    x = np.random.default_rng(3).standard_normal(3 * SR)
    m = 1 + (x.size - 320) // 160
    y = gt.resynthesize(x, np.ones((64, m)), SR, responses=gt.filterbank(x, dtype=np.float32))
    xb, yb = bandlimit(x, 150, 4000)[800:-800], bandlimit(y, 150, 4000)[800:-800]
    g = np.dot(xb, yb) / np.dot(yb, yb)
    snr = 10 * np.log10(np.sum(xb ** 2) / np.sum((xb - g * yb) ** 2))
    assert snr >= 40.0, snr


def test_recycled_outputs_never_overwrite_live_results():
    rng = np.random.default_rng(11)
    x1, x2 = rng.standard_normal(3000), rng.standard_normal(3000)
    gt.free_buffers()
    r1 = gt.filterbank(x1)
    ref1 = _scalar_twin(x1, gt.erb_space())
    part = gt.filterbank(x1)[5:9, 100:]  # only a slice of a result survives
    r2 = gt.filterbank(x2)
    r3 = gt.filterbank(x2, dtype=np.float32)
    for a, b in [(r1, part), (r1, r2), (part, r2), (r1, r3), (part, r3), (r2, r3)]:
        assert not np.shares_memory(a, b)
    np.testing.assert_allclose(r1, ref1, rtol=0, atol=1e-13 * np.abs(ref1).max())
    np.testing.assert_allclose(part, ref1[5:9, 100:], rtol=0, atol=1e-13 * np.abs(ref1).max())
    # once every reference is gone the memory is reused (no fresh page faults) ...
    addr = r1.ctypes.data
    del r1
    r4 = gt.filterbank(x2)
    assert r4.ctypes.data == addr
    np.testing.assert_array_equal(r4, r2)
    np.testing.assert_allclose(part, ref1[5:9, 100:], rtol=0, atol=1e-13 * np.abs(ref1).max())
    # ... and free_buffers() lets it go; results stay valid
    gt.free_buffers()
    assert len(gt._POOL._bufs) == 0
    np.testing.assert_array_equal(r4, r2)


def test_pool_is_bounded_and_evicts_free_buffers():
    x = np.random.default_rng(12).standard_normal(5000)
    gt.free_buffers()
    small = [gt.filterbank(x[:1000]), gt.filterbank(x[:1200])]  # fills the pool (2 buffers)
    third = gt.filterbank(x[:1100])  # pool full, nothing free: a plain array, not pooled
    assert len(gt._POOL._bufs) == 2 and third.base is None
    del small
    big = gt.filterbank(x)  # both pooled buffers free but too small: one is replaced
    assert len(gt._POOL._bufs) == 2
    assert any(big.base is e[0] for e in gt._POOL._bufs)
    np.testing.assert_allclose(big, _scalar_twin(x, gt.erb_space()), rtol=0, atol=1e-13 * np.abs(big).max())
    gt.free_buffers()


def test_recycled_outputs_are_thread_safe():
    import threading

    x = [np.random.default_rng(20 + k).standard_normal(2000) for k in range(4)]
    refs = [_scalar_twin(xk, gt.erb_space()) for xk in x]
    errors = []

    def work(k):
        for _ in range(5):
            r = gt.filterbank(x[k])
            if not np.allclose(r, refs[k], rtol=0, atol=1e-12 * np.abs(refs[k]).max()):
                errors.append(k)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
