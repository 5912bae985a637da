"""The run of the experiment: mixing, training, testing every system on every test mixture, and
the report (stages 1-4 of :mod:`fastifkl.experiment`)."""
from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .. import SAMPLE_RATE, __version__
from ..errors import InputError
from .config import Config, select_corpus
from .report import PAPER_TABLE1, PITCH_NAMES, fig2_png, kl_minus_g, summarise, system_key, write_results

KERNELS = {"G-SVM": "gaussian", "KL-SVM": "learned"}


# ---------------------------------------------------------------------------------------------
# One test mixture (a job in a worker process)


def _stoi_fn():
    try:
        from pystoi import stoi
    except ImportError:
        return None
    return stoi


def _test_job(job: dict) -> dict:
    """Every system on one test mixture; returns small numbers (and masks when asked)."""
    from .. import features
    from ..audio import snr_db
    from ..baselines import mmse_mask, rethreshold
    from ..evaluate import cached_model
    from ..gammatone import cochleagram, filterbank, resynthesize, zero_phase
    from ..masks import confusion
    from ..training import ideal_mask, mixture_from_job, pitch_source, track_pitch

    entry, mx = mixture_from_job(job)
    first = next(iter(job["models"].values()))
    model0 = cached_model(first["G-SVM"])
    cfs = model0.cfs_
    R = filterbank(mx.mixture, SAMPLE_RATE, cfs)
    E = cochleagram(R)
    ibm = ideal_mask(mx.speech, mx.noise, cfs, job["lc_db"])
    g = model0.analysis_gain(mx.mixture)  # every model of the protocol is trained with the same level setting
    Rg = g * R if g != 1.0 else R
    base = features.base_features(Rg, None, SAMPLE_RATE, ["ams", "rasta_plp", "mfcc"])
    masks: dict[str, np.ndarray] = {"IBM": ibm, "MMSE": np.asarray(mmse_mask(mx.mixture, cfs, job["lc_db"]))}
    for p, paths in job["models"].items():
        # the models' own tracker ("true" pitch: that tracker on the premixed speech)
        f0 = track_pitch(g * pitch_source(mx, p), cached_model(paths["G-SVM"]).pitch_method)
        base["pitch"] = features.base_features(Rg, f0, SAMPLE_RATE, ["pitch"])["pitch"]
        X = features.assemble(base)
        dec = {}
        for name, path in paths.items():
            dec[name] = cached_model(path).decision_from_features(X)
            masks[f"{name}|{p}"] = (dec[name] > 0).astype(np.uint8)
        masks[f"Rethresholding|{p}"] = np.asarray(rethreshold(dec["G-SVM"], E))
    counts = {k: confusion(m, ibm) for k, m in masks.items() if k != "IBM"}
    # beyond the paper: the resynthesised speech of every system, all from one zero-phase pass
    zp = zero_phase(mx.mixture, SAMPLE_RATE, cfs, responses=R)
    ones = np.ones_like(ibm, dtype=np.float64)
    ref = resynthesize(mx.speech, ones, SAMPLE_RATE, cfs)
    stoi = _stoi_fn() if job["stoi"] else None
    resyn = {}
    for k, m in {"Mixture": ones, **masks}.items():
        y = resynthesize(mx.mixture, m, SAMPLE_RATE, cfs, filtered=zp)
        resyn[k] = {"snr": snr_db(ref, y), "stoi": float(stoi(mx.speech, y, SAMPLE_RATE)) if stoi else None}
    base_snr = resyn["Mixture"]["snr"]
    for v in resyn.values():
        v["snr_gain"] = v.pop("snr") - base_snr
    out = {"id": entry.id, "noise": entry.noise_label, "group": job["group"], "counts": counts, "resyn": resyn}
    if job.get("keep_masks"):
        out["masks"] = {k: np.asarray(m, dtype=np.uint8) for k, m in masks.items()}
    return out


# ---------------------------------------------------------------------------------------------
# The run


