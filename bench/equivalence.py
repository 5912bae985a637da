"""Same output as a reference tree: binary-mask agreement and STOI change (issue 21).

The quality bench's material (bench/quality.py: the corpus's real ``test`` IEEE utterances x the
12 unseen noises, the project's mixing with seed 0) at each SNR, separated by THIS tree and by a
reference tree (default: a detached worktree of the parent commit, tag ``base-875ac89``), each
in its own subprocess with ``PYTHONPATH`` pointing at that tree, the same model file and the
same pitch tracker pinned (bench/_common.pin_pitch_method), one thread everywhere.  Each worker
runs ``Separator.separate(x, return_decision=True)`` (the default ratio output and block size):
the binary mask is ``d > 0``; STOI is of the output against the clean utterance after delay
compensation (as in bench/quality.py), scored by this tree's ``fastifkl.quality``.

Reports the share of units whose binary masks agree (target >= 99.9 %), the mean STOI of each
tree and their difference per SNR (target |change| <= 0.002), and the largest |decision change|.

    python bench/equivalence.py [--ref /tmp/speed-ref] [--ref-rev base-875ac89] [--model M.fkl]
                                [--pitch-method correlogram|learned] [--utterances 4] [--noises 4]
                                [--snrs -5,0,5] [--no-record]

``--utterances``/``--noises`` take the first N of each (the subset is recorded).  The reference
worktree is created with ``git worktree add --detach`` when missing.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
           "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_v] = "1"

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
REPO = Path(_here).parent


def _load_helper(name: str, file: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(_here, file))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_common = _load_helper("_bench_common", "_common.py")

_WORKER = """
import sys, time, os, importlib.util
import numpy as np
spec = importlib.util.spec_from_file_location("_bench_common", {common!r})
m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
import numba; numba.set_num_threads(1)
m.pin_pitch_method({pin!r})
import fastifkl
from fastifkl.separator import Separator
sep = Separator.load({model!r})
data = np.load({mix!r})
ys, ds, cpu = [], [], 0.0
for k in range(int(data["n"])):
    x = data[f"x{{k}}"]
    t = time.process_time()
    y, d = sep.separate(x, return_decision=True)
    cpu += time.process_time() - t
    ys.append(y); ds.append(d)
np.savez({out!r}, n=len(ys), cpu=cpu, where=os.path.dirname(fastifkl.__file__),
         **{{f"y{{k}}": y for k, y in enumerate(ys)}}, **{{f"d{{k}}": d for k, d in enumerate(ds)}})
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python bench/equivalence.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default="/tmp/speed-ref", help="reference worktree (created if missing)")
    p.add_argument("--ref-rev", default="base-875ac89", help="revision checked out there when creating it")
    p.add_argument("--model", default=str(REPO / "fastifkl" / "data" / "default.fkl"),
                   help="model file, used by both trees (default: this tree's shipped model)")
    p.add_argument("--pitch-method", default="correlogram", choices=("correlogram", "learned"))
    p.add_argument("--utterances", type=int, default=4, help="first N test utterances (0: all)")
    p.add_argument("--noises", type=int, default=4, help="first N of the 12 unseen noises (0: all)")
    p.add_argument("--snrs", default="-5,0,5")
    p.add_argument("--corpus", default=None, help="corpus directory (default: bench/quality.py's)")
    p.add_argument("--no-record", action="store_true")
    return p.parse_args(argv)


def ensure_ref(path: Path, rev: str) -> None:
    if (path / "fastifkl" / "__init__.py").is_file():
        return
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)


def run_tree(tree: Path, model: str, pin: str, mix: Path, out: Path) -> dict:
    code = _WORKER.format(common=os.path.join(_here, "_common.py"), pin=pin, model=model, mix=str(mix),
                          out=str(out))
    env = dict(os.environ, PYTHONPATH=str(tree))
    env["NUMBA_CACHE_DIR"] = os.environ.get("NUMBA_CACHE_DIR", "/tmp/numba-equivalence") + "-" + tree.name
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd="/")
    r = np.load(out)
    return {k: r[k] for k in r.files}


