"""The ``fastifkl`` command line (typer).

Exit codes: 0 ok, 1 the work failed (e.g. some files of a batch), 2 bad usage or bad input.
Bad input ends with one line on stderr, ``fastifkl: error: <file>: <problem>``.
"""
from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import FastifklError

app = typer.Typer(
    name="fastifkl",
    help="Monaural speech separation with domain-invariant learned kernels (kernel ITML + per-channel SVMs).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(msg: str, code: int = 2) -> None:
    """Print one line on stderr and exit with ``code``."""
    typer.echo(f"fastifkl: error: {msg}", err=True)
    raise typer.Exit(code)


def handles_errors(fn):
    """Turn a FastifklError (bad input) into one stderr line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FastifklError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            typer.echo("fastifkl: interrupted", err=True)
            raise typer.Exit(130)

    return wrapper


def _split_list(value: Optional[str]) -> Optional[list[str]]:
    if value is None or value.strip() == "":
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _version_callback(value: bool):
    if value:
        typer.echo(f"fastifkl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
):
    """fastifkl: separate speech from non-speech noise in single-microphone recordings."""


@app.command()
@handles_errors
def mix(
    speech_dir: Path = typer.Argument(..., help="Directory of clean utterances (MANIFEST.tsv in it or its parent is used when present)."),
    noise_dir: Path = typer.Argument(..., help="Directory of noise recordings."),
    out: Path = typer.Option(..., "-o", "--out", help="Mixture-set directory to create (manifest.jsonl)."),
    snr: float = typer.Option(-5.0, "--snr", help="Input SNR in dB over the whole utterance."),
    split: Optional[str] = typer.Option(None, "--split", help="Comma-separated utterance splits (MANIFEST 'split' column)."),
    noises: Optional[str] = typer.Option(None, "--noises", help="Comma-separated noise labels (or file stems)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the noise offsets."),
    wavs: bool = typer.Option(False, "--wavs", help="Also write mixture/speech/noise wavs under OUT/wav."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Pair every selected utterance with every selected noise at an exact SNR (a mixture set)."""
    from .corpus import MixtureSet, scan, select_noises, select_speech

    speech = select_speech(scan(speech_dir, "speech"), _split_list(split))
    nz = select_noises(scan(noise_dir, "noise"), _split_list(noises))
    ms = MixtureSet.create(speech, nz, out, snr_db=snr, seed=seed)
    if wavs:
        ms.write_wavs()
    if not quiet:
        typer.echo(f"{len(ms)} mixtures ({len(speech)} utterances x {len(nz)} noises) -> {out / 'manifest.jsonl'}")


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
    """Write the cochleagram (C x M energies, 20 ms frames, 10 ms hop) of each file as NPY."""
    import numpy as np

    from .audio import atomic_path, load
    from .gammatone import cochleagram, erb_space, filterbank

    cfs = erb_space(fmin, fmax, channels)
    # validate every input before writing anything
    signals = [(p, load(p, downmix=downmix)) for p in inputs]
    out.mkdir(parents=True, exist_ok=True)
    for p, x in signals:
        e = cochleagram(filterbank(x, cfs=cfs))
        target = out / f"{p.stem}.cochleagram.npy"
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, e)
        if png:
            from .plots import save_cochleagram_png

            save_cochleagram_png(out / f"{p.stem}.cochleagram.png", e, title=p.name)
        typer.echo(str(target))


@app.command()
@handles_errors
def demo(
    out: Path = typer.Option(Path("fastifkl-demo"), "-o", "--out", help="Output directory."),
    seed: int = typer.Option(0, "--seed"),
):
    """Run the front end on a generated signal: cochleagram (PNG/NPY), IBM and resynthesis."""
    from .demo import run_frontend_demo

    for line in run_frontend_demo(out, seed=seed):
        typer.echo(line)


@app.command()
def bench(
    names: Optional[List[str]] = typer.Argument(None, help="Benchmarks to run (default: all in bench/)."),
    quick: bool = typer.Option(False, "--quick", help="Shorter inputs."),
):
    """Run the side-by-side benchmarks in bench/ (ours vs peers; ratios; JSON lines in bench/results/)."""
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
        args = [sys.executable, str(p)] + (["--quick"] if quick else [])
        rc |= subprocess.call(args)
    raise typer.Exit(1 if rc else 0)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
