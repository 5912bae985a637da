"""Scoring models on a mixture set: HIT, FA, HIT-FA and accuracy per noise and overall."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import SAMPLE_RATE
from .audio import atomic_path
from .masks import confusion, pooled_scores


@lru_cache(maxsize=4)
def _load_model(path: str, mtime: float):
    from .separator import Separator

    return Separator.load(path)


def cached_model(path: str | os.PathLike):
    """Load a model once per process (worker processes re-use it across jobs)."""
    p = Path(path)
    if not p.is_file():
        from .separator import Separator

        Separator.load(p)  # raises the one-line ModelError ("model file not found")
    return _load_model(str(p), p.stat().st_mtime)


def _eval_job(job: dict) -> dict:
    """Masks of every model on one mixture, with the IBM and the confusion counts, block by block
    (:mod:`fastifkl.blocks`: memory bounded by the block, whatever the mixture's length)."""
    from .blocks import BLOCK_SECONDS, block_samples_for, cochleagram_blocks, feature_blocks, signal_stats
    from .masks import ibm as ideal
    from .training import mixture_from_job, pitch_source

    entry, mx = mixture_from_job(job)
    models = [cached_model(p) for p in job["models"]]
    cfs = models[0].cfs_
    n = mx.mixture.size
    bs = block_samples_for(job.get("block_seconds", BLOCK_SECONDS))
    ps = pitch_source(mx, job["pitch"])
    counts = np.zeros((len(models), 4), dtype=np.int64)
    keep = bool(job.get("keep_masks"))
    parts = {"ibm": [], "models": [[] for _ in models]}
    stats, pstats = signal_stats([mx.mixture]), signal_stats([ps])
    # one analysis per analysis level (format-1 models analyse the signal as it is) and pitch
    # tracker (each model's own); the pitch source gets the mixture's gain (as training.analyse does)
    setups = list(dict.fromkeys((m.level_rms, m.pitch_method) for m in models))
    analyses = [feature_blocks([mx.mixture], stats, cfs, block_samples=bs, pitch_chunks=[ps], pitch_stats=pstats,
                               gain=stats.analysis_gain(lv), pitch_method=pm) for lv, pm in setups]
    stream = zip(cochleagram_blocks([mx.speech], n, cfs, block_samples=bs),
                 cochleagram_blocks([mx.noise], n, cfs, block_samples=bs), *analyses)
    for (_, e_s), (_, e_n), *feats in stream:
        ibm_b = ideal(e_s, e_n, models[0].lc_db)
        if keep:
            parts["ibm"].append(ibm_b)
        for i, m in enumerate(models):
            X = feats[setups.index((m.level_rms, m.pitch_method))][1]
            mask = m.mask_from_decision(m.decision_from_features(X), "binary")
            counts[i] += confusion(mask, ibm_b)
            if keep:
                parts["models"][i].append(mask)
    out = {"id": entry.id, "domain": entry.domain, "counts": [tuple(int(v) for v in c) for c in counts],
           "masks": None}
    if keep:
        out["masks"] = {"ibm": np.concatenate(parts["ibm"], axis=1),
                        "models": [np.concatenate(p, axis=1) for p in parts["models"]],
                        "mixture": mx.mixture, "speech": mx.speech}
    return out


def evaluate(model_paths: list[str], mixset, *, pitch: str = "estimated", workers: int = 1, scheduler=None,
             keep_masks_of: str | None = None, progress=None) -> dict:
    """Score one or more models on every mixture of ``mixset``.

    Returns
    -------
    dict: ``{"models": [...], "results": [{"overall": scores, "per_noise": {label: scores}}, ...],
    "example": masks of one mixture (when ``keep_masks_of`` names its id)}``.
    """
    from .parallel import executor
    from .training import mixture_job

    for p in model_paths:
        cached_model(p)  # validate in this process first: one clear error before any work
    cfs0 = cached_model(model_paths[0]).cfs_
    for p in model_paths[1:]:
        if not np.array_equal(cached_model(p).cfs_, cfs0):
            from .errors import InputError

            raise InputError(f"{p}: models to compare must share the filterbank")
    resolved = [str(Path(p).resolve()) for p in model_paths]
    jobs = [mixture_job(mixset, e, models=resolved, pitch=pitch, keep_masks=e.id == keep_masks_of)
            for e in mixset.entries]
    per = [dict() for _ in model_paths]
    allc = [[] for _ in model_paths]
    example = None
    with executor(workers=workers, scheduler=scheduler) as ex:
        for k, res in enumerate(ex.imap(_eval_job, jobs)):
            for i, cnt in enumerate(res["counts"]):
                per[i].setdefault(res["domain"], []).append(cnt)
                allc[i].append(cnt)
            if res["masks"] is not None:
                example = {"id": res["id"], **res["masks"]}
            if progress:
                progress(k + 1, len(jobs))
    results = []
    for i in range(len(model_paths)):
        results.append({"overall": pooled_scores(allc[i]),
                        "per_noise": {d: pooled_scores(c) for d, c in per[i].items()},
                        "mean_over_noises": _mean_over_noises({d: pooled_scores(c) for d, c in per[i].items()})})
    return {"models": [str(p) for p in model_paths], "pitch": pitch, "results": results, "example": example,
            "n_mixtures": len(jobs), "sample_rate": SAMPLE_RATE}


def _mean_over_noises(per_noise: dict) -> dict:
    keys = ("hit", "fa", "hit_fa", "accuracy")
    return {k: float(np.mean([v[k] for v in per_noise.values()])) for k in keys}


def markdown_table(report: dict, names: list[str] | None = None) -> str:
    """Per-noise table of HIT, FA, HIT-FA and accuracy for every model."""
    names = names or [Path(m).stem for m in report["models"]]
    noises = list(report["results"][0]["per_noise"])
    head = "| noise | " + " | ".join(f"{n} HIT | {n} FA | {n} HIT-FA | {n} acc" for n in names) + " |"
    sep = "|---|" + "---:|" * (4 * len(names))
    rows = [head, sep]

    def cells(s):
        return f"{s['hit']:.3f} | {s['fa']:.3f} | {s['hit_fa']:.3f} | {s['accuracy']:.3f}"

    for nz in noises:
        rows.append(f"| {nz} | " + " | ".join(cells(r["per_noise"][nz]) for r in report["results"]) + " |")
    rows.append("| **mean over noises** | " + " | ".join(cells(r["mean_over_noises"]) for r in report["results"])
                + " |")
    rows.append("| pooled units | " + " | ".join(cells(r["overall"]) for r in report["results"]) + " |")
    return "\n".join(rows) + "\n"


def write_report(report: dict, json_path: str | os.PathLike | None, md_path: str | os.PathLike | None) -> None:
    """Write the scores of :func:`evaluate` as JSON (:func:`report_json`) and/or as the Markdown
    table (:func:`markdown_table`), atomically; a path that is None is skipped."""
    if json_path:
        with atomic_path(json_path) as tmp:
            Path(tmp).write_text(json.dumps(report_json(report), indent=1, sort_keys=True))
    if md_path:
        with atomic_path(md_path) as tmp:
            Path(tmp).write_text(markdown_table(report))


def report_json(rep: dict) -> dict:
    """The JSON form of a report of :func:`evaluate` (without the example masks): DESIGN section
    4's shape ``{"overall", "per_noise", ...}`` for a single model; the report itself, with a
    list under "results", for several."""
    rep = {k: v for k, v in rep.items() if k != "example"}
    if len(rep["results"]) == 1:
        r = rep["results"][0]
        return {"model": rep["models"][0], "pitch": rep["pitch"], "overall": r["overall"],
                "mean_over_noises": r["mean_over_noises"], "per_noise": r["per_noise"], "n_mixtures": rep["n_mixtures"]}
    return rep
