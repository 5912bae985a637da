"""The experiment's report: pooled scores per noise (:func:`summarise`), Table 1 beside the
paper's, the per-noise and resynthesis tables, Fig. 2, and ``RESULTS.md`` / ``results.json``
(:func:`write_results`).  Pure functions of small numbers."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ..audio import atomic_path

# Paper, Table 1: (pitch setting, system) -> (accuracy, HIT-FA)
PAPER_TABLE1 = {
    ("true", "G-SVM"): (0.742, 0.469),
    ("true", "KL-SVM"): (0.794, 0.537),
    ("estimated", "G-SVM"): (0.703, 0.390),
    ("estimated", "KL-SVM"): (0.746, 0.456),
}
PITCH_NAMES = {"true": "ground-truth pitch", "estimated": "estimated pitch"}
SVM_SYSTEMS = ("KL-SVM", "G-SVM", "Rethresholding")  # depend on the pitch setting
FIG2_SYSTEMS = ("KL-SVM", "G-SVM", "MMSE", "Rethresholding")



# ---------------------------------------------------------------------------------------------
# Aggregation and report pieces (pure functions of small numbers)


def system_key(system: str, pitch: str | None) -> str:
    return system if pitch is None or system in ("MMSE", "IBM", "Mixture") else f"{system}|{pitch}"


def summarise(records: list[dict], noises: list[str]) -> dict:
    """Pool the per-mixture results of one group (primary or control).

    Returns ``{"n_mixtures", "noises", "scores": {system_key: {"per_noise": {noise: scores},
    "mean_over_noises": {...}, "pooled": scores}}, "resynthesis": {system_key: {"per_noise":
    {noise: {"snr_gain_db", "stoi"}}, "mean_over_noises": {...}}}}``.
    """
    from ..masks import pooled_scores

    counts: dict[str, dict[str, list]] = {}
    resyn: dict[str, dict[str, list]] = {}
    for rec in records:
        for k, c in rec["counts"].items():
            counts.setdefault(k, {}).setdefault(rec["noise"], []).append(c)
        for k, v in rec["resyn"].items():
            resyn.setdefault(k, {}).setdefault(rec["noise"], []).append(v)
    present = [n for n in noises if any(n in d for d in counts.values())]
    scores = {}
    for k, per in counts.items():
        pn = {n: pooled_scores(per[n]) for n in present if n in per}
        scores[k] = {
            "per_noise": pn,
            "mean_over_noises": {m: float(np.mean([s[m] for s in pn.values()]))
                                 for m in ("hit", "fa", "hit_fa", "accuracy")},
            "pooled": pooled_scores([c for lst in per.values() for c in lst]),
        }
    rs = {}
    for k, per in resyn.items():
        pn = {}
        for n in present:
            if n not in per:
                continue
            vals = per[n]
            st = [v["stoi"] for v in vals if v.get("stoi") is not None]
            pn[n] = {"snr_gain_db": float(np.mean([v["snr_gain"] for v in vals])),
                     "stoi": float(np.mean(st)) if st else None}
        st_all = [v["stoi"] for v in pn.values() if v["stoi"] is not None]
        rs[k] = {"per_noise": pn, "mean_over_noises": {
            "snr_gain_db": float(np.mean([v["snr_gain_db"] for v in pn.values()])),
            "stoi": float(np.mean(st_all)) if st_all else None}}
    return {"n_mixtures": len(records), "noises": present, "scores": scores, "resynthesis": rs}


def _f(v, nd=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{nd}f}"


def table1_markdown(group: dict, pitches: list[str]) -> str:
    """Table 1: mean over the test noises of accuracy and HIT-FA, ours beside the paper's."""
    cols = [(p, s) for p in ("true", "estimated") if p in pitches for s in ("G-SVM", "KL-SVM")]
    head = "| | " + " | ".join(f"{s}, {PITCH_NAMES[p]}" for p, s in cols) + " |"
    rows = [head, "|---|" + "---:|" * len(cols)]
    for metric, idx, label in (("accuracy", 0, "Accuracy"), ("hit_fa", 1, "HIT-FA")):
        ours = [group["scores"][system_key(s, p)]["mean_over_noises"][metric] for p, s in cols]
        rows.append(f"| {label} (ours) | " + " | ".join(_f(v) for v in ours) + " |")
        rows.append(f"| {label} (paper) | " + " | ".join(_f(PAPER_TABLE1[(p, s)][idx]) for p, s in cols) + " |")
    return "\n".join(rows) + "\n"


def kl_minus_g(group: dict, pitch: str) -> dict:
    """KL-SVM minus G-SVM, mean over noises: accuracy and HIT-FA (in points, x100)."""
    a = group["scores"][system_key("KL-SVM", pitch)]["mean_over_noises"]
    b = group["scores"][system_key("G-SVM", pitch)]["mean_over_noises"]
    return {"accuracy_points": 100 * (a["accuracy"] - b["accuracy"]),
            "hit_fa_points": 100 * (a["hit_fa"] - b["hit_fa"])}