class _Log:
    def __init__(self, out: Callable[[str], None] | None):
        self.out = out
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.out is not None:
            self.out(f"[{time.perf_counter() - self.t0:7.1f} s] {msg}")

    def counter(self, what: str, total: int):
        step = max(1, total // 10)
        state = {"n": 0}

        def tick(*_):
            state["n"] += 1
            if state["n"] % step == 0 or state["n"] == total:
                self(f"{what}: {state['n']}/{total}")

        return tick


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return None


def run_experiment(cfg: Config, *, out_dir: str | os.PathLike = "docs", work_dir: str | os.PathLike | None = None,
                   command: str = "fastifkl experiment", log: Callable[[str], None] | None = print,
                   scheduler=None) -> dict:
    """Run the protocol of ``cfg`` and write ``results.json``, ``RESULTS.md`` and the figures
    to ``out_dir``; models and mixture manifests go to ``work_dir``.  Returns the results."""
    from ..parallel import executor

    cfg.check()
    say = _Log(log)
    work = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="fastifkl-experiment-"))
    work.mkdir(parents=True, exist_ok=True)
    if cfg.stoi and _stoi_fn() is None:
        say("pystoi is not installed: the STOI column is skipped (pip install 'fastifkl[stoi]')")
    stages: dict[str, float] = {}
    load_start = _loadavg()
    sel = select_corpus(cfg)
    sets = _mix(cfg, sel, work, stages, say)
    with executor(workers=cfg.workers, scheduler=scheduler) as ex:
        models, model_info = _train(cfg, sets, work, ex, stages, say)
        records, fig1 = _test(cfg, sel, sets["test"], models, ex, stages, say)
    t = time.perf_counter()
    results = {
        "command": command,
        "fastifkl_version": __version__,
        "config": asdict(cfg),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_start": load_start, "load_average_end": _loadavg()},
        "corpus": {k: [it.path.name for it in v] for k, v in sel.items()},
        "models": model_info,
        "groups": {g: summarise(r, [n.label for n in sel["test_noises"]]) for g, r in records.items() if r},
        "paper_table1": {f"{s}|{p}": {"accuracy": a, "hit_fa": h} for (p, s), (a, h) in PAPER_TABLE1.items()},
        "fig1": {"mixture": fig1["id"]},
        "stoi_available": bool(cfg.stoi and _stoi_fn() is not None),
    }
    _report(cfg, results, fig1["masks"], Path(out_dir), say)
    stages["report and figures"] = time.perf_counter() - t
    results["stage_seconds"] = stages
    write_results(results, out_dir)
    say(f"wrote {Path(out_dir) / 'RESULTS.md'} and {Path(out_dir) / 'results.json'}")
    return results


def _mix(cfg: Config, sel: dict, work: Path, stages: dict, say) -> dict:
    """Stage 1: the mixture sets (manifests only) for training, tuning and testing."""
    from ..corpus import MixtureSet

    t = time.perf_counter()
    train = MixtureSet.create(sel["kernel"] + sel["svm"], sel["train_noises"], work / "sets" / "train",
                              snr_db=cfg.snr_db, seed=cfg.seed)
    tune = (MixtureSet.create(sel["tune"], sel["train_noises"], work / "sets" / "tune", snr_db=cfg.snr_db,
                              seed=cfg.seed + 1) if cfg.tune else None)
    test = MixtureSet.create(sel["primary"] + sel["control"], sel["test_noises"], work / "sets" / "test",
                             snr_db=cfg.snr_db, seed=cfg.seed + 2)
    stages["mixing"] = time.perf_counter() - t
    say(f"mixture sets: train {len(train)} ({len(sel['kernel'])} kernel + {len(sel['svm'])} svm utterances x "
        f"{len(sel['train_noises'])} noises), test {len(test)} ({len(sel['primary'])} primary + "
        f"{len(sel['control'])} control utterances x {len(sel['test_noises'])} noises)"
        + (f", tune {len(tune)}" if tune else "") + f" -> {work / 'sets'}")
    return {"train": train, "tune": tune, "test": test}


