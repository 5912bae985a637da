"""Frame-level pitch (f0) tracking on the 10 ms frame grid (0 = unvoiced).

:func:`track` has two methods:

- ``method="learned"`` (default, ``DEFAULT_METHOD``): the noise-oriented tracker of
  :mod:`fastifkl.pitch_net`: a small network trained on the corpus's training noises
  (``python -m fastifkl.pitch_train``) scores 60 pitch bins (70-400 Hz) and "unvoiced" per frame
  from pooled correlogram statistics (:mod:`fastifkl.periodicity`), and Viterbi picks the path;
  its voicing decision comes from the state sequence, not from a threshold.  It uses only local
  statistics (a frame depends on the signal within about 1 s of it), so tracking overlapping
  blocks and keeping their centres reproduces tracking the whole signal (see
  :func:`track_blocks`).
- ``method="correlogram"``: the hand-tuned correlogram tracker described below (the default
  before issue 19; model files that do not record their tracker were trained with it, and
  :class:`fastifkl.separator.Separator` keeps using it for them).

The learned tracker became the default in issue 19: on 30 held-out real talkers (LibriSpeech,
VCC2016, CMU ARCTIC) x 6 held-out noises at -5 dB, with DC-free mixing, its GPE / VDE against
Praat on the clean speech was 4.1 % / 18.7 % against the correlogram's 31.2 % / 24.2 %, and
it won on every talker group.  Measured side by side with Praat and WORLD Harvest in
docs/PITCH.md (``python bench/pitch.py``).

Correlogram method (classic CASA front end, REFERENCE.md section 5):

1. Correlogram.  The signal goes through a gammatone filterbank (``n_channels`` = 32 channels,
   ERB-spaced 80-4000 Hz).  Channels below ``split_hz`` (800 Hz) are used as they are; channels
   above it are replaced by their envelope (half-wave rectified, 50-550 Hz band-pass,
   :func:`fastifkl.features.pitch_features.pitch_envelope`), which carries the pitch of
   unresolved harmonics.  For every frame m and channel c, a Hann-weighted normalised
   cross-correlation (:func:`nccf`) over a ``window`` = 640-sample (40 ms) window centred on
   the frame centre ``160 m + 160``, for lags in the ``fmin``-``fmax`` (70-400 Hz) range
   (:func:`hann_nccf`: the taper split over the window's four 10 ms hops, so each hop's lagged
   products are computed once and shared by the four frames that contain it).
2. Channel selection (Wu, Wang & Brown 2003 style): a channel contributes to frame m only if
   its NCCF peak in the lag range exceeds ``select`` (0.8); noise-dominated channels drop out.
   Summary ``S(m, tau) = sum_selected A_c(m, tau) / max(n_selected, n_min * C)``: the mean over
   the selected channels, scaled down when fewer than ``n_min * C`` channels are periodic.
   ``S`` is then averaged over ``2 smooth + 1`` (5) frames: pitch moves slowly, noise does not
   line up across frames.
3. Candidates: up to ``n_cand`` local maxima of ``S`` per frame, refined by parabolic
   interpolation.  Strength = peak height minus the mean of ``S`` over the lag range
   (``prominence``: a flat summary from noise scores low) plus
   ``octave_cost * log2(f / fmin)`` (Boersma 1993's preference for the higher of
   octave-related candidates).  One unvoiced candidate per frame with Praat's strength
   ``voicing_threshold + max(0, 2 - (a_m / a_max) / (silence_threshold / (1 + voicing_threshold)))``,
   ``a_m`` the frame's peak amplitude and ``a_max`` the signal's.
4. Continuity by dynamic programming (Viterbi) over the candidates: a voiced-voiced transition
   costs ``octave_jump_cost * |log2(f1 / f2)|``, a voicing change ``voiced_unvoiced_cost``
   (Praat's defaults 0.35 and 0.14; silence threshold 0.03).  The voicing threshold 0.4 was
   chosen on the clean corpus against Praat (lower values trade false voicing for recall in
   noise).

Measured on the 20 real IEEE utterances of ../shared/corpus against Praat's AC pitch
(``python bench/features.py --pitch``): clean GPE 0.3 %, VDE 8.5 %; -5 dB mixtures: see
bench/results/features.jsonl and the issue-3 report.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from . import FRAME_LEN, HOP, SAMPLE_RATE
from .errors import InputError
from .framing import n_frames

FMIN = 70.0
FMAX = 400.0
DEFAULT_METHOD = "learned"
METHODS = ("correlogram", "learned")


def _check_signal(x, sr) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"signal must be 1-D (mono), got shape {x.shape}")
    if int(sr) != SAMPLE_RATE:
        raise InputError(f"pitch tracking is defined at {SAMPLE_RATE} Hz; got sr={sr} (resample first)")
    if x.size < FRAME_LEN:
        raise InputError(f"signal is too short: {x.size} samples, need at least {FRAME_LEN} (one 20 ms frame)")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError("signal contains NaN or infinite samples")
    return x


def nccf(s: np.ndarray, n_fr: int, lag_max: int, window: int, taper: bool = True) -> np.ndarray:
    """Normalised cross-correlation of signals s (C, N) per frame, lags 0..lag_max.

    The analysis window of frame m is ``s[c, t0 : t0 + window]`` with
    ``t0 = 160 m + 160 - window // 2``; it is correlated with the window shifted by tau,
    with weights ``w`` (a Hann taper, or all ones when ``taper`` is False)::

        A(tau) = sum_n w[n] s[n] s[n + tau] / sqrt(sum_n w[n] s[n]^2 * sum_n w[n] s[n + tau]^2)

    The taper centres the measure on the frame (less smearing of voicing onsets and offsets).
    Samples outside the signal are 0; a zero denominator gives 0.

    Returns
    -------
    A : ndarray, shape (C, n_fr, lag_max + 1)
    """
    c_, n = s.shape
    half = window // 2
    pad_l = half
    pad_r = half + lag_max + FRAME_LEN
    sp = np.zeros((c_, pad_l + n + pad_r))
    sp[:, pad_l: pad_l + n] = s
    seg_len = window + lag_max
    nfft = 1 << int(np.ceil(np.log2(seg_len + 1)))
    w = np.hanning(window + 2)[1:-1] if taper else np.ones(window)
    fw = np.conj(np.fft.rfft(w, nfft))
    starts = np.arange(n_fr) * HOP + FRAME_LEN // 2 - half + pad_l
    out = np.empty((c_, n_fr, lag_max + 1))
    for c in range(c_):
        b = np.lib.stride_tricks.sliding_window_view(sp[c], seg_len)[starts]  # (M, window + lag_max) copy
        a = b[:, :window] * w
        e0 = np.einsum("mi,mi->m", a, b[:, :window])
        fa = np.fft.rfft(a, nfft, axis=1)
        fb = np.fft.rfft(b, nfft, axis=1)
        np.conjugate(fa, out=fa)
        fa *= fb
        xc = np.fft.irfft(fa, nfft, axis=1)[:, : lag_max + 1]
        if taper:
            b *= b
            fb2 = np.fft.rfft(b, nfft, axis=1)
            fb2 *= fw
            et = np.fft.irfft(fb2, nfft, axis=1)[:, : lag_max + 1]
        else:
            cs = np.concatenate([np.zeros((n_fr, 1)), np.cumsum(b * b, axis=1)], axis=1)
            et = cs[:, window: window + lag_max + 1] - cs[:, : lag_max + 1]
        den = et * e0[:, None]
        np.sqrt(np.maximum(den, 0.0, out=den), out=den)
        thr = 1e-12 * max(float(np.max(e0)), 1e-300)
        ok = den > thr
        den[~ok] = 1.0
        xc /= den
        xc[~ok] = 0.0
        out[c] = xc
    return out


@njit(cache=True, fastmath={"reassoc", "contract"})
def _hann_hop_products(y, p, cw, sw, lag_lo, n_lags, P0, Pc, Ps):
    """For the hop ``y[p : p + hop]`` (hop = cw.size, a multiple of 4) and lags
    ``lag_lo + l``: ``P0[l] = sum_i y[p+i] y[p+i+lag]``, ``Pc`` / ``Ps`` the same with weights
    ``cw[i]`` / ``sw[i]``.  fastmath: re-association / FMA of these sums only (SIMD over l;
    checked against the float64 NumPy twin in the tests)."""
    P0[:] = 0.0
    Pc[:] = 0.0
    Ps[:] = 0.0
    for i in range(0, cw.shape[0], 4):
        a0 = y[p + i]
        a1 = y[p + i + 1]
        a2 = y[p + i + 2]
        a3 = y[p + i + 3]
        c0 = cw[i] * a0
        c1 = cw[i + 1] * a1
        c2 = cw[i + 2] * a2
        c3 = cw[i + 3] * a3
        s0 = sw[i] * a0
        s1 = sw[i + 1] * a1
        s2 = sw[i + 2] * a2
        s3 = sw[i + 3] * a3
        yb = y[p + i + lag_lo: p + i + lag_lo + n_lags + 3]
        for l in range(n_lags):
            v0 = yb[l]
            v1 = yb[l + 1]
            v2 = yb[l + 2]
            v3 = yb[l + 3]
            P0[l] += a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
            Pc[l] += c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
            Ps[l] += s0 * v0 + s1 * v1 + s2 * v2 + s3 * v3


@njit(cache=True)
def _hann_nccf_kernel(yp, yp32, n_fr, hop, n_hw, lag_lo, n_lags, out):
    """Hann-tapered NCCF of the padded signals yp (C, Np), frame m's window ``yp[c, hop m :
    hop m + W]`` (W = n_hw hop), lags ``lag_lo .. lag_lo + n_lags - 1``: out (C, n_fr, n_lags).

    The taper ``w[n] = 0.5 - 0.5 cos(theta (n + 1))``, theta = 2 pi / (W + 1), is split over
    the window's hops (n = hop j + i) by the angle sum, so the numerator of every frame is a
    sum of three per-hop products shared by the n_hw frames that contain the hop; the
    denominators' tapered energies come from prefix sums local to each frame."""
    W = n_hw * hop
    theta = 2.0 * np.pi / (W + 1)
    cw = np.empty(hop, dtype=yp32.dtype)
    sw = np.empty(hop, dtype=yp32.dtype)
    for i in range(hop):
        cw[i] = np.cos(theta * (i + 1))
        sw[i] = np.sin(theta * (i + 1))
    cj = np.empty(n_hw)
    sj = np.empty(n_hw)
    for j in range(n_hw):
        cj[j] = np.cos(theta * hop * j)
        sj[j] = np.sin(theta * hop * j)
    P0 = np.empty(n_lags, dtype=yp32.dtype)
    Pc = np.empty(n_lags, dtype=yp32.dtype)
    Ps = np.empty(n_lags, dtype=yp32.dtype)
    seg = W + lag_lo + n_lags
    q0 = np.empty(seg + 1)
    qc = np.empty(seg + 1)
    qs = np.empty(seg + 1)
    ce = np.empty(seg)
    se = np.empty(seg)
    for k in range(seg):
        ce[k] = np.cos(theta * k)
        se[k] = np.sin(theta * k)
    cl0 = np.cos(theta)
    sl0 = np.sin(theta)
    q0[0] = 0.0
    qc[0] = 0.0
    qs[0] = 0.0
    et = np.empty((n_fr, n_lags))
    cl = np.empty(n_lags)
    sl = np.empty(n_lags)
    for l in range(n_lags):
        cl[l] = np.cos(theta * (1 - lag_lo - l))
        sl[l] = np.sin(theta * (1 - lag_lo - l))
    e0 = np.empty(n_fr)
    n_hops = n_fr + n_hw - 1
    for c in range(yp.shape[0]):
        y = yp[c]
        num = out[c]
        num[:] = 0.0
        for h in range(n_hops):
            _hann_hop_products(yp32[c], h * hop, cw, sw, lag_lo, n_lags, P0, Pc, Ps)
            for j in range(n_hw):
                m = h - j
                if m < 0 or m >= n_fr:
                    continue
                a = 0.5 * cj[j]
                b = 0.5 * sj[j]
                row = num[m]
                for l in range(n_lags):
                    row[l] += 0.5 * P0[l] - a * Pc[l] + b * Ps[l]
        # tapered energies: sum_n w[n] y[t + n]^2 = 0.5 S0 - 0.5 Re(e^{i theta (1 - tau)} T),
        # S0 / T the plain / e^{i theta k}-weighted sums of y^2 over the window at offset tau
        # (tau = 0 for the frame's own energy e0)
        emax = 0.0
        for m in range(n_fr):
            t0 = m * hop
            a0 = 0.0
            ac = 0.0
            a_s = 0.0
            for k in range(seg):
                v = y[t0 + k]
                v = v * v
                a0 += v
                ac += ce[k] * v
                a_s += se[k] * v
                q0[k + 1] = a0
                qc[k + 1] = ac
                qs[k + 1] = a_s
            e = 0.5 * q0[W] - 0.5 * (cl0 * qc[W] - sl0 * qs[W])
            e0[m] = e
            if e > emax:
                emax = e
            er = et[m]
            for l in range(n_lags):
                tau = lag_lo + l
                er[l] = 0.5 * (q0[tau + W] - q0[tau]) - 0.5 * (cl[l] * (qc[tau + W] - qc[tau])
                                                               - sl[l] * (qs[tau + W] - qs[tau]))
        thr = 1e-12 * max(emax, 1e-300)
        for m in range(n_fr):
            row = num[m]
            er = et[m]
            em = e0[m]
            for l in range(n_lags):  # branch-free (SIMD); den <= thr gives 0
                den = np.sqrt(max(er[l] * em, 0.0))
                ok = den > thr
                row[l] = (row[l] / (den if ok else 1.0)) if ok else 0.0