def per_noise_markdown(group: dict, pitch: str, systems=FIG2_SYSTEMS, metric: str = "hit_fa") -> str:
    """Per-noise table of one metric for the Fig. 2 systems (one pitch setting)."""
    keys = [system_key(s, pitch) for s in systems]
    rows = ["| noise | " + " | ".join(systems) + " |", "|---|" + "---:|" * len(systems)]
    for n in group["noises"]:
        rows.append(f"| {n} | " + " | ".join(_f(group["scores"][k]["per_noise"][n][metric]) for k in keys) + " |")
    rows.append("| **mean** | " + " | ".join(_f(group["scores"][k]["mean_over_noises"][metric]) for k in keys) + " |")
    return "\n".join(rows) + "\n"


def resynthesis_markdown(group: dict, pitches: list[str], what: str) -> str:
    """SNR gain (dB) or STOI per noise for every system, the IBM and the unprocessed mixture."""
    keys = ["IBM"] + [system_key(s, p) for p in pitches for s in SVM_SYSTEMS] + ["MMSE", "Mixture"]
    keys = [k for k in keys if k in group["resynthesis"]]
    label = {k: k.replace("|true", " (true pitch)").replace("|estimated", " (est. pitch)") for k in keys}
    rows = ["| noise | " + " | ".join(label[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    nd = 2 if what == "snr_gain_db" else 3
    for n in group["noises"]:
        cells = [_f(group["resynthesis"][k]["per_noise"][n][what], nd) for k in keys]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    cells = [_f(group["resynthesis"][k]["mean_over_noises"][what], nd) for k in keys]
    rows.append("| **mean** | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def stages_markdown(stages: dict) -> str:
    rows = ["| stage | wall-clock (s) |", "|---|---:|"]
    for k, v in stages.items():
        rows.append(f"| {k} | {v:.1f} |")
    rows.append(f"| **total** | {sum(stages.values()):.1f} |")
    return "\n".join(rows) + "\n"


# ---------------------------------------------------------------------------------------------
# Figures


def fig2_png(path: Path, group: dict, pitches: list[str], title: str = "") -> Path:
    """HIT-FA per test noise of KL-SVM, G-SVM, MMSE and rethresholding; one panel per pitch."""
    from ..plots import pyplot, save_figure

    plt = pyplot()
    noises = group["noises"]
    fig, axes = plt.subplots(len(pitches), 1, figsize=(max(8, 0.8 * len(noises) + 2), 3.4 * len(pitches)),
                             squeeze=False)
    w = 0.8 / len(FIG2_SYSTEMS)
    x = np.arange(len(noises))
    for ax, p in zip(axes[:, 0], pitches):
        for i, s in enumerate(FIG2_SYSTEMS):
            k = system_key(s, p)
            v = [group["scores"][k]["per_noise"][n]["hit_fa"] for n in noises]
            ax.bar(x + (i - (len(FIG2_SYSTEMS) - 1) / 2) * w, v, w, label=s)
        ax.set_xticks(x, noises, rotation=30, ha="right")
        ax.axhline(0, color="k", lw=0.6)
        ax.set(ylabel="HIT-FA", title=PITCH_NAMES[p])
        ax.legend(ncol=4, fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Writing


def results_markdown(res: dict) -> str:
    cfg = res["config"]
    pitches = cfg["pitches"]
    cmd = f"```\n{res['command']}\n```\n"
    prim = res["groups"]["primary"]
    L = ["# Reproducing the paper's experiment (Section 5)", "",
         "Generated by `fastifkl experiment`; every number below comes from the command written above it. "
         f"fastifkl {res['fastifkl_version']}, Python {res['machine']['python']}, {res['machine']['cpus']} CPUs.", "",
         "## Protocol", "",
         f"Input SNR {cfg['snr_db']:g} dB, LC {cfg['lc_db']:g} dB. Training noises (kernel-learning domains): "
         f"{', '.join(cfg['train_noises'])}. Kernel learning: {len(res['corpus']['kernel'])} utterances "
         f"(split `{cfg['kernel_split']}`); SVM training: {len(res['corpus']['svm'])} utterances "
         f"(split `{cfg['svm_split']}`); "
         + (f"tuning on {len(res['corpus']['tune'])} utterances of split `{cfg['tune_split']}` (training noises only). "
            if cfg["tune"] else "no tuning (Separator defaults). ")
         + f"Test: {len(res['corpus']['primary'])} real utterances ({cfg['primary_label']}, primary) and "
         f"{len(res['corpus']['control'])} synthetic-voice utterances ({cfg['control_label']}, control) x "
         f"{len(res['corpus']['test_noises'])} unseen noises ({', '.join(prim['noises'])}). Scores are pooled over the "
         "units of each noise, then averaged over the noises.", "",
         "Separator parameters: `" + json.dumps(cfg["separator"] or "defaults") + "`", "",
         "## Table 1: average accuracy and HIT-FA on the unseen noises (real speech)", "", cmd,
         table1_markdown(prim, pitches)]
    for p in pitches:
        d = res["kl_minus_g"][p]
        L.append(f"KL-SVM minus G-SVM, {PITCH_NAMES[p]}: {d['accuracy_points']:+.1f} points accuracy, "
                 f"{d['hit_fa_points']:+.1f} points HIT-FA (paper: "
                 f"{100 * (PAPER_TABLE1[(p, 'KL-SVM')][0] - PAPER_TABLE1[(p, 'G-SVM')][0]):+.1f} / "
                 f"{100 * (PAPER_TABLE1[(p, 'KL-SVM')][1] - PAPER_TABLE1[(p, 'G-SVM')][1]):+.1f}). "
                 "KL-SVM above MMSE in HIT-FA on every noise: "
                 f"{'yes' if res['kl_above_mmse_every_noise'][p] else 'no'}.")
        L.append("")
    ok = all(res["kl_minus_g"][p]["accuracy_points"] >= 4 and res["kl_minus_g"][p]["hit_fa_points"] >= 5
             and res["kl_above_mmse_every_noise"][p] for p in pitches)
    L += [f"Issue 6 acceptance (KL-SVM above G-SVM by >= 4 points accuracy and >= 5 points HIT-FA with every pitch "
          f"setting, and above MMSE in HIT-FA on every noise): {'met' if ok else 'not met'} in this run.", ""]
    L += ["## Fig. 2: HIT-FA per unseen noise", "", cmd]
    if "fig2" in res["figures"]:
        L += [f"![Fig. 2]({res['figures']['fig2']})", ""]
    for p in pitches:
        L += [f"HIT-FA, {PITCH_NAMES[p]} (MMSE does not use pitch):", "", per_noise_markdown(prim, p)]
        L += [f"Accuracy, {PITCH_NAMES[p]}:", "", per_noise_markdown(prim, p, metric="accuracy")]
    L += ["## Fig. 1: masks of one real test utterance in an unseen noise", "", cmd]
    if "fig1" in res["figures"]:
        L += [f"![Fig. 1]({res['figures']['fig1']})", "", f"Mixture `{res['fig1']['mixture']}` (white = 1).", ""]
    L += ["## Beyond the paper: resynthesised speech", "", cmd,
          "SNR gain (dB) of the resynthesised output over the unprocessed mixture (both against the premixed "
          "speech resynthesised with an all-ones mask), mean over the utterances of each noise. Caution: this SNR "
          "rewards silence -- an all-zero output scores 0 dB, i.e. a gain equal to minus the mixture's SNR -- so a "
          "sparse mask (rethresholding) gains many dB while losing intelligibility; read it with the STOI table.", "",
          resynthesis_markdown(prim, pitches, "snr_gain_db")]
    if res["stoi_available"]:
        L += ["STOI of each output against the premixed speech (`Mixture` = unprocessed all-ones resynthesis):", "",
              resynthesis_markdown(prim, pitches, "stoi")]
    else:
        L += ["STOI: skipped (pystoi not installed; `pip install 'fastifkl[stoi]'`).", ""]
    ctrl = res["groups"].get("control")
    L += ["## Matched-voice control: synthetic-voice test utterances", "", cmd]
    if ctrl:
        L += [f"{ctrl['n_mixtures']} mixtures. Table 1 layout:", "", table1_markdown(ctrl, pitches)]
        for p in pitches:
            L += [f"HIT-FA per noise, {PITCH_NAMES[p]}:", "", per_noise_markdown(ctrl, p)]
    else:
        L += ["Not run (no control utterances selected).", ""]
    L += ["## Wall-clock time of every stage", "", cmd,
          f"{cfg['workers']} worker processes. System load average (1, 5, 15 min) at the start "
          f"{res['machine'].get('load_average_start')}, at the end {res['machine'].get('load_average_end')} "
          "(other jobs on the machine inflate these times).", "", stages_markdown(res["stage_seconds"])]
    L += ["## Models", "", cmd, "| model | stored points | Gaussian-fallback channels | tuned |", "|---|---:|---|---|"]
    for k, m in res["models"].items():
        L.append(f"| {k.replace('|', ', ')} pitch | {m['points_total']} | {m['gaussian_fallback_channels'] or '-'} | "
                 f"{m['tuned'] or '-'} |")
    return "\n".join(L) + "\n"


def write_results(res: dict, out_dir: str | os.PathLike) -> None:
    """The experiment's ``results.json`` and ``RESULTS.md`` in ``out_dir`` (atomic writes)."""
    from ..jsonio import json_default

    out = Path(out_dir)
    with atomic_path(out / "results.json") as tmp:
        Path(tmp).write_text(json.dumps(res, indent=1, sort_keys=True, default=json_default) + "\n")
    with atomic_path(out / "RESULTS.md") as tmp:
        Path(tmp).write_text(results_markdown(res))
