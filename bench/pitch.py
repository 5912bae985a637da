"""Pitch trackers in noise: fastifkl's learned tracker (the default) and its correlogram
tracker against Praat and WORLD Harvest, all run on the mixture and scored against Praat on the
clean utterance.

    python bench/pitch.py [--quick] [--snrs -5,0] [--real-utts 3] [--net NET] [--cache PKL]  # run, append a JSON line
    python bench/pitch.py --table       # docs/PITCH.md's tables from the last full run with the shipped network

Material, two sections:

- ``ieee``: the real ``test`` utterances of ../shared/corpus (10, IEEE list 2, the talker of the
  ``tune`` split);
- ``test_real``: the first ``--real-utts`` utterances (MANIFEST order) of each of the 4
  ``test_real`` talkers (LibriSpeech 3331 F and 3005 M, VCTK p228 F and p227 M), as in
  bench/quality.py's ``test_real`` section;

each clean and mixed with each noise at each SNR.  Mixing is DC-free: the utterance's mean and
the noise segment's mean are removed before the segment is scaled to the SNR
(``fastifkl.audio.mix_at_snr``; noise offset from ``default_rng(utterance index + 1000 k)``, k
the first draw whose segment is not silent), so the stated SNR is the SNR of the signals'
AC parts.  Noises: the 12 unseen test noises (the acceptance set) at every SNR; in the ``ieee``
section also the spare noise ``brown`` and the 5 training noises at the first SNR only (listed
separately: the learned tracker trained on the training noises).

Reference: Praat's AC pitch (praat-parselmouth ``to_pitch_ac``, 70-400 Hz, 10 ms step) of the
clean utterance, sampled at our frame centres (160 m + 160) / 16000 s.  GPE = share of the
frames that both call voiced with |f0 - ref| > 20 % ref, *missing* (None, not 0) when the
tracker voices none of the reference's voiced frames in a condition; VDE = share of all frames
with a different voicing decision; pooled over the utterances of a condition.  Means over the
noises leave a missing GPE out and say how many were missing.

Peers on the mixture: Praat (same call as the reference) and WORLD Harvest (pyworld
``harvest``, 70-400 Hz, 10 ms frame period).  Speed: process CPU seconds per second of audio,
one thread, over the clean utterances and the mixtures at the first SNR (the learned tracker
also with the 64-channel gammatone responses given, as the separator could).  ``--cache``: the
peers' tracks and times are kept in a scratch pickle and reused (they do not depend on the
network).  --quick: -5 dB only, 4 IEEE utterances and 1 per ``test_real`` talker, no correlogram
method.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"  # one core

import csv
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_bench_common", _here / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)
record, RESULTS = _common.record, _common.RESULTS

SR = 16000
CORPUS = Path(os.environ.get("FASTIFKL_CORPUS", _here.parents[1] / "shared" / "corpus"))
TEST_NOISES = ("white", "babble", "cafe", "train", "exercise_bike", "running_tap", "alarm", "ring", "rain", "wind",
               "forest", "fireplace")
SPARE = ("brown",)
TRAIN_NOISES = ("ssn", "pink", "street", "fridge", "dishes")
DOC = _here.parent / "docs" / "PITCH.md"
BEGIN, END = "<!-- pitch-bench:begin -->", "<!-- pitch-bench:end -->"
EDGE = 2  # frames: a voicing error this close to a voicing change of the reference is an "edge" error


def at_frames(times: np.ndarray, f: np.ndarray, m: int) -> np.ndarray:
    """Values of a track with frame times ``times`` (s) at our frame centres (nearest)."""
    c = (np.arange(m) * 160 + 160) / SR
    step = times[1] - times[0] if times.size > 1 else 0.01
    idx = np.rint((c - times[0]) / step).astype(int)
    out = np.zeros(m)
    ok = (idx >= 0) & (idx < f.size)
    out[ok] = f[idx[ok]]
    return out


def praat(x: np.ndarray) -> np.ndarray:
    from fastifkl.pitch_train import praat_pitch

    return praat_pitch(x)


def harvest(x: np.ndarray) -> np.ndarray:
    import pyworld

    from fastifkl.framing import n_frames

    f, t = pyworld.harvest(np.ascontiguousarray(x, dtype=np.float64), SR, f0_floor=70.0, f0_ceil=400.0,
                           frame_period=10.0)
    return at_frames(t, f, n_frames(x.size))


def mixture(x: np.ndarray, noise: np.ndarray, snr: float, i: int) -> np.ndarray:
    """DC-free mixture of utterance ``x`` (index ``i``) with a segment of ``noise`` at ``snr`` dB:
    both means removed before scaling; the offset drawn as ``mix_at_snr`` draws it."""
    from fastifkl.audio import mix_at_snr, noise_segment

    s = x - np.mean(x)
    n = x.size
    for k in range(20):
        rng = np.random.default_rng(i + 1000 * k)
        hi = max(1, noise.size - n + 1) if noise.size >= n else noise.size
        offset = int(rng.integers(0, hi))
        seg = noise_segment(noise, n, offset)
        seg = seg - np.mean(seg)
        if float(np.dot(seg, seg)) > 0:
            return mix_at_snr(s, seg, snr, offset=0).mixture
    raise RuntimeError("no non-silent noise segment found")


class Score:
    def __init__(self):
        self.gross = self.both = self.vd = self.total = self.miss = self.fa = self.vd_edge = 0

    def add(self, est: np.ndarray, ref: np.ndarray) -> None:
        b = (est > 0) & (ref > 0)
        self.both += int(b.sum())
        self.gross += int(np.sum(np.abs(est[b] - ref[b]) > 0.2 * ref[b]))
        self.vd += int(np.sum((est > 0) != (ref > 0)))
        self.miss += int(np.sum((est == 0) & (ref > 0)))
        self.fa += int(np.sum((est > 0) & (ref == 0)))
        self.total += ref.size

        # voicing errors within EDGE frames of a voicing change of the reference: mostly the
        # reference's own convention for where voicing starts and ends
        chg = np.flatnonzero(np.diff((ref > 0).astype(np.int8))) + 0.5
        near = np.zeros(ref.size, bool)
        for c in chg:
            near[max(0, int(np.ceil(c - EDGE))): int(np.floor(c + EDGE)) + 1] = True
        self.vd_edge += int(np.sum(((est > 0) != (ref > 0)) & near))

    def as_dict(self) -> dict:
        # no frame voiced by both: the GPE is undefined (missing), not 0
        return {"gpe": self.gross / self.both if self.both else None, "vde": self.vd / max(self.total, 1),
                "missed_voiced": self.miss, "false_voiced": self.fa, "frames": self.total,
                "voicing_errors_near_ref_edges": self.vd_edge}


def section_files(rows: list[dict], quick: bool, real_utts: int) -> dict[str, list[str]]:
    """The utterances of each section (corpus-relative paths)."""
    ieee = sorted(r["file"] for r in rows if r["split"] == "test" and r["file"].startswith("speech/ieee_real/"))
    if not ieee:
        raise SystemExit(f"no real test utterances in {CORPUS}")
    per_talker: dict[str, list[str]] = {}
    for r in rows:  # MANIFEST order
        if r["kind"] == "speech" and r["split"] == "test_real":
            per_talker.setdefault(r["label"], []).append(r["file"])
    k = 1 if quick else real_utts
    real = [f for fs in per_talker.values() for f in fs[:k]]
    out = {"ieee": ieee[:4] if quick else ieee}
    if real:
        out["test_real"] = real
    return out


def run(quick: bool, snrs: list[float], net_path: str | None = None, cache: str | None = None,
        real_utts: int = 3) -> dict:
    """Score every tracker on every condition of both sections; append a JSON line.  ``cache``:
    a pickle of the peers' tracks and CPU times (Praat, Harvest, the correlogram method: they do
    not change with the network), reused when present."""
    import pickle

    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from fastifkl import pitch, pitch_net
    from fastifkl.gammatone import filterbank

    threadpool_limits(1)
    rows = list(csv.DictReader(open(CORPUS / "MANIFEST.tsv"), delimiter="\t"))
    sections = section_files(rows, quick, real_utts)
    net = pitch_net.load(net_path)
    trackers = {
        "ours": lambda y: pitch.track(y, method="learned", net=net),
        "ours_given_responses": None,  # timed only (same output as "ours")
        "praat": praat,
        "harvest": harvest,
    }
    if not quick:
        trackers["ours_correlogram"] = lambda y: pitch.track(y, method="correlogram")
    peers = {"praat", "harvest", "ours_correlogram"}
    store = {}
    if cache and Path(cache).is_file():
        with open(cache, "rb") as fh:
            store = pickle.load(fh)
    first = sf.read(CORPUS / sections["ieee"][0])[0]
    pitch.track(first, method="learned", net=net)  # compile / load before timing
    pitch.track(first, method="correlogram")
    cpu = {k: 0.0 for k in trackers}
    timed_secs = 0.0
    noise_audio = {n: sf.read(CORPUS / "noise" / f"{n}.flac")[0] for n in TEST_NOISES + SPARE + TRAIN_NOISES}
    results = []
    seconds = {}
    for section, files in sections.items():
        utts = [sf.read(CORPUS / f)[0] for f in files]
        refs = [praat(x) for x in utts]
        seconds[section] = sum(x.size for x in utts) / SR
        conds = [("clean", None, None)]
        for snr in snrs:
            names = TEST_NOISES + ((SPARE + TRAIN_NOISES) if (snr == snrs[0] and section == "ieee") else ())
            conds += [(n, snr, noise_audio[n]) for n in names]
        for name, snr, noise in conds:
            scores = {k: Score() for k in trackers if k != "ours_given_responses"}
            for i, (x, ref) in enumerate(zip(utts, refs)):
                y = x if noise is None else mixture(x, noise, snr, i)
                timed = snr == snrs[0] or noise is None
                for k, fn in trackers.items():
                    if k == "ours_given_responses":
                        if timed:
                            r = filterbank(y - np.mean(y), SR, dtype=np.float32)
                            t0 = time.process_time()
                            pitch.track(y, responses=r, method="learned", net=net)
                            cpu[k] += time.process_time() - t0
                        continue
                    key = (files[i], name, snr, k, "dc-free")
                    if k in peers and key in store:
                        est, dt = store[key]
                    else:
                        t0 = time.process_time()
                        est = fn(y)
                        dt = time.process_time() - t0
                        if k in peers:
                            store[key] = (est, dt)
                    if timed:
                        cpu[k] += dt
                    scores[k].add(est, ref)
                if timed:
                    timed_secs += y.size / SR
            row = {"section": section, "noise": name, "snr_db": snr, "group": group_of(name),
                   **{k: sc.as_dict() for k, sc in scores.items()}}
            results.append(row)
            print(f"  {section:9s} {name:14s} {'' if snr is None else f'{snr:+.0f} dB':7s} "
                  + "  ".join(f"{k} {_pct(sc.as_dict()['gpe'])}/{100 * sc.as_dict()['vde']:5.1f}"
                              for k, sc in scores.items()), flush=True)
        if cache:
            with open(cache, "wb") as fh:
                pickle.dump(store, fh)
    s_per_s = {k: v / timed_secs for k, v in cpu.items()}
    print("CPU s per s of audio (one thread): " + ", ".join(f"{k} {v:.4f}" for k, v in s_per_s.items()))
    load = os.getloadavg()
    payload = {"mode": "quick" if quick else "full", "sections": sections, "utterances": sections["ieee"],
               "seconds_audio_clean": seconds, "snrs_db": snrs, "mixing": "dc-free",
               "reference": "praat to_pitch_ac 70-400 Hz on the clean utterance", "results": results,
               "cpu_s_per_s": s_per_s, "timed_seconds_audio": timed_secs, "load_avg": list(load),
               "edge_frames": EDGE, "pitch_net": pitch_net_info(net_path), "default_method": pitch.DEFAULT_METHOD}
    print(acceptance_text(payload))
    record("pitch", payload)
    return payload


def _pct(v) -> str:
    return "  n/a" if v is None else f"{100 * v:5.1f}"


def pitch_net_info(net_path: str | None = None) -> dict:
    from fastifkl import pitch_net

    net = pitch_net.load(net_path)
    p = Path(net_path) if net_path else pitch_net.DEFAULT_WEIGHTS
    return {"file": p.name, "bytes": p.stat().st_size, "frames": net.info.get("frames"), "seed": net.info.get("seed")}


def group_of(name: str) -> str:
    if name == "clean":
        return "clean"
    return "test" if name in TEST_NOISES else "spare" if name in SPARE else "train"


# ---------------------------------------------------------------------------------------------
# docs/PITCH.md tables


def _mean(rows, key, metric):
    """Mean of a metric over rows, leaving out missing values: (mean or None, number missing)."""
    vals = [r[key][metric] for r in rows if r[key][metric] is not None]
    return (float(np.mean(vals)) if vals else None), len(rows) - len(vals)


def _fmt_mean(rows, key, metric) -> str:
    m, miss = _mean(rows, key, metric)
    txt = "n/a" if m is None else f"{100 * m:.1f}"
    return txt + (f" ({miss} missing)" if miss else "")


LABELS = {"ours": "fastifkl learned (default)", "ours_correlogram": "fastifkl correlogram", "praat": "Praat",
          "harvest": "WORLD Harvest"}
SECTION_TITLES = {"ieee": "IEEE test talker (10 real `test` utterances, male)",
                  "test_real": "`test_real` talkers (LibriSpeech 3331 F, 3005 M; VCTK p228 F, p227 M)"}


def acceptance(run_row: dict) -> dict:
    """Issue 19's pitch criteria per section for the learned (default) tracker: the mean over the
    12 test noises of GPE and VDE at -5 dB, and the clean GPE."""
    out = {}
    res = run_row["results"]
    for section in run_row.get("sections", {"ieee": None}):
        rows = [r for r in res if r.get("section", "ieee") == section]
        test = [r for r in rows if r["snr_db"] == -5.0 and r["group"] == "test"]
        clean = [r for r in rows if r["noise"] == "clean"]
        if not test or not clean:
            continue
        gpe, miss = _mean(test, "ours", "gpe")
        vde, _ = _mean(test, "ours", "vde")
        cg = clean[0]["ours"]["gpe"]
        out[section] = {"gpe_-5dB": gpe, "gpe_missing": miss, "vde_-5dB": vde, "clean_gpe": cg,
                        "pass": bool(gpe is not None and gpe <= 0.10 and vde <= 0.20 and cg is not None
                                     and cg <= 0.03)}
    return out


def acceptance_text(run_row: dict) -> str:
    lines = ["| section | mean GPE at -5 dB (<= 10 %) | mean VDE at -5 dB (<= 20 %) | clean GPE (<= 3 %) | met |",
             "|---|---:|---:|---:|---|"]
    for section, a in acceptance(run_row).items():
        g = "n/a" if a["gpe_-5dB"] is None else f"{100 * a['gpe_-5dB']:.1f} %"
        if a["gpe_missing"]:
            g += f" ({a['gpe_missing']} missing)"
        c = "n/a" if a["clean_gpe"] is None else f"{100 * a['clean_gpe']:.1f} %"
        lines.append(f"| {section} | {g} | {100 * a['vde_-5dB']:.1f} % | {c} | {'yes' if a['pass'] else 'no'} |")
    return "\n".join(lines)


def table(run_row: dict) -> str:
    keys = [k for k in ("ours", "ours_correlogram", "praat", "harvest") if k in run_row["results"][0]]
    res = run_row["results"]
    sections = run_row.get("sections", {"ieee": run_row["utterances"]})
    out = [f"Run of {run_row['when']} ({run_row['mode']}, {run_row.get('mixing', 'with DC')} mixing, load average "
           f"{run_row['load_avg'][0]:.1f}); GPE / VDE in %, trackers on the mixture, reference Praat on the clean "
           "utterance; n/a: the tracker voiced none of the reference's voiced frames (GPE missing).", "",
           "#### Acceptance (issue 19): learned tracker, 12 unseen noises", "", acceptance_text(run_row), ""]
    head = "| noise | " + " | ".join(LABELS[k] for k in keys) + " |"
    sep = "|---|" + "---:|" * len(keys)

    def fmt(d):
        g = "n/a" if d["gpe"] is None else f"{100 * d['gpe']:.1f}"
        return f"{g} / {100 * d['vde']:.1f}"

    for section, files in sections.items():
        srows = [r for r in res if r.get("section", "ieee") == section]
        out += [f"#### {SECTION_TITLES.get(section, section)}: {len(files)} utterances", ""]
        clean = [r for r in srows if r["noise"] == "clean"]
        for snr in run_row["snrs_db"]:
            rows = [r for r in srows if r["snr_db"] == snr]
            test = [r for r in rows if r["group"] == "test"]
            out += [f"{section}, {snr:+.0f} dB", "", head, sep]
            for r in test:
                out.append(f"| {r['noise']} | " + " | ".join(fmt(r[k]) for k in keys) + " |")
            out.append("| **mean of the 12 test noises** | " + " | ".join(
                f"**{_fmt_mean(test, k, 'gpe')} / {_fmt_mean(test, k, 'vde')}**" for k in keys) + " |")
            out.append("| max GPE over the test noises | " + " | ".join(
                f"{100 * max((r[k]['gpe'] for r in test if r[k]['gpe'] is not None), default=float('nan')):.1f}"
                for k in keys) + " |")
            for r in rows:
                if r["group"] != "test":
                    out.append(f"| {r['noise']} ({r['group']} noise) | " + " | ".join(fmt(r[k]) for k in keys) + " |")
            out.append("")
        if clean:
            c = clean[0]
            out += [f"{section}, clean speech", "", head, sep,
                    "| clean | " + " | ".join(fmt(c[k]) for k in keys) + " |",
                    "| voicing errors within 2 frames of a voicing change of the reference, % of frames | "
                    + " | ".join(f"{100 * c[k]['voicing_errors_near_ref_edges'] / c[k]['frames']:.1f}"
                                 for k in keys) + " |",
                    "| missed voiced / false voiced, % of frames | "
                    + " | ".join(f"{100 * c[k]['missed_voiced'] / c[k]['frames']:.1f} / "
                                 f"{100 * c[k]['false_voiced'] / c[k]['frames']:.1f}" for k in keys) + " |",
                    ""]
    s = run_row["cpu_s_per_s"]
    out += ["#### CPU seconds per second of audio (one thread)", "",
            "| fastifkl learned | fastifkl learned, responses given | "
            + " | ".join(LABELS[k] for k in keys[1:]) + " |",
            "|---:|---:|" + "---:|" * (len(keys) - 1),
            f"| {s['ours']:.4f} | {s['ours_given_responses']:.4f} | "
            + " | ".join(f"{s[k]:.4f}" for k in keys[1:]) + " |",
            ""]
    return "\n".join(out)


def write_table() -> None:
    rows = [json.loads(l) for l in open(RESULTS / "pitch.jsonl")]
    full = [r for r in rows if r.get("mode") == "full" and r.get("pitch_net", {}).get("file") == "pitch_net.fkl"
            and r.get("mixing") == "dc-free"]
    if not full:
        raise SystemExit("no full run with the shipped network in bench/results/pitch.jsonl: run python bench/pitch.py")
    text = DOC.read_text() if DOC.is_file() else f"# Pitch\n\n{BEGIN}\n{END}\n"
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    body = "\n\nGenerated by `python bench/pitch.py --table` from the last full run in bench/results/pitch.jsonl " \
           "(`python bench/pitch.py`).\n\n" + table(full[-1]) + "\n"
    tmp = DOC.with_suffix(".md.tmp")
    tmp.write_text(text[:a] + body + text[b:])
    tmp.replace(DOC)
    print(f"wrote {DOC}")


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python bench/pitch.py")
    ap.add_argument("--quick", action="store_true", help="-5 dB, 4 + 4 utterances, no correlogram method")
    ap.add_argument("--snrs", default="-5,0")
    ap.add_argument("--real-utts", type=int, default=3, help="utterances per test_real talker (MANIFEST order)")
    ap.add_argument("--net", default=None, help="pitch-network file (default: the shipped one)")
    ap.add_argument("--cache", default=None, help="pickle of the peers' tracks, reused when present (scratch)")
    ap.add_argument("--table", action="store_true", help="write docs/PITCH.md's table from the last full run")
    a = ap.parse_args(argv)
    if a.table:
        write_table()
        return
    snrs = [-5.0] if a.quick else [float(v) for v in a.snrs.split(",")]
    run(a.quick, snrs, a.net, a.cache, a.real_utts)


if __name__ == "__main__":
    main(sys.argv[1:])