def hann_nccf(s: np.ndarray, n_fr: int, lag_lo: int, lag_hi: int, window: int) -> np.ndarray:
    """:func:`nccf` with the Hann taper for the lags ``lag_lo .. lag_hi`` only, computed from
    per-hop products (:func:`_hann_nccf_kernel`) instead of one FFT per frame; ``window`` must
    be a multiple of ``2 * HOP`` (then the windows sit on the hop grid).  The per-hop lagged
    products are float32 (SIMD, 8 lanes), the frame sums and energies float64: A moves by
    < 1e-6 (the tests bound it; the tracked f0 by ~1e-5 Hz on test signals).

    Returns
    -------
    A : ndarray, shape (C, n_fr, lag_hi - lag_lo + 1), float64
        ``A[:, :, l]`` is ``nccf(s, n_fr, lag_hi, window)[:, :, lag_lo + l]`` up to rounding.
    """
    if window % (2 * HOP) or not 0 <= lag_lo <= lag_hi:
        raise InputError(f"hann_nccf needs a window that is a multiple of {2 * HOP} and 0 <= lag_lo <= lag_hi, "
                         f"got {window}, {lag_lo}, {lag_hi}")
    s = np.asarray(s, dtype=np.float64)
    c_, n = s.shape
    n_hw = window // HOP
    n_lags = lag_hi - lag_lo + 1
    pad_l = window // 2 - FRAME_LEN // 2  # frame m's window starts at padded sample HOP m
    need = (n_fr + n_hw) * HOP + lag_hi + 8
    yp = np.zeros((c_, max(need, pad_l + n)))
    yp[:, pad_l: pad_l + n] = s
    out = np.empty((c_, n_fr, n_lags))
    _hann_nccf_kernel(yp, yp.astype(np.float32), n_fr, HOP, n_hw, lag_lo, n_lags, out)
    return out


