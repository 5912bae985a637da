"""Train the learned pitch tracker's network (:mod:`fastifkl.pitch_net`).

    python -m fastifkl.pitch_train --corpus ../shared/corpus [--out fastifkl/data/pitch_net.fkl]

Deterministic under ``--seed`` (default 0): every utterance's augmentation, noise and SNR draws
come from its own ``default_rng([seed, index])``, features are computed in worker processes but
collected in order, and training runs single-threaded BLAS.  Needs praat-parselmouth (the
``train`` or ``test`` extra) for the labels and the talker augmentation.

Data (only training material of the corpus, MANIFEST.tsv):

- speech: the TTS utterances of splits ``kernel``, ``svm`` and ``spare`` and the real ``tune``
  utterances (``--splits``); never ``test``;
- talkers: each utterance as recorded plus ``--n-aug`` versions through Praat's "Change
  gender" (REFERENCE section 12) with a pitch median drawn uniformly from 110-320 Hz, a formant
  ratio rising with it (1.0 at 110 Hz to 1.2 at 320 Hz, +-0.05) and a pitch-range factor in
  0.8-1.4, so that female and child-like voices up to 400 Hz are covered (both corpus talkers
  are male);
- labels: Praat's autocorrelation pitch (``to_pitch_ac``, 70-400 Hz, 10 ms, defaults
  otherwise) of each clean version at our frame centres, quantised to the nearest of the 60
  bins (soft targets: a Gaussian of ``--sigma`` bins around the exact value);
- conditions: the clean version and ``--n-cond`` mixtures, each with a training noise
  (``--noises``: ssn, pink, street, fridge, dishes) at an SNR drawn from ``--snrs``.  With
  probability ``--p-aug`` the noise is transformed first (speed 0.6-1.7x by resampling, which
  moves a hum's pitch; a random +-12 dB equaliser; slow amplitude modulation; the sum of two
  noises), so the network meets more than five noises.  The test noises are never used.

Network: :class:`fastifkl.pitch_net.PitchNet`, trained with Adam (lr ``--lr``, cosine decay,
batch 512) on the cross-entropy against the soft targets for ``--epochs`` epochs.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from . import SAMPLE_RATE
from .errors import InputError

TRAIN_NOISES = ("ssn", "pink", "street", "fridge", "dishes")
TRAIN_SPLITS = ("kernel", "svm", "spare", "tune")
HELD_OUT_SPLITS = ("test", "test_real", "tune_real")
DEFAULT_SNRS = (-10.0, -5.0, -5.0, 0.0, 5.0, 10.0, 20.0)


# ---------------------------------------------------------------------------------------------
# Labels and augmentation (Praat)


def praat_pitch(x: np.ndarray) -> np.ndarray:
    """Praat's AC pitch (70-400 Hz, 10 ms step) at our frame centres ``(160 m + 160) / 16000`` s,
    0 = unvoiced; shape (M,)."""
    import parselmouth

    from .framing import n_frames

    p = parselmouth.Sound(x, sampling_frequency=SAMPLE_RATE).to_pitch_ac(time_step=0.01, pitch_floor=70.0,
                                                                         pitch_ceiling=400.0)
    f, xs = p.selected_array["frequency"], p.xs()
    m = n_frames(x.size)
    idx = np.rint(((np.arange(m) * 160 + 160) / SAMPLE_RATE - xs[0]) / 0.01).astype(int)
    out = np.zeros(m)
    ok = (idx >= 0) & (idx < f.size)
    out[ok] = f[idx[ok]]
    return out


def talker_versions(x: np.ndarray, rng: np.random.Generator, n_aug: int) -> list[tuple[np.ndarray, str]]:
    """``x`` as recorded plus ``n_aug`` versions through :func:`fastifkl.augment.change_gender`."""
    from .augment import change_gender

    out = [(x, "orig")]
    for _ in range(n_aug):
        med = float(rng.uniform(110.0, 320.0))
        fr = float(1.0 + 0.2 * (med - 110.0) / 210.0 + rng.uniform(-0.05, 0.05))
        rf = float(rng.uniform(0.8, 1.4))
        seed = int(rng.integers(1, 2 ** 31 - 1))
        y = change_gender(x, fr, med, pitch_range=rf, seed=seed)
        out.append((y, f"gender({med:.0f} Hz, formants x{fr:.2f}, range x{rf:.2f})"))
    return out


# ---------------------------------------------------------------------------------------------
# Noise


def _cut(v: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if v.size >= n:
        o = int(rng.integers(0, v.size - n + 1))
        return v[o: o + n]
    return np.resize(v, n)


def augmented_noise(noises: dict[str, np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of transformed training noise (see the module docstring)."""
    from scipy.signal import resample_poly

    names = sorted(noises)

    def one() -> np.ndarray:
        v = noises[names[int(rng.integers(len(names)))]]
        seg = min(v.size, 8 * SAMPLE_RATE)
        o = int(rng.integers(0, v.size - seg + 1))
        v = v[o: o + seg]
        if rng.random() < 0.5:
            fac = float(np.exp(rng.uniform(np.log(0.6), np.log(1.7))))
            v = resample_poly(v, 64, int(round(64 * fac)))
        return _cut(v, n, rng)

    v = one()
    if rng.random() < 0.3:
        w = one()
        g = 10 ** (rng.uniform(-6, 6) / 20)
        v = v / (np.std(v) + 1e-12) + g * w / (np.std(w) + 1e-12)
    if rng.random() < 0.5:
        f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
        knots = np.log([50, 100, 200, 400, 800, 1600, 3200, 6400, 8000.0])
        gdb = np.interp(np.log(np.maximum(f, 50)), knots, rng.uniform(-12, 12, knots.size))
        v = np.fft.irfft(np.fft.rfft(v) * 10 ** (gdb / 20), n)
    if rng.random() < 0.3:
        t = np.arange(n) / SAMPLE_RATE
        k = int(rng.integers(1, 4))
        env = sum(np.sin(2 * np.pi * rng.uniform(0.3, 6) * t + rng.uniform(0, 2 * np.pi)) for _ in range(k))
        v = v * 10 ** (rng.uniform(0.3, 1.0) * 10 * env / k / 20)
    return v