def _train(cfg: Config, sets: dict, work: Path, ex, stages: dict, say) -> tuple[dict, dict]:
    """Stage 2: per pitch setting, one analysis of the training set, then G-SVM and KL-SVM
    (tuned first with ``cfg.tune``) fitted on it and saved in ``work/models``.

    Returns ``({pitch: {system: model path}}, {"system|pitch": model summary})``."""
    from ..separator import Separator
    from ..training import cfs_for, prepare

    train_set = sets["train"]
    models: dict[str, dict[str, str]] = {}
    model_info: dict[str, dict] = {}
    for p in cfg.pitches:
        t = time.perf_counter()
        proto = Separator(pitch=p, lc_db=cfg.lc_db, **cfg.separator).check_params()
        cfs = cfs_for(proto.n_channels, proto.fmin, proto.fmax)
        data = prepare(train_set, None, pitch=p, lc_db=cfg.lc_db, cfs=cfs, units_per_mixture=proto.units_per_mixture,
                       seed=proto.seed, level_rms=proto.level_rms, calib_per_mixture=proto.calib_per_mixture,
                       pitch_method=proto.pitch_method, executor=ex,
                       progress=say.counter(f"features ({p} pitch)", len(train_set)))
        stages[f"feature preparation, {p} pitch"] = time.perf_counter() - t
        models[p] = {}
        for name in ("G-SVM", "KL-SVM"):
            sep = Separator(kernel=KERNELS[name], pitch=p, lc_db=cfg.lc_db, **cfg.separator)
            tuned = None
            if cfg.tune:
                from ..tuning import tune_on_data

                t = time.perf_counter()
                tuned = tune_on_data(sep, data, sets["tune"], executor=ex, log=say)
                sep.set_params(**tuned)
                stages[f"tuning {name}, {p} pitch"] = time.perf_counter() - t
            t = time.perf_counter()
            sep.fit_data(data, executor=ex, progress=say.counter(f"{name} ({p} pitch) channels", len(cfs)))
            path = work / "models" / f"{name.lower().replace('-', '')}_{p}.fkl"
            sep.save(path)
            stages[f"{'kernel learning + ' if name == 'KL-SVM' else ''}SVM fitting, {name}, {p} pitch"] = \
                time.perf_counter() - t
            models[p][name] = str(path.resolve())
            fb = [i for i, c in enumerate(sep.channel_info_) if "fallback" in c]
            model_info[f"{name}|{p}"] = {"file": str(path), **sep.size_summary(), "params": sep.get_params(),
                                         "tuned": tuned, "gaussian_fallback_channels": fb}
            say(f"{name} ({p} pitch): {sep.size_summary()['points_total']} stored points -> {path}")
        del data
    return models, model_info


def _test(cfg: Config, sel: dict, test_set, models: dict, ex, stages: dict, say) -> tuple[dict, dict]:
    """Stage 3: every system on every test mixture (one job per mixture).

    Returns ``({"primary": [record, ...], "control": [...]}, {"id": Fig. 1 mixture, "masks":
    its masks or None})``."""
    from ..training import mixture_job

    t = time.perf_counter()
    labels = [n.label for n in sel["test_noises"]]
    fig1_noise = cfg.fig1_noise if cfg.fig1_noise in labels else labels[0]
    fig1 = {"id": f"{sel['primary'][0].path.stem}__{fig1_noise}", "masks": None}
    groups = {it.path.stem: ("primary" if it in sel["primary"] else "control")
              for it in sel["primary"] + sel["control"]}
    jobs = (mixture_job(test_set, e, models=models, lc_db=cfg.lc_db, stoi=cfg.stoi, group=groups[Path(e.speech).stem],
                        keep_masks=e.id == fig1["id"])
            for e in test_set.entries)
    records: dict[str, list] = {"primary": [], "control": []}
    tick = say.counter("test mixtures", len(test_set))
    for res in ex.imap(_test_job, jobs):
        if "masks" in res:
            fig1["masks"] = res.pop("masks")
        records[res["group"]].append(res)
        tick()
    stages["testing (all systems, resynthesis, STOI)"] = time.perf_counter() - t
    return records, fig1


def _report(cfg: Config, results: dict, fig1_masks: dict | None, out_dir: Path, say) -> None:
    """Stage 4 (before writing): the comparisons of ``results`` and the figures."""
    prim = results["groups"]["primary"]
    results["kl_minus_g"] = {p: kl_minus_g(prim, p) for p in cfg.pitches}
    mmse = prim["scores"]["MMSE"]["per_noise"]
    results["kl_above_mmse_every_noise"] = {p: all(
        prim["scores"][system_key("KL-SVM", p)]["per_noise"][n]["hit_fa"] > mmse[n]["hit_fa"] for n in prim["noises"])
        for p in cfg.pitches}
    figs = {}
    try:
        figs["fig2"] = fig2_png(out_dir / "fig2_hitfa_per_noise.png", prim, cfg.pitches,
                                title=f"HIT-FA per unseen noise ({cfg.primary_label}, {cfg.snr_db:g} dB)").name
        if fig1_masks is not None:
            from ..plots import save_masks_png

            p = "estimated" if "estimated" in cfg.pitches else cfg.pitches[0]
            panels = {"IBM": fig1_masks["IBM"], f"G-SVM ({PITCH_NAMES[p]})": fig1_masks[f"G-SVM|{p}"],
                      f"KL-SVM ({PITCH_NAMES[p]})": fig1_masks[f"KL-SVM|{p}"]}
            figs["fig1"] = save_masks_png(out_dir / "fig1_masks.png", panels, title=results["fig1"]["mixture"]).name
    except InputError as exc:  # matplotlib missing
        say(f"figures skipped: {exc}")
    results["figures"] = figs
