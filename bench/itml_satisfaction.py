"""How many training constraints does the learned kernel satisfy?  (issue 4, second criterion)

For each problem: the share of the cross-domain constraints with d <= u (similar) or d >= l
(dissimilar) under K0 and under the kernels learned with gamma = 1 (and, for reference,
gamma = 10 and 100), in exact mode (given and a seeded random constraint order, 20 and 60
sweeps) and in low-rank mode (rank by truncation error, 20 sweeps).

Problems (n = 500 points, 5 domains x 100, 100,000 constraints each):

* ``synthetic``: the overlapping feature-like data of bench/itml.py (classes shifted by 1.2 sd
  along one of 12 latent directions);
* ``separable``: the same generator with a class shift of 6 sd;
* ``real-ch<c>``: the 195 features of channel c of the real kernel-learning units -- the
  ``kernel`` split of ../shared/corpus mixed at -5 dB with the five training noises, sampled
  exactly as ``Separator`` does (skipped when the corpus is absent).

    python bench/itml_satisfaction.py [--channels 10,30,50] [--corpus ../shared/corpus] [--quick]

Prints a table and appends one JSON line to bench/results/itml_satisfaction.jsonl.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fastifkl import constraints, itml, kernels  # noqa: E402
from itml import synthetic_channel  # noqa: E402  (bench/itml.py)

RESULTS = Path(__file__).resolve().parent / "results" / "itml_satisfaction.jsonl"


def shares(K, cons, u, l) -> dict:
    i, j, s = cons
    d = K[i, i] + K[j, j] - 2.0 * K[i, j]
    ok = np.where(s, d <= u, d >= l)
    return {"all": float(ok.mean()), "similar": float(ok[s].mean()), "dissimilar": float(ok[~s].mean())}


def synthetic_problem(seed: int, class_shift: float):
    X, labels, domains = synthetic_channel(seed, class_shift=class_shift)
    pts, cons = constraints.cross_domain_constraints(labels, domains, 100, np.random.default_rng(seed))
    Xp = X[pts]
    return Xp, cons, kernels.median_sigma(Xp)


def real_problems(corpus: Path, channels: list[int]):
    """The Separator's kernel-learning problem of each channel on the real kernel split."""
    from fastifkl.corpus import MixtureSet
    from fastifkl.experiment import Config, select_corpus
    from fastifkl.training import kernel_problem, prepare

    sel = select_corpus(Config(corpus=str(corpus), control=False))
    with tempfile.TemporaryDirectory() as tmp:
        ms = MixtureSet.create(sel["kernel"], sel["train_noises"], Path(tmp) / "kernel", snr_db=-5.0, seed=0)
        data = prepare(ms, {e.id for e in ms.entries}, pitch="true", seed=0)
    out = {}
    for c in channels:
        rng = np.random.default_rng([0, 1000 + c])  # as Separator's channel job
        Xl, cons = kernel_problem(data.kernel_units[c], data.mean[c], data.std[c], 100, rng)
        out[f"real-ch{c}"] = (Xl, cons, kernels.median_sigma(Xl, rng))
    return out


def runs():
    """(name, learn_kernel keyword arguments, random order?)"""
    return [
        ("exact, given order, 20 sweeps", dict(mode="exact", max_sweeps=20), False),
        ("exact, random order, 20 sweeps", dict(mode="exact", max_sweeps=20), True),
        ("exact, given order, 60 sweeps", dict(mode="exact", max_sweeps=60), False),
        ("exact, random order, 60 sweeps", dict(mode="exact", max_sweeps=60), True),
        ("low-rank (rank by truncation), 20 sweeps", dict(mode="lowrank", max_sweeps=20), False),
        ("exact gamma=10, given order, 20 sweeps", dict(mode="exact", max_sweeps=20, gamma=10.0), False),
        ("exact gamma=100, given order, 20 sweeps", dict(mode="exact", max_sweeps=20, gamma=100.0), False),
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--channels", default="10,30,50")
    ap.add_argument("--quick", action="store_true", help="synthetic problems only, 20-sweep runs only")
    ap.add_argument("--corpus", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    args = ap.parse_args()
    channels = [int(c) for c in args.channels.split(",") if c]
    problems = {"synthetic": synthetic_problem(0, 1.2), "separable": synthetic_problem(0, 6.0)}
    corpus = Path(args.corpus)
    if args.quick:
        print("--quick: real-feature problems and 60-sweep runs skipped")
    elif (corpus / "MANIFEST.tsv").is_file():
        t = time.perf_counter()
        problems.update(real_problems(corpus, channels))
        print(f"real kernel-learning units prepared in {time.perf_counter() - t:.1f} s")
    else:
        print(f"{corpus}: no corpus, real-feature problems skipped")
    rec = {"bench": "itml_satisfaction", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": platform.node(),
           "cpus": os.cpu_count(), "quick": args.quick, "problems": {}}
    with threadpool_limits(1):
        for name, (X, cons, sigma) in problems.items():
            K0 = kernels.gaussian(X, sigma=sigma)
            u, l = constraints.distance_thresholds(K0, cons)
            res = {"n": int(K0.shape[0]), "constraints": int(len(cons[0])), "u": float(u), "l": float(l),
                   "K0": shares(K0, cons, u, l)}
            print(f"\n{name}: n={K0.shape[0]}, {len(cons[0])} constraints, u={u:.4g}, l={l:.4g}")
            print(f"  {'K0':45s} {res['K0']['all']:6.1%}  (similar {res['K0']['similar']:6.1%}, "
                  f"dissimilar {res['K0']['dissimilar']:6.1%})")
            for label, kw, permute in runs():
                if args.quick and kw["max_sweeps"] > 20:
                    continue
                kw = dict(kw)
                gamma = kw.pop("gamma", 1.0)
                t = time.perf_counter()
                r = itml.learn_kernel(K0, cons, u, l, gamma, track_S=False, order="random" if permute else "given",
                                      seed=1, **kw)
                sh = shares(r.K, cons, u, l)
                mineig = float(np.linalg.eigvalsh(r.K)[0])
                sh.update(sweeps=int(r.n_sweeps), conv=float(r.conv), rank=r.rank, min_eig=mineig,
                          seconds=time.perf_counter() - t)
                res[label] = sh
                print(f"  {label:45s} {sh['all']:6.1%}  (similar {sh['similar']:6.1%}, dissimilar "
                      f"{sh['dissimilar']:6.1%}; min eig {mineig:.2e}; {sh['seconds']:.1f} s)", flush=True)
            rec["problems"][name] = res
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(f"\nappended to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