def main(argv=None) -> dict:
    args = parse_args(argv)
    quality = _load_helper("_bench_quality", "quality.py")
    from fastifkl.corpus import MixtureSet
    from fastifkl.quality import compensate_delay, listener_scores

    ref = Path(args.ref)
    ensure_ref(ref, args.ref_rev)
    ref_commit = subprocess.check_output(["git", "-C", str(ref), "rev-parse", "--short", "HEAD"], text=True).strip()
    qa = quality.parse_args([] if args.corpus is None else ["--corpus", args.corpus])
    speech, noises, material = quality.select_material(qa)
    if args.utterances:
        speech = speech[: args.utterances]
    if args.noises:
        noises = noises[: args.noises]
    snrs = [float(s) for s in args.snrs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="fastifkl-equiv-"))
    mixes = []
    for snr in snrs:
        ms = MixtureSet.create(speech, noises, tmp / f"snr{snr:+g}", snr_db=snr, seed=qa.seed)
        for e in ms.entries:
            mixes.append((snr, ms.mixture(e)))
    np.savez(tmp / "mix.npz", n=len(mixes), **{f"x{k}": m.mixture for k, (_, m) in enumerate(mixes)})
    seconds = sum(m.mixture.size for _, m in mixes) / 16000
    print(f"{len(speech)} utterances x {len(noises)} noises x {len(snrs)} SNRs = {len(mixes)} mixtures "
          f"({seconds:.0f} s); model {args.model}; pitch {args.pitch_method}; reference {ref} ({ref_commit})",
          flush=True)
    t0 = time.perf_counter()
    ours = run_tree(REPO, args.model, args.pitch_method, tmp / "mix.npz", tmp / "ours.npz")
    theirs = run_tree(ref, args.model, args.pitch_method, tmp / "mix.npz", tmp / "ref.npz")
    agree = units = 0
    dmax = 0.0
    per_snr: dict[float, dict] = {s: {"ours": [], "ref": [], "agree": 0, "units": 0} for s in snrs}
    for k, (snr, m) in enumerate(mixes):
        d_o, d_r = ours[f"d{k}"], theirs[f"d{k}"]
        a = int(np.sum((d_o > 0) == (d_r > 0)))
        agree += a
        units += d_o.size
        per_snr[snr]["agree"] += a
        per_snr[snr]["units"] += d_o.size
        dmax = max(dmax, float(np.max(np.abs(d_o - d_r))))
        for key, res in (("ours", ours), ("ref", theirs)):
            aligned, _ = compensate_delay(res[f"y{k}"], m.mixture, 16000, quality.MAX_LAG_MS)
            per_snr[snr][key].append(listener_scores(m.speech, aligned)["stoi"])
    rows = {}
    print(f"binary masks agree on {100 * agree / units:.4f} % of {units} units (target >= 99.9 %); "
          f"largest |decision change| {dmax:.3g}")
    print(f"CPU of separate() over the {seconds:.0f} s: ours {float(ours['cpu']):.1f} s, "
          f"reference {float(theirs['cpu']):.1f} s")
    print(f"{'SNR':>5s} {'agree %':>9s} {'STOI ours':>10s} {'STOI ref':>9s} {'change':>8s}")
    for snr, c in per_snr.items():
        so, sr_ = float(np.mean(c["ours"])), float(np.mean(c["ref"]))
        rows[f"{snr:+g}"] = {"agree_pct": 100 * c["agree"] / c["units"], "stoi_ours": so, "stoi_ref": sr_,
                            "stoi_change": so - sr_, "n": len(c["ours"])}
        print(f"{snr:+5g} {rows[f'{snr:+g}']['agree_pct']:9.4f} {so:10.4f} {sr_:9.4f} {so - sr_:+8.4f}")
    payload = {"model": args.model, "pitch_method": args.pitch_method, "reference": ref_commit,
               "commit": subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                                 text=True).strip(),
               "utterances": [Path(it.path).stem for it in speech], "noises": [it.label for it in noises],
               "snrs": snrs, "seconds": seconds, "agree_pct": 100 * agree / units, "units": units,
               "max_abs_decision_change": dmax, "per_snr": rows, "cpu_s": {"ours": float(ours["cpu"]),
                                                                           "ref": float(theirs["cpu"])},
               "wall_s": time.perf_counter() - t0}
    if not args.no_record:
        _common.record("equivalence", payload)
    return payload


if __name__ == "__main__":
    main()
