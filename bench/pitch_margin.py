"""The block engine's pitch margin (fastifkl.blocks.PITCH_MARGINS): how many frames each side of a
block a tracker needs so that block-wise tracking reproduces whole-signal tracking.

    python bench/pitch_margin.py [--method learned] [--margins 0,10,20,30,50,100]

Material (no test talker, no test noise): the 10 real ``tune`` utterances of ../shared/corpus
concatenated (about 30 s), mixed with the training noises ``street`` and ``ssn`` at -5 and +5 dB
(DC removed from both before mixing), plus synthetic voiced speech in white noise at -5 dB.
Each signal is tracked whole and in blocks of 997 frames through the block engine's own plan
and stage (:func:`fastifkl.blocks.plan`, :func:`fastifkl.blocks.block_pitch`, with the file's
mean and peak), for each margin; per margin, the frames whose f0 differs in any bit, in voicing, or by more than
1 % are printed and appended to bench/results/pitch_margin.jsonl.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_here = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_bench_common", _here / "_common.py")
_common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_common)

CORPUS = Path(os.environ.get("FASTIFKL_CORPUS", _here.parents[1] / "shared" / "corpus"))
BLOCK_FRAMES = 997


def signals() -> dict[str, np.ndarray]:
    from fastifkl.audio import load, mix_at_snr
    from fastifkl.demo import synthetic_voiced_speech

    rows = list(csv.DictReader(open(CORPUS / "MANIFEST.tsv"), delimiter="\t"))
    tune = [load(CORPUS / r["file"]) for r in rows if r["kind"] == "speech" and r["split"] == "tune"]
    s = np.concatenate(tune)
    s = s - s.mean()
    noises = {r["label"]: load(CORPUS / r["file"]) for r in rows if r["kind"] == "noise"}
    out = {}
    for name in ("street", "ssn"):
        v = noises[name] - noises[name].mean()
        for snr in (-5.0, 5.0):
            out[f"tune+{name}@{snr:+g}dB"] = mix_at_snr(s, v, snr, offset=0).mixture
    rng = np.random.default_rng(7)
    syn = synthetic_voiced_speech(30.0, rng)
    out["synthetic+white@-5dB"] = syn + 10 ** (5 / 20) * np.std(syn) * rng.standard_normal(syn.size)
    return out


def blockwise(x: np.ndarray, method: str, margin: int) -> np.ndarray:
    from fastifkl import HOP
    from fastifkl.blocks import block_pitch, plan, signal_stats

    stats = signal_stats([x])
    parts = []
    for blk in plan(x.size, BLOCK_FRAMES * HOP, margin):
        if blk.m1 > blk.m0:
            parts.append(block_pitch(x[blk.pit0:blk.pit1], blk, stats, 1.0, method))
    return np.concatenate(parts)


def main(argv=None) -> dict:
    from fastifkl.pitch import track

    ap = argparse.ArgumentParser(prog="python bench/pitch_margin.py")
    ap.add_argument("--method", default="learned")
    ap.add_argument("--margins", default="0,10,20,30,50,100")
    a = ap.parse_args(argv)
    margins = [int(v) for v in a.margins.split(",")]
    res = {}
    for name, x in signals().items():
        whole = track(x, method=a.method)
        res[name] = {"frames": int(whole.size)}
        for mg in margins:
            b = blockwise(x, a.method, mg)
            # bits: any difference; voicing: voiced in one only; coarse: both voiced, > 1 % apart
            vb, vw = b > 0, whole > 0
            both = vb & vw
            coarse = np.zeros_like(both)
            coarse[both] = np.abs(np.log(b[both] / whole[both])) > np.log(1.01)
            res[name][str(mg)] = {"bits": int(np.sum(b != whole)), "voicing": int(np.sum(vb != vw)),
                                  "coarse": int(np.sum(coarse)),
                                  "max_rel": float(np.max(np.abs(b[both] / whole[both] - 1), initial=0.0))}
        print(name, res[name], flush=True)
    total = {str(mg): {k: int(sum(r[str(mg)][k] for r in res.values())) for k in ("bits", "voicing", "coarse")}
             for mg in margins}
    print("total frames differing per margin:", total, "of", sum(r["frames"] for r in res.values()))
    payload = {"method": a.method, "block_frames": BLOCK_FRAMES, "per_signal": res, "total": total}
    _common.record("pitch_margin", payload)
    return payload


if __name__ == "__main__":
    main()