def moving_average(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over frames m-k..m+k along axis 0, edges replicated (``uniform_filter1d`` with
    ``mode="nearest"``)."""
    a = np.asarray(a, dtype=np.float64)
    pad = np.concatenate([np.repeat(a[:1], k, axis=0), a, np.repeat(a[-1:], k, axis=0)], axis=0)
    cs = np.concatenate([np.zeros((1,) + a.shape[1:]), np.cumsum(pad, axis=0)], axis=0)
    return (cs[2 * k + 1:] - cs[: -2 * k - 1]) / (2 * k + 1)


def _candidates(S, lag_lo, lag_hi, n_cand, sr):
    """Local maxima of S (M, L) in [lag_lo, lag_hi], parabolic refinement; (M, n_cand) f and s."""
    m_ = S.shape[0]
    mid = S[:, lag_lo: lag_hi + 1]
    left = S[:, lag_lo - 1: lag_hi]
    right = S[:, lag_lo + 1: lag_hi + 2]
    is_pk = (mid >= left) & (mid > right) & (mid > 0)
    den = left - 2 * mid + right
    delta = np.where(is_pk & (den < 0), 0.5 * (left - right) / np.where(den < 0, den, -1.0), 0.0)
    val = mid - 0.25 * (left - right) * delta
    val = np.where(is_pk, val, -np.inf)
    k = min(n_cand, val.shape[1])
    order = np.argsort(-val, axis=1)[:, :k]
    rows = np.arange(m_)[:, None]
    s = val[rows, order]
    lag = lag_lo + order + delta[rows, order]
    f = np.where(np.isfinite(s), sr / lag, 0.0)
    s = np.where(np.isfinite(s), s, -np.inf)
    return f, s


def viterbi(f, s, s_unv, octave_jump_cost, voiced_unvoiced_cost):
    """Best path through candidates.

    Parameters
    ----------
    f, s : (M, K) candidate frequencies (Hz) and strengths (-inf = no candidate)
    s_unv : (M,) strength of the unvoiced candidate

    Returns
    -------
    f0 : (M,) chosen frequency, 0 for unvoiced
    """
    m_, k = f.shape
    ff = np.concatenate([f, np.zeros((m_, 1))], axis=1)  # last state = unvoiced
    ss = np.concatenate([s, s_unv[:, None]], axis=1)
    voiced = np.concatenate([np.ones(k, bool), [False]])
    logf = np.log2(np.where(ff > 0, ff, 1.0))
    score = ss[0].copy()
    back = np.zeros((m_, k + 1), dtype=np.int64)
    for t in range(1, m_):
        # trans[i, j]: cost from state i at t-1 to state j at t
        jump = octave_jump_cost * np.abs(logf[t - 1][:, None] - logf[t][None, :])
        vv = voiced[:, None] & voiced[None, :]
        uu = ~voiced[:, None] & ~voiced[None, :]
        trans = np.where(vv, jump, np.where(uu, 0.0, voiced_unvoiced_cost))
        tot = score[:, None] - trans
        back[t] = np.argmax(tot, axis=0)
        score = tot[back[t], np.arange(k + 1)] + ss[t]
    path = np.empty(m_, dtype=np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(m_ - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return ff[np.arange(m_), path]


def track(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = FMIN, fmax: float = FMAX, *,
          method: str = DEFAULT_METHOD, responses: np.ndarray | None = None,
          global_stats: tuple[float, float] | None = None, **options) -> np.ndarray:
    """Track the pitch of the dominant voice.

    Parameters
    ----------
    x : ndarray, shape (N,)
        Mono signal at 16 kHz (clean speech or a mixture).
    sr : int
        Sample rate; must be 16000.
    fmin, fmax : float
        Pitch search range in Hz (default 70-400).  The learned method restricts its states to
        the bins inside the range (which must lie within 70-400 Hz).
    method : {"learned", "correlogram"}
        The learned tracker (default) or the correlogram tracker (module docstring).
    responses : ndarray, shape (64, N), optional
        Learned method only: the gammatone responses of ``x - mean`` for the default
        64-channel filterbank (``gammatone.filterbank(x - mean)``, ``mean`` the signal's mean
        or the one in ``global_stats``), when the caller already has them.
    global_stats : (float, float), optional
        ``(mean, peak)`` of the whole file when ``x`` is one block of it (block-wise
        processing): ``mean`` is subtracted instead of the block's own mean (both methods), and
        the correlogram method's unvoiced strength uses ``peak`` (max ``|file - mean|``)
        instead of the block's peak.  The learned method uses no peak.
    **options
        Learned: ``net`` (a :class:`fastifkl.pitch_net.PitchNet`, default the shipped one).
        Correlogram: the keyword parameters of :func:`track_correlogram`.

    Returns
    -------
    f0 : ndarray, shape (M,)
        Pitch in Hz per frame, ``M = 1 + (N - 320) // 160``; 0 where unvoiced.
    """
    if global_stats is not None:
        try:
            g_mean, g_peak = (float(v) for v in global_stats)
        except (TypeError, ValueError):
            raise InputError(f"global_stats must be (mean, peak), got {global_stats!r}") from None
        if not (np.isfinite(g_mean) and np.isfinite(g_peak) and g_peak >= 0):
            raise InputError(f"global_stats must be a finite mean and a peak >= 0, got {global_stats!r}")
    if method == "correlogram":
        if responses is not None:
            raise InputError("the correlogram method computes its own 32-channel filterbank; do not pass responses")
        return track_correlogram(x, sr, fmin, fmax, global_stats=global_stats, **options)
    if method != "learned":
        raise InputError(f"method must be 'learned' or 'correlogram', got {method!r}")
    from . import pitch_net

    bad = sorted(set(options) - {"net"})
    if bad:
        raise InputError(f"the learned pitch tracker has no option {', '.join(map(repr, bad))}")
    x = _check_signal(x, sr)
    if not (FMIN - 1e-9 <= fmin < fmax <= FMAX + 1e-9):
        raise InputError(f"the learned tracker covers {FMIN:g}-{FMAX:g} Hz; need {FMIN:g} <= fmin < fmax <= "
                         f"{FMAX:g}, got {fmin}, {fmax}")
    x = x - (np.mean(x) if global_stats is None else g_mean)
    return pitch_net.track(x, responses=responses, net=options.get("net"), fmin=fmin, fmax=fmax)


def track_blocks(x: np.ndarray, block: float = 10.0, margin: float = 2.0, **kwargs) -> np.ndarray:
    """:func:`track` on overlapping blocks: each block of ``block`` seconds is tracked with
    ``margin`` seconds of signal on each side, and only its own frames are kept.

    Every block is tracked with the whole file's ``global_stats`` (mean, peak).  With the
    learned method (local statistics only) the result equals ``track(x)`` except on rare frames
    near block edges (tested); memory is bounded by the block length.
    """
    from .framing import n_frames

    x = _check_signal(x, kwargs.get("sr", SAMPLE_RATE))
    m_all = n_frames(x.size)
    bf = int(round(block * 100))
    mf = int(round(margin * 100))
    if bf < 1 or mf < 0:
        raise InputError(f"need block > 0 and margin >= 0 seconds, got {block}, {margin}")
    if "global_stats" in kwargs:
        raise InputError("track_blocks computes the file's global_stats itself")
    mean = float(np.mean(x))
    stats = (mean, float(np.max(np.abs(x - mean))))
    out = np.zeros(m_all)
    for m0 in range(0, m_all, bf):
        m1 = min(m_all, m0 + bf)
        a = max(0, m0 - mf)  # first frame tracked
        b = min(m_all, m1 + mf)  # one past the last frame tracked
        seg = x[a * HOP: (b - 1) * HOP + FRAME_LEN]
        f = track(seg, global_stats=stats, **kwargs)
        out[m0:m1] = f[m0 - a: m1 - a]
    return out


def track_correlogram(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = FMIN, fmax: float = FMAX, *,
          n_channels: int = 32, fmin_cf: float = 80.0, fmax_cf: float = 4000.0, split_hz: float = 800.0,
          window: int = 640, select: float = 0.8, n_min: float = 0.25, n_cand: int = 8, octave_cost: float = 0.01,
          octave_jump_cost: float = 0.35, voiced_unvoiced_cost: float = 0.14,
          smooth: int = 2, prominence: bool = True, taper: bool = True, stationary: float | None = None,
          voicing_threshold: float = 0.4, silence_threshold: float = 0.03,
          global_stats: tuple[float, float] | None = None) -> np.ndarray:
    """Track the pitch of the dominant voice with the correlogram method (module docstring).

    Parameters
    ----------
    x, sr, fmin, fmax :
        As in :func:`track` (16 kHz mono; pitch search range in Hz, default 70-400).
    global_stats : (float, float), optional
        The file's ``(mean, peak)`` when ``x`` is a block of it (see :func:`track`).
    Other keyword parameters: see the module docstring.

    Returns
    -------
    f0 : ndarray, shape (M,)
        Pitch in Hz per frame, ``M = 1 + (N - 320) // 160``; 0 where unvoiced.
    """
    from .features.pitch_features import pitch_envelope
    from .gammatone import erb_space, filterbank

    x = _check_signal(x, sr)
    if not (0 < fmin < fmax < sr / 4):
        raise InputError(f"need 0 < fmin < fmax < {sr / 4} Hz, got {fmin}, {fmax}")
    m_ = n_frames(x.size)
    x = x - (np.mean(x) if global_stats is None else float(global_stats[0]))
    lag_lo = int(np.floor(sr / fmax))
    lag_hi = int(np.ceil(sr / fmin))
    cfs = erb_space(fmin_cf, fmax_cf, n_channels)
    r = filterbank(x, sr, cfs)
    hi = cfs >= split_hz
    if np.any(hi):
        r[hi] = pitch_envelope(r[hi], sr)
    # only the lags lag_lo - 1 .. lag_hi + 1 are used below (peaks, candidates, prominence)
    if taper and window % (2 * HOP) == 0 and lag_lo >= 1:
        A = hann_nccf(r, m_, lag_lo - 1, lag_hi + 1, window)  # (C, M, L) from lag lag_lo - 1
        a0 = lag_lo - 1
    else:
        A = nccf(r, m_, lag_hi + 1, window, taper)  # (C, M, L) from lag 0
        a0 = 0
    peak = A[:, :, lag_lo - a0: lag_hi + 1 - a0].max(axis=2)  # (C, M)
    sel = peak > select
    n_sel = sel.sum(axis=0)
    S = np.zeros((m_, lag_hi + 2))
    S[:, a0:] = np.einsum("cm,cml->ml", sel.astype(np.float64), A)
    S /= np.maximum(n_sel, max(n_min * n_channels, 1.0))[:, None]
    if stationary is not None:
        # remove periodicity that is there all the time (hum, steady tones): subtract a low
        # percentile over frames of the summary at each lag
        S = S - np.percentile(S, stationary, axis=0)[None, :]
    if smooth > 0:
        S = moving_average(S, smooth)
        n_sel = moving_average(n_sel.astype(np.float64), smooth)
    f, s = _candidates(S, lag_lo, lag_hi, n_cand, sr)
    if prominence:
        s = s - S[:, lag_lo: lag_hi + 1].mean(axis=1, keepdims=True)
    s = s + octave_cost * np.log2(np.where(f > 0, f, fmin) / fmin)
    # unvoiced strength from the local peak amplitude (Praat's rule)
    half = window // 2
    xp = np.concatenate([np.zeros(half), np.abs(x), np.zeros(half)])
    starts = np.arange(m_) * HOP + FRAME_LEN // 2  # window centred at the frame centre
    from numpy.lib.stride_tricks import sliding_window_view

    loc = sliding_window_view(xp, window)[starts].max(axis=1)
    gmax = max(float(np.abs(x).max()) if global_stats is None else float(global_stats[1]), 1e-300)
    s_unv = voicing_threshold + np.maximum(0.0, 2.0 - (loc / gmax) / (silence_threshold / (1.0 + voicing_threshold)))
    s = np.where(n_sel[:, None] > 0, s, -np.inf)
    return viterbi(f, s, s_unv, octave_jump_cost, voiced_unvoiced_cost)
