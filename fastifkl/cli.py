"""The ``fastifkl`` command line (typer).

Exit codes (README "Exit codes" says the same):

- 0: everything asked for was done.
- 1: some work failed for a reason other than the user's input: a file whose worker process
  died twice (e.g. the out-of-memory killer), an unexpected error while processing one file.
- 2: bad usage, bad input or an unusable output: missing/unreadable/empty/non-finite audio, a
  bad model file, an output directory that cannot be made, an output that cannot be written
  (no permission, a read-only or full disk, a directory in the way).
- 130: interrupted.

Errors end with one line on stderr, ``fastifkl: error: <path>: <problem>``, never a traceback.
A batch (``separate`` on several files) reports each bad file in one line
(``fastifkl: skipped: <file>: <problem>``), still does the good files, and ends with one
summary line; its exit code is 2 if any input was bad or any output could not be written, else
1 if any file failed otherwise, else 0.  A full disk (or a read-only file system) stops the
batch at once: every further file would fail too.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import typer

from . import __version__
from .cli_support import Bars, fail, handles_errors, progress, split_list, tidy_help

app = typer.Typer(
    name="fastifkl",
    help="Monaural speech separation with domain-invariant learned kernels (kernel ITML + per-channel SVMs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool):
    if value:
        typer.echo(f"fastifkl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
):
    """fastifkl: separate speech from non-speech noise in single-microphone recordings."""


@app.command()
@handles_errors
def mix(
    speech_dir: Path = typer.Argument(..., help="Directory of clean utterances (MANIFEST.tsv in it or its parent is "
                                                "used when present)."),
    noise_dir: Path = typer.Argument(..., help="Directory of noise recordings."),
    out: Path = typer.Option(..., "-o", "--out", help="Mixture-set directory to create (manifest.jsonl)."),
    snr: str = typer.Option("-5", "--snr", help="Input SNR in dB over the whole utterance; a comma list mixes "
                                                "every pair at each SNR (or at one drawn SNR with --draw-snr)."),
    draw_snr: bool = typer.Option(False, "--draw-snr", help="With several --snr values: one SNR per utterance-noise "
                                                            "pair, drawn (seeded) from the list."),
    append: bool = typer.Option(False, "--append", help="Add these mixtures to the set already in OUT."),
    split: Optional[str] = typer.Option(None, "--split",
                                        help="Comma-separated utterance splits (MANIFEST 'split' column)."),
    noises: Optional[str] = typer.Option(None, "--noises", help="Comma-separated noise labels (or file stems)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise offsets."),
    wavs: bool = typer.Option(False, "--wavs", help="Also write mixture/speech/noise wavs under OUT/wav."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages; errors still go to stderr."),
):
    """Pair every selected utterance with every selected noise at an exact SNR (a mixture set)."""
    from .corpus import MixtureSet, scan, select_noises, select_speech
    from .errors import InputError

    try:
        snrs = [float(v) for v in split_list(snr) or []]
    except ValueError:
        raise InputError(f"--snr must be a number or a comma list of numbers, got {snr!r}") from None
    speech = select_speech(scan(speech_dir, "speech"), split_list(split))
    nz = select_noises(scan(noise_dir, "noise"), split_list(noises))
    before = len(MixtureSet.load(out)) if append else 0
    ms = MixtureSet.create(speech, nz, out, snr_db=snrs, seed=seed, draw_snr=draw_snr, append=append)
    if wavs:
        ms.write_wavs()
    if not quiet:
        per = f" x {len(snrs)} SNRs" if len(snrs) > 1 and not draw_snr else ""
        typer.echo(f"{len(ms) - before} mixtures ({len(speech)} utterances x {len(nz)} noises{per}) -> "
                   f"{out / 'manifest.jsonl'}" + (f" ({len(ms)} in the set)" if append else ""))


@app.command()
@handles_errors
def augment(
    speech_dir: Path = typer.Argument(..., help="Directory of clean utterances (MANIFEST.tsv in it or its parent is "
                                                "used when present)."),
    out: Path = typer.Option(..., "-o", "--out", help="Directory for the transformed utterances and their "
                                                      "MANIFEST.tsv (mix it with 'fastifkl mix OUT NOISE_DIR ...')."),
    split: Optional[str] = typer.Option(None, "--split", help="Comma-separated utterance splits to transform."),
    kinds: str = typer.Option("vtlp,female", "--kinds", help="Transforms: vtlp (warp factor 0.9-1.1, pitch kept), "
                              "female (formant ratio 1.1-1.2, pitch median 180-240 Hz)."),
    per_kind: int = typer.Option(1, "--per-kind", help="Transformed copies per utterance and transform."),
    seed: int = typer.Option(0, "--seed", help="Seed of the drawn transform parameters."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary; errors still shown."),
):
    """Talker augmentation: new voices from the training speech (Praat "Change gender").

    Needs the "train" extra (praat-parselmouth).  Deterministic for a seed."""
    from .augment import augment_corpus
    from .corpus import scan, select_speech

    items = select_speech(scan(speech_dir, "speech"), split_list(split))
    with progress(not quiet) as prog:
        bars = Bars(prog)
        man = augment_corpus(items, out, kinds=split_list(kinds) or [], per_kind=per_kind, seed=seed,
                             progress=lambda d, t: bars("augment", d, t))
    if not quiet:
        typer.echo(f"{len(items) * len(split_list(kinds) or []) * per_kind} utterances -> {man}")


def _estimator_defaults() -> dict:
    """The defaults of :class:`~fastifkl.separator.Separator`'s parameters: `train`'s defaults."""
    import inspect

    from .separator import Separator

    return {k: p.default for k, p in inspect.signature(Separator).parameters.items()}


_SEP = _estimator_defaults()


@app.command()
@handles_errors
def train(
    set_dir: Path = typer.Argument(..., help="Mixture set (from 'fastifkl mix'); its 'kernel' split learns the kernel, "
                                             "the rest train the SVMs."),
    out: Path = typer.Option(..., "-o", "--out", help="Model file to write (.fkl)."),
    kernel: str = typer.Option(_SEP["kernel"], "--kernel", help="learned (KL-SVM) or gaussian (G-SVM)."),
    pitch: str = typer.Option(_SEP["pitch"], "--pitch", help="Pitch of the training features: 'true' (premixed "
                                                             "speech) or 'estimated' (mixture)."),
    pitch_method: str = typer.Option(_SEP["pitch_method"], "--pitch-method",
                                     help="Pitch tracker for training and for separating with the model: learned or "
                                          "correlogram."),
    seed: int = typer.Option(_SEP["seed"], "--seed", help="Seed of the unit sampling and of random ITML orders."),
    C: float = typer.Option(_SEP["C"], "--C", help="SVM penalty."),
    gamma: float = typer.Option(_SEP["gamma"], "--gamma", help="ITML slack trade-off."),
    sigma: Optional[float] = typer.Option(_SEP["sigma"], "--sigma", help="Gaussian width (default: median heuristic "
                                                                         "x --sigma-scale)."),
    sigma_scale: float = typer.Option(_SEP["sigma_scale"], "--sigma-scale", help="Factor on the median width."),
    per_domain: int = typer.Option(_SEP["per_domain"], "--per-domain", help="Units per noise condition and channel "
                                                                            "for the constraints."),
    max_train: int = typer.Option(_SEP["max_train"], "--max-train", help="SVM training units per channel (class mix "
                                                                         "set by --svm-prior)."),
    units_per_mixture: int = typer.Option(_SEP["units_per_mixture"], "--units-per-mixture",
                                          help="Candidate units per class, channel and mixture kept for training."),
    calib_per_mixture: int = typer.Option(_SEP["calib_per_mixture"], "--calib-per-mixture",
                                          help="Units per channel and SVM mixture held out for the Platt calibration "
                                               "(0: none; the ratio output then uses a fixed sigmoid)."),
    svm_prior: str = typer.Option(_SEP["svm_prior"], "--svm-prior", help="Class mix of the SVM training units: "
                                  "'natural' (the channel's IBM prior in the training mixtures) or 'balanced' (1:1)."),
    itml_mode: str = typer.Option(_SEP["itml_mode"], "--itml-mode", help="lowrank or exact."),
    itml_order: str = typer.Option(_SEP["itml_order"], "--itml-order", help="Order of the ITML projections: given, "
                                                                            "similar_first or random (seeded)."),
    rank: Optional[int] = typer.Option(_SEP["rank"], "--rank", help="Rank of the low-rank ITML (default: the smallest "
                                       "rank with <= 1 % relative truncation error of the base kernel)."),
    max_sweeps: int = typer.Option(_SEP["max_sweeps"], "--max-sweeps", help="Most ITML sweeps over the constraints."),
    channels: int = typer.Option(_SEP["n_channels"], "--channels", help=f"Gammatone channels ({_SEP['fmin']:g}-"
                                                                        f"{_SEP['fmax']:g} Hz)."),
    split: Optional[str] = typer.Option(None, "--split", help="Use only these splits of the set (comma-separated; "
                                                              "default: all but tune, test and test_real)."),
    tune: bool = typer.Option(False, "--tune", help="Choose sigma scale, C and gamma on the set's 'tune' split first."),
    solver: str = typer.Option(_SEP["solver"], "--solver", help="libsvm (C-SVC on a precomputed Gram matrix of "
                               "--max-train units) or liblinear (linear SVM on a Nystroem map: paper scale)."),
    landmarks: int = typer.Option(_SEP["n_landmarks"], "--landmarks", help="Landmarks of the Nystroem map "
                                  "(liblinear; model size and decision cost grow with it)."),
    landmark_method: str = typer.Option(_SEP["landmark_method"], "--landmark-method",
                                        help="Landmarks of the Gaussian map: uniform (seeded sample) or kmeans."),
    all_units: bool = typer.Option(False, "--all-units", help="Train on every unit of the SVM mixtures (no "
                                   "--max-train/--units-per-mixture caps; needs --solver liblinear)."),
    select: Optional[str] = typer.Option(None, "--select", help="lono: choose C, sigma scale and (gaussian) the "
                                         "landmark method or (learned) gamma by leave-one-noise-out on the training "
                                         "set first (the same budget for both kernels)."),
    select_channel_step: int = typer.Option(4, "--select-channel-step", help="--select scores every Nth channel."),
    select_max_units: int = typer.Option(8000, "--select-max-units", help="--select: training units per fold and "
                                         "channel (a seeded sample, the same for every setting)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Local worker processes (-1: one per core)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (extra 'dask')."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or summary; errors still shown."),
):
    """Train a separator (kernel learning + one SVM per channel) and write a model file."""
    import time

    from .corpus import MixtureSet
    from .separator import Separator
    from .training import training_sets

    train_set, tune_set = training_sets(MixtureSet.load(set_dir), split_list(split), tune=tune)
    sep = Separator(kernel=kernel, C=C, gamma=gamma, sigma=sigma, sigma_scale=sigma_scale, per_domain=per_domain,
                    max_train=max_train, itml_mode=itml_mode, rank=rank, max_sweeps=max_sweeps, pitch=pitch, seed=seed,
                    n_channels=channels, svm_prior=svm_prior, itml_order=itml_order,
                    units_per_mixture=units_per_mixture, calib_per_mixture=calib_per_mixture, solver=solver,
                    n_landmarks=landmarks, landmark_method=landmark_method, pitch_method=pitch_method)
    if all_units:
        sep.set_params(max_train=None, units_per_mixture=None)
    t0 = time.perf_counter()
    with progress(not quiet) as prog:
        sep.fit(train_set, tune_set=tune_set, workers=workers, scheduler=scheduler, progress=Bars(prog),
                log=None if quiet else typer.echo, select=select,
                select_options={"channel_step": select_channel_step, "max_units": select_max_units})
    sep.save(out)
    if not quiet:
        s = sep.size_summary()
        typer.echo(f"{kernel} model: {len(train_set)} mixtures, {s['points_total']} stored points, "
                   f"{time.perf_counter() - t0:.0f} s -> {out} ({out.stat().st_size / 1e6:.1f} MB)")


def _separate_job(job: dict) -> tuple:
    """The job of one file (:func:`fastifkl.batch.separate_file`); a module attribute so that a
    test can replace it (workers receive it by reference)."""
    from .batch import separate_file

    return separate_file(job)


@app.command()
@handles_errors
def separate(
    inputs: List[str] = typer.Argument(..., help="Audio files, directories or glob patterns."),
    model: Optional[Path] = typer.Option(None, "-m", "--model",
                                         help="Model file (default: the model shipped with fastifkl)."),
    out: Path = typer.Option(Path("."), "-o", "--out", help="Output directory for <name>.sep.wav."),
    mask: bool = typer.Option(False, "--mask", help="Also write <name>.mask.npy: the binary mask (channels x "
                                                    "frames, uint8; the SVMs' sign, the paper's), whatever --output."),
    output: str = typer.Option("ratio", "--output", help="ratio (a soft mask from the calibrated speech "
                               "posteriors; default) or binary (the paper's binary mask)."),
    downmix: bool = typer.Option(False, "--downmix", help="Average the channels of multi-channel files."),
    workers: int = typer.Option(1, "--workers", "-j", help="Files separated side by side in local worker processes."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (extra 'dask')."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or list of written files; errors "
                                                            "and the summary still go to stderr."),
):
    """Separate speech from noise in each input, block by block (memory bounded whatever the length).

    A bad file is reported in one line and skipped, the rest are done; exit 2 if any input was
    bad, 1 if a file failed otherwise, 0 if all were done."""
    from .audio import output_dir
    from .batch import Summary, expand_inputs, separate_files
    from .evaluate import cached_model
    from .separator import DEFAULT_MODEL, OUTPUTS

    if output not in OUTPUTS:
        fail(f"--output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    if model is None and not DEFAULT_MODEL.is_file():
        fail(f"{DEFAULT_MODEL}: the default model is missing from this installation; pass -m MODEL")
    model_path = str((model or DEFAULT_MODEL).resolve())
    cached_model(model_path)  # load and validate once, before any work (exit 2 on a bad model)
    files = expand_inputs(inputs)
    output_dir(out)  # made and writable, before any work (exit 2 naming it otherwise)
    label = "error" if len(files) == 1 else "skipped"
    summary = Summary(len(files))
    with progress(not quiet) as prog:
        task = prog.add_task("separate", total=len(files)) if prog is not None else None
        for _, target, err in separate_files(files, model_path, out, mask=mask, downmix=downmix, output=output,
                                             workers=workers, scheduler=scheduler, summary=summary,
                                             job_fn=_separate_job):
            if err is None and not quiet and prog is None:
                typer.echo(target)
            elif err is not None:
                typer.echo(f"fastifkl: {label}: {err[1]}", err=True)
            if prog is not None:
                prog.advance(task)
    for line in summary.lines():
        typer.echo(f"fastifkl: {line}", err=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
@handles_errors
def evaluate(
    model: Path = typer.Argument(..., help="Model file."),
    set_dir: Path = typer.Argument(..., help="Mixture set to score on."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", help="Other model(s) scored on the same units."),
    pitch: str = typer.Option("estimated", "--pitch",
                              help="'estimated' (tracked on the mixture) or 'true' (premixed speech)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only these splits (comma-separated)."),
    noises: Optional[str] = typer.Option(None, "--noises", help="Only these noise labels (comma-separated)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the scores as JSON."),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="Write the table as Markdown."),
    plot: Optional[Path] = typer.Option(None, "--plot",
                                        help="Directory for the mask figure (IBM and each model's mask)."),
    workers: int = typer.Option(1, "--workers", "-j", help="Local worker processes (one mixture per job)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (extra 'dask')."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of the table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or figure path; the table (or "
                                                            "JSON) is still printed."),
):
    """HIT, FA, HIT-FA and accuracy per noise and overall (Markdown table, JSON with --report)."""
    from .corpus import MixtureSet
    from .evaluate import evaluate as run_eval
    from .evaluate import markdown_table, report_json, write_report

    if pitch not in ("true", "estimated"):
        fail(f"--pitch must be 'true' or 'estimated', got {pitch!r}")
    ms = MixtureSet.load(set_dir).select(splits=split_list(split), domains=split_list(noises))
    if len(ms) == 0:
        fail(f"{set_dir}: no mixtures match the selection")
    paths = [str(model)] + [str(p) for p in (compare or [])]
    example_id = ms.entries[0].id if plot else None
    with progress(not quiet) as prog:
        bars = Bars(prog)
        rep = run_eval(paths, ms, pitch=pitch, workers=workers, scheduler=scheduler, keep_masks_of=example_id,
                       progress=lambda d, t: bars("evaluate", d, t))
    write_report(rep, report, markdown)
    if as_json:
        typer.echo(json.dumps(report_json(rep), indent=1, sort_keys=True))
    else:
        typer.echo(markdown_table(rep))
    if plot and rep["example"] is not None:
        from .evaluate import cached_model
        from .plots import save_masks_png

        ex = rep["example"]
        panels = {"Ideal binary mask": ex["ibm"]}
        for p, m in zip(paths, ex["models"]):
            kind = cached_model(p).kernel
            panels[f"{'KL-SVM' if kind == 'learned' else 'G-SVM'} ({Path(p).stem})"] = m
        target = save_masks_png(Path(plot) / f"masks_{ex['id']}.png", panels, title=ex["id"])
        if not quiet:
            typer.echo(f"figure: {target}")


@app.command()
@handles_errors
def info(model: Path = typer.Argument(..., help="Model file.")):
    """Describe a model file: version, kernel, parameters, training data, size."""
    from .separator import Separator

    sep = Separator.load(model)
    meta = sep.meta_
    tr = meta.get("training", {})
    chans = meta.get("channels", [])
    typer.echo(f"{model}: fastifkl model format {meta['format_version']}, "
               f"written by fastifkl {meta.get('package_version')}")
    legacy = "pitch_method" not in meta.get("params", {})
    typer.echo(f"pitch tracker: {sep.pitch_method}"
               + (" (not recorded in the file: a model from before the learned tracker)" if legacy else ""))
    typer.echo(f"kernel: {sep.kernel} ({'KL-SVM' if sep.kernel == 'learned' else 'G-SVM'}), pitch: {sep.pitch}, "
               f"channels: {len(sep.cfs_)} ({sep.cfs_[0]:.0f}-{sep.cfs_[-1]:.0f} Hz), features: {sep.mean_.shape[1]}")
    typer.echo("params: " + ", ".join(f"{k}={v}" for k, v in sep.get_params().items()))
    typer.echo(f"training: {tr.get('mixtures', '?')} mixtures ({tr.get('kernel_mixtures', '?')} kernel learning, "
               f"{tr.get('svm_mixtures', '?')} SVM), noises {', '.join(tr.get('domains', []))}, "
               f"digest {str(tr.get('digest', ''))[:16]}")
    if sep.solver == "liblinear":
        typer.echo(f"solver: liblinear (linear SVM, -s 2, balanced class weights) on a Nystroem map, "
                   f"{sep.n_landmarks} landmarks ({sep.landmark_method}); training units per channel: "
                   + ("all" if sep.max_train is None else f"at most {sep.max_train}"))
    else:
        typer.echo(f"solver: libsvm (C-SVC, precomputed kernel), at most {sep.max_train} training units per channel")
    if chans:
        nsv = [c.get("n_sv", 0) for c in chans]
        ntr = [c.get("n_train", 0) for c in chans]
        what = "landmarks" if sep.solver == "liblinear" else "support vectors"
        typer.echo(f"{what} per channel: min {min(nsv)}, mean {np.mean(nsv):.0f}, max {max(nsv)}; training units "
                   f"per channel: min {min(ntr)}, mean {np.mean(ntr):.0f}, max {max(ntr)}")
        fb = [i for i, c in enumerate(chans) if "fallback" in c]
        if fb:
            typer.echo(f"channels that fell back to the Gaussian kernel: {fb}")
    sel = getattr(sep, "selection_", None)
    if sel:
        conf = sel.get("confirmed") or {}
        typer.echo(f"selection: leave-one-noise-out over {', '.join(sel.get('folds', []))}, "
                   f"{sel.get('settings_scored')} settings scored (budget {sel.get('budget')}) on channels "
                   f"{sel.get('channels')}, at most {sel.get('max_units')} units per fold and channel")
        typer.echo("  grid: " + "; ".join(f"{k} {v}" for k, v in sel.get("grid", {}).items()))
        for t in sel.get("trials", []):
            typer.echo("  " + ", ".join(f"{k}={v}" for k, v in t["params"].items())
                       + f": HIT-FA {t['hit_fa']:.3f} (worst fold {t['worst']:.3f})")
        typer.echo("  chosen: " + ", ".join(f"{k}={v}" for k, v in sel.get("chosen", {}).items())
                   + f" (HIT-FA {sel.get('score', float('nan')):.3f}"
                   + (f"; on all channels {conf['hit_fa']:.3f})" if conf else ")"))
    if sep.level_rms is None:
        typer.echo("level: none (format-1 model: inputs are analysed at their own level)")
    else:
        typer.echo(f"level: every input is scaled to RMS {sep.level_rms:g} before analysis")
    if sep.calibrated:
        a = sep.platt_[:, 0]
        typer.echo(f"calibration: Platt per channel (A {a.min():.2f} to {a.max():.2f}); "
                   + str(tr.get("calibration", {}).get("units", "")))
    else:
        from .separator import FALLBACK_PLATT

        typer.echo(f"calibration: none in the file; --output ratio uses the fixed fallback posterior "
                   f"1/(1+exp({FALLBACK_PLATT[0]:g} d + {FALLBACK_PLATT[1]:g})) for every channel")
    typer.echo(f"ratio mask: max(p^{sep.mask_beta:g}, {sep.mask_floor_db:g} dB)")
    s = sep.size_summary()
    typer.echo(f"stored points: {s['points_total']}; file size {model.stat().st_size / 1e6:.1f} MB")


@app.command("cochleagram")
@handles_errors
def cochleagram_cmd(
    inputs: List[Path] = typer.Argument(..., help="Audio files."),
    out: Path = typer.Option(Path("."), "-o", "--out", help="Output directory."),
    channels: int = typer.Option(64, "--channels", help="Number of gammatone channels."),
    fmin: float = typer.Option(80.0, "--fmin", help="Lowest centre frequency (Hz)."),
    fmax: float = typer.Option(5000.0, "--fmax", help="Highest centre frequency (Hz)."),
    png: bool = typer.Option(False, "--png", help="Also write a PNG image (needs matplotlib)."),
    downmix: bool = typer.Option(False, "--downmix", help="Average the channels of multi-channel files."),
):
    """Write the cochleagram (C x M energies, 20 ms frames, 10 ms hop) of each file as NPY (block by block)."""
    from .audio import output_dir
    from .batch import file_stats, write_cochleagram
    from .gammatone import erb_space

    cfs = erb_space(fmin, fmax, channels)
    # validate every input (the pre-pass reads each in blocks) and the output directory before writing anything
    stats = [file_stats(p, downmix=downmix) for p in inputs]
    output_dir(out)
    for p, st in zip(inputs, stats):
        target = write_cochleagram(p, out, cfs, downmix=downmix, stats=st)
        if png:
            from .plots import save_cochleagram_png

            save_cochleagram_png(out / f"{p.stem}.cochleagram.png", np.load(target, mmap_mode="r"), title=p.name)
        typer.echo(str(target))


@app.command()
@handles_errors
def demo(
    out: Path = typer.Option(Path("fastifkl-demo"), "-o", "--out", help="Output directory."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus, the mixing and the training."),
    quick: bool = typer.Option(False, "--quick", help="A tiny run (fewer sentences, noises and channels) in seconds."),
    workers: int = typer.Option(2, "--workers", "-j", help="Local worker processes."),
):
    """End to end on a corpus it builds itself: train, separate, score and plot (extra "demo").

    TTS speech + generated noises, G-SVM and KL-SVM trained in minutes, scores on unseen noises
    beside the shipped default model's, wavs and the mask figure (needs the optional "demo" extra of
    fastifkl)."""
    from .demo import run_demo

    run_demo(out, seed=seed, quick=quick, workers=workers, log=typer.echo)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(
    names: Optional[List[str]] = typer.Argument(
        None, help="Benchmarks to run (default: all in bench/), then options passed on to them "
                   "(e.g. 'fastifkl bench quality -j 2 --systems fastifkl,rnnoise')."),
    quick: bool = typer.Option(False, "--quick", help="Shorter inputs."),
):
    """Run the side-by-side benchmarks in bench/ (ours vs peers; ratios; JSON lines in bench/results/)."""
    names = list(names or [])
    first_opt = next((i for i, n in enumerate(names) if n.startswith("-")), len(names))
    names, passed = names[:first_opt], names[first_opt:]
    here = Path.cwd() / "bench"
    if not here.is_dir():
        here = Path(__file__).resolve().parents[1] / "bench"
    if not here.is_dir():
        fail("bench/ not found: run 'fastifkl bench' from a checkout of the fastifkl repository")
    scripts = sorted(p for p in here.glob("*.py") if not p.name.startswith("_"))
    if names:
        scripts = [p for p in scripts if p.stem in names]
        if not scripts:
            fail(f"no benchmark named {', '.join(names)} in {here}")
    rc = 0
    for p in scripts:
        typer.echo(f"== {p.stem}")
        args = [sys.executable, str(p)] + (["--quick"] if quick else []) + passed
        rc |= subprocess.call(args)
    raise typer.Exit(1 if rc else 0)


@app.command()
@handles_errors
def experiment(
    config: Optional[Path] = typer.Argument(None, help="TOML file of protocol settings (default: the corpus "
                                                       "README's protocol)."),
    quick: bool = typer.Option(False, "--quick", help="Scaled-down protocol for CI (a few minutes on 2 cores)."),
    corpus: Optional[Path] = typer.Option(None, "--corpus",
                                          help="Corpus directory with MANIFEST.tsv (default ../shared/corpus)."),
    test_noises: Optional[Path] = typer.Option(None, "--test-noises", help="Use every noise file of this directory "
                                               "as the test noises (labels = file stems)."),
    out: Path = typer.Option(Path("docs"), "--out", "-o", help="Where RESULTS.md, results.json and the figures go."),
    work: Optional[Path] = typer.Option(None, "--work", help="Work directory for mixture manifests and models "
                                                             "(default: a new temporary directory)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Local worker processes (default 2)."),
    tune: bool = typer.Option(False, "--tune", help="Tune sigma scale, C and gamma on the 'tune' split (training "
                                                    "noises only) first."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress messages; errors still go to stderr."),
):
    """Run the paper's experiment (Section 5) end to end and write docs/RESULTS.md, results.json and figures."""
    import shlex

    from .experiment import load_config, run_experiment

    cfg = load_config(config, quick=quick, corpus=str(corpus) if corpus else None,
                      test_noise_dir=str(test_noises) if test_noises else None, workers=workers,
                      tune=True if tune else None)
    ours = sys.argv and sys.argv[1:2] == ["experiment"]
    command = "fastifkl " + shlex.join(sys.argv[1:]) if ours else "fastifkl experiment"
    run_experiment(cfg, out_dir=out, work_dir=work, command=command, log=None if quiet else typer.echo)


tidy_help(app)  # after the last command: docstrings reflowed for rich, no <bool> beside flags


def main() -> None:
    app(prog_name="fastifkl")


if __name__ == "__main__":
    main()