def _noise_segment(v: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A segment with audible noise (>= 1 % of the file's mean power), looping short files."""
    from .audio import noise_segment

    mp = float(np.mean(v * v))
    for _ in range(200):
        off = int(rng.integers(0, v.size - n + 1)) if v.size >= n else int(rng.integers(0, v.size))
        seg = noise_segment(v, n, off)
        if float(np.mean(seg * seg)) >= 0.01 * mp:
            return seg
    raise InputError("found no audible noise segment")


# ---------------------------------------------------------------------------------------------
# One utterance -> features and labels


def utterance_job(job: dict) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """Features (M, D) float16, Praat pitch (M,) and a description for every condition."""
    from .audio import load, mix_at_snr
    from .framing import n_frames
    from .gammatone import erb_space, filterbank
    from .periodicity import FrontEnd, frame_features

    rng = np.random.default_rng(job["seed"])
    x = load(job["speech"])
    noises = {k: load(p) for k, p in job["noises"].items()}
    fe = FrontEnd.from_dict(job["front_end"])
    cfs = erb_space()
    out = []
    for y, tag in talker_versions(x, rng, job["n_aug"]):
        lab = praat_pitch(y)
        conds = [("clean", None, None)]
        for _ in range(job["n_cond"]):
            snr = float(rng.choice(job["snrs"]))
            if rng.random() < job["p_aug"]:
                conds.append(("augmented", snr, augmented_noise(noises, y.size, rng)))
            else:
                k = sorted(noises)[int(rng.integers(len(noises)))]
                conds.append((k, snr, _noise_segment(noises[k], y.size, rng)))
        for name, snr, v in conds:
            if v is None:
                mx = y
            elif float(np.dot(v, v)) <= 0:
                continue
            else:
                mx = mix_at_snr(y, v, snr, offset=0).mixture
            r = filterbank(mx, SAMPLE_RATE, cfs, dtype=np.float32)
            F, _ = frame_features(r, cfs, fe, n_frames(mx.size))
            desc = {"speech": job["name"], "talker": tag, "noise": name, "snr_db": snr}
            out.append((F.astype(np.float16), lab, desc))
    return out


def corpus_items(corpus: Path, splits, noise_names) -> tuple[list[Path], dict[str, Path]]:
    man = corpus / "MANIFEST.tsv"
    if not man.is_file():
        raise InputError(f"{man}: corpus manifest not found")
    with open(man, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    held = sorted(set(splits) & set(HELD_OUT_SPLITS))
    if held:
        raise InputError(f"the pitch network must not train on the held-out split(s) {', '.join(held)} "
                         "(test material, or tune_real, on which the training speech is chosen)")
    speech = sorted(corpus / r["file"] for r in rows if r["kind"] == "speech" and r["split"] in splits)
    noise = {r["label"]: corpus / r["file"] for r in rows if r["kind"] == "noise" and r["label"] in noise_names}
    missing = sorted(set(noise_names) - set(noise))
    if missing:
        raise InputError(f"{man}: training noise(s) {', '.join(missing)} not in the corpus")
    if not speech:
        raise InputError(f"{man}: no speech in splits {', '.join(splits)}")
    return speech, noise


# ---------------------------------------------------------------------------------------------
# Network training (NumPy, Adam)


def soft_targets(f0: np.ndarray, bins: np.ndarray, sigma: float) -> np.ndarray:
    """(M, 1 + K) targets: unvoiced one-hot, voiced a Gaussian of ``sigma`` bins in log f."""
    t = np.zeros((f0.size, 1 + bins.size), dtype=np.float32)
    v = f0 > 0
    t[~v, 0] = 1.0
    pos = (np.log(f0[v]) - np.log(bins[0])) / np.log(bins[1] / bins[0])
    g = np.exp(-0.5 * ((np.arange(bins.size)[None, :] - pos[:, None]) / sigma) ** 2)
    t[v, 1:] = g / g.sum(axis=1, keepdims=True)
    return t


class _Net:
    """Trainable twin of :class:`PitchNet` (same forward pass on batches of frames)."""

    def __init__(self, d, h1, offsets, hidden, n_out, rng):
        sizes = [len(offsets) * h1] + list(hidden) + [n_out]
        self.offsets = list(offsets)
        self.W = [(rng.standard_normal((d, h1)) * np.sqrt(2.0 / d)).astype(np.float32)]
        self.W += [(rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32)
                   for a, b in zip(sizes[:-1], sizes[1:])]
        self.b = [np.zeros(h1, np.float32)] + [np.zeros(b, np.float32) for b in sizes[1:]]

    def forward(self, xo):
        n_off, bs, d = xo.shape
        h1 = np.maximum(xo.reshape(n_off * bs, d) @ self.W[0] + self.b[0], 0)
        h = h1.reshape(n_off, bs, -1).transpose(1, 0, 2).reshape(bs, -1)
        hs = [h]
        for i in range(1, len(self.W)):
            z = h @ self.W[i] + self.b[i]
            h = np.maximum(z, 0) if i < len(self.W) - 1 else z
            hs.append(h)
        return h, (xo, h1, hs)

    def backward(self, g, cache):
        xo, h1, hs = cache
        n_off, bs, d = xo.shape
        gw, gb = [None] * len(self.W), [None] * len(self.W)
        for i in range(len(self.W) - 1, 0, -1):
            gw[i] = hs[i - 1].T @ g
            gb[i] = g.sum(axis=0)
            g = g @ self.W[i].T
            if i > 1:
                g = g * (hs[i - 1] > 0)
        g = g.reshape(bs, n_off, -1).transpose(1, 0, 2).reshape(n_off * bs, -1) * (h1 > 0)
        gw[0] = xo.reshape(n_off * bs, d).T @ g
        gb[0] = g.sum(axis=0)
        return gw, gb


def fit_network(X, T, seg, *, h1, hidden, offsets, epochs, lr, seed, batch=512, log=print):
    """Adam on the soft-target cross-entropy; X (n, D) float16, T (n, S), seg utterance bounds."""
    from ._threads import blas_single_thread

    rng = np.random.default_rng([seed, 1])
    n, d = X.shape
    sub = X[:: max(1, n // 100000)].astype(np.float32)
    mean = sub.mean(axis=0)
    scale = sub.std(axis=0) + 1e-3
    lo = np.repeat(seg[:-1], np.diff(seg))
    hi = np.repeat(seg[1:], np.diff(seg)) - 1
    net = _Net(d, h1, offsets, hidden, T.shape[1], rng)
    params = net.W + net.b
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    with blas_single_thread():
        for ep in range(epochs):
            t0 = time.perf_counter()
            perm = rng.permutation(n)
            lr_ep = lr * 0.5 * (1 + np.cos(np.pi * ep / epochs))
            tot = 0.0
            for i in range(0, n, batch):
                idx = np.sort(perm[i: i + batch])
                xo = np.stack([(X[np.clip(idx + o, lo[idx], hi[idx])].astype(np.float32) - mean) / scale
                               for o in net.offsets])
                out, cache = net.forward(xo)
                z = out - out.max(axis=1, keepdims=True)
                p = np.exp(z)
                p /= p.sum(axis=1, keepdims=True)
                tb = T[idx]
                tot -= float(np.sum(tb * np.log(p + 1e-12)))
                gw, gb = net.backward((p - tb) / idx.size, cache)
                step += 1
                for j, (prm, g) in enumerate(zip(params, gw + gb)):
                    m1[j] = b1 * m1[j] + (1 - b1) * g
                    m2[j] = b2 * m2[j] + (1 - b2) * g * g
                    upd = lr_ep * (m1[j] / (1 - b1 ** step)) / (np.sqrt(m2[j] / (1 - b2 ** step)) + eps)
                    prm -= upd.astype(np.float32)
            log(f"epoch {ep + 1}/{epochs}: loss {tot / n:.4f} ({time.perf_counter() - t0:.0f} s)")
    return net, mean, scale


# ---------------------------------------------------------------------------------------------
# Command


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m fastifkl.pitch_train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "corpus")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "pitch_net.fkl")
    ap.add_argument("--splits", default=",".join(TRAIN_SPLITS))
    ap.add_argument("--noises", default=",".join(TRAIN_NOISES))
    ap.add_argument("--snrs", default=",".join(f"{s:g}" for s in DEFAULT_SNRS))
    ap.add_argument("--n-aug", type=int, default=3)
    ap.add_argument("--n-cond", type=int, default=6)
    ap.add_argument("--p-aug", type=float, default=0.7)
    ap.add_argument("--sigma", type=float, default=0.7)
    ap.add_argument("--h1", type=int, default=128)
    ap.add_argument("--hidden", default="256")
    ap.add_argument("--offsets", default="-4,-2,0,2,4")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=None, help="save/reuse the generated training set (.npz)")
    return ap


def main(argv=None) -> int:
    from .periodicity import FrontEnd, bin_centres
    from .pitch_net import PitchNet, states_from_f0, transition_matrix

    a = build_parser().parse_args(argv)
    t_start = time.perf_counter()
    fe = FrontEnd()
    splits = [s for s in a.splits.split(",") if s]
    noise_names = [s for s in a.noises.split(",") if s]
    snrs = [float(s) for s in a.snrs.split(",")]
    speech, noises = corpus_items(a.corpus, splits, noise_names)
    bins = bin_centres(fe.fmin, fe.fmax, fe.n_bins)
    if a.cache is not None and a.cache.is_file():
        z = np.load(a.cache)
        X, f0, seg = z["X"], z["f0"], z["seg"]
        print(f"training set from {a.cache}: {X.shape[0]} frames", flush=True)
    else:
        noise_paths = {k: str(v) for k, v in noises.items()}
        jobs = [{"speech": str(p), "name": p.name, "seed": [a.seed, i], "noises": noise_paths,
                 "n_aug": a.n_aug, "n_cond": a.n_cond, "snrs": snrs, "p_aug": a.p_aug, "front_end": fe.to_dict()}
                for i, p in enumerate(speech)]
        parts = []
        if a.workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(a.workers) as ex:
                for k, res in enumerate(ex.map(utterance_job, jobs)):
                    parts.extend(res)
                    print(f"\rfeatures: {k + 1}/{len(jobs)} utterances", end="", flush=True)
        else:
            for k, job in enumerate(jobs):
                parts.extend(utterance_job(job))
                print(f"\rfeatures: {k + 1}/{len(jobs)} utterances", end="", flush=True)
        print(flush=True)
        X = np.concatenate([p[0] for p in parts])
        f0 = np.concatenate([p[1] for p in parts])
        seg = np.cumsum([0] + [p[0].shape[0] for p in parts])
        if a.cache is not None:
            np.savez(a.cache, X=X, f0=f0, seg=seg)
    t_feat = time.perf_counter() - t_start
    print(f"{X.shape[0]} frames x {X.shape[1]} features ({t_feat:.0f} s)", flush=True)
    # transitions from the label tracks (each clean version once: conditions repeat its labels)
    tracks, seen = [], set()
    for s0, s1 in zip(seg[:-1], seg[1:]):
        key = f0[s0:s1].tobytes()
        if key not in seen:
            seen.add(key)
            tracks.append(states_from_f0(f0[s0:s1], bins))
    log_trans = transition_matrix(tracks, fe.n_bins)
    T = soft_targets(f0, bins, a.sigma)
    offsets = [int(o) for o in a.offsets.split(",")]
    hidden = [int(h) for h in a.hidden.split(",") if h]
    net, mean, scale = fit_network(X, T, seg, h1=a.h1, hidden=hidden, offsets=offsets, epochs=a.epochs, lr=a.lr,
                                   seed=a.seed, log=lambda s: print(s, flush=True))
    info = {"command": "python -m fastifkl.pitch_train " + " ".join(sys.argv[1:] if argv is None else argv),
            "speech": [p.name for p in speech], "noises": sorted(noises), "splits": splits, "snrs_db": snrs,
            "n_aug": a.n_aug, "n_cond": a.n_cond, "p_aug": a.p_aug, "sigma": a.sigma, "epochs": a.epochs, "lr": a.lr,
            "seed": a.seed, "frames": int(X.shape[0]), "labels": "praat to_pitch_ac 70-400 Hz on the clean speech"}
    pn = PitchNet(fe, mean.astype(np.float32), scale.astype(np.float32), net.W, net.b, tuple(offsets), log_trans,
                  info=json.loads(json.dumps(info)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    pn.save(a.out)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB) in {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
