"""Talker augmentation (fastifkl.augment): formants and pitch move as asked, checked with an
independent LPC formant estimate (NumPy/SciPy) and our own pitch tracker; files deterministic."""
import numpy as np
import pytest
import soundfile as sf
from scipy.linalg import solve_toeplitz
from scipy.signal import lfilter

pytest.importorskip("parselmouth")

from fastifkl import augment  # noqa: E402
from fastifkl.corpus import scan  # noqa: E402
from fastifkl.pitch import track  # noqa: E402

SR = 16000


def vowel(f0=120.0, formants=((500, 80), (1500, 120), (2500, 160)), seconds=1.5):
    """A sustained vowel: impulse train at f0 through three resonators."""
    n = int(seconds * SR)
    src = np.zeros(n)
    src[(np.arange(0, seconds, 1 / f0) * SR).astype(int)] = 1.0
    y = src
    for fc, bw in formants:
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1.0], [1, -2 * r * np.cos(2 * np.pi * fc / SR), r * r], y)
    return 0.3 * y / np.abs(y).max()


def lpc_formants(x, order=8):
    """Formant frequencies (Hz) from the roots of an LPC polynomial of the whole signal."""
    x = lfilter([1, -0.9], [1], x[int(0.2 * SR):-int(0.2 * SR)]) * np.hamming(x.size - int(0.4 * SR))
    r = np.correlate(x, x, "full")[x.size - 1: x.size + order]
    a = solve_toeplitz(r[:-1], r[1:])
    roots = np.roots(np.r_[1, -a])
    roots = roots[np.imag(roots) > 0]
    f = np.sort(np.angle(roots) * SR / (2 * np.pi))
    return f[(f > 250) & (f < 4000)]


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_scales_formants_and_keeps_pitch(alpha):
    x = vowel()
    y = augment.vtlp(x, alpha)
    assert y.shape == x.shape and np.std(y) == pytest.approx(np.std(x), rel=1e-9)
    f_in, f_out = lpc_formants(x), lpc_formants(y)
    for f in (1500.0, 2500.0):  # the two upper formants, well resolved
        got = f_out[np.argmin(np.abs(f_out - alpha * f))]
        assert got == pytest.approx(alpha * f, rel=0.05), (f_in, f_out)
    p_in, p_out = track(x), track(y)
    assert np.median(p_out[p_out > 0]) == pytest.approx(np.median(p_in[p_in > 0]), rel=0.05)


def test_female_transform_moves_pitch_to_the_target_and_is_seeded():
    x = vowel(f0=110.0)
    y = augment.change_gender(x, 1.15, 210.0, seed=4)
    # f0 from the spectrum (NumPy): the strongest peak of the long-term spectrum in 80-400 Hz
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    f = np.fft.rfftfreq(y.size, 1 / SR)
    band = (f > 80) & (f < 400)
    assert f[band][np.argmax(spec[band])] == pytest.approx(210.0, rel=0.06)
    f_out = lpc_formants(y)
    assert np.min(np.abs(f_out - 1.15 * 1500)) < 0.05 * 1.15 * 1500
    # Praat's PSOLA draws random numbers: seeded, the samples repeat
    np.testing.assert_array_equal(augment.change_gender(x, 1.15, 210.0, seed=4), y)
    assert not np.array_equal(augment.change_gender(x, 1.15, 210.0, seed=5), y)


def test_drawn_parameters_lie_in_their_ranges():
    rng = np.random.default_rng(0)
    v = [augment.draw_params("vtlp", rng) for _ in range(200)]
    f = [augment.draw_params("female", rng) for _ in range(200)]
    assert all(0.9 <= p["formant_ratio"] <= 1.1 and p["pitch_median"] == 0 for p in v)
    assert all(1.1 <= p["formant_ratio"] <= 1.2 and 180 <= p["pitch_median"] <= 240 for p in f)
    with pytest.raises(Exception, match="unknown augmentation"):
        augment.draw_params("robot", rng)


def test_augment_command_writes_a_deterministic_corpus(tmp_path):
    from typer.testing import CliRunner

    from fastifkl.cli import app

    src = tmp_path / "c" / "speech"
    src.mkdir(parents=True)
    rows = ["file\tkind\tlabel\tsplit"]
    for i, split in enumerate(["svm", "svm", "test"]):
        sf.write(src / f"u{i}.flac", vowel(100 + 10 * i, seconds=0.8), SR, subtype="PCM_24")
        rows.append(f"speech/u{i}.flac\tspeech\tvoice\t{split}")
    (tmp_path / "c" / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    outs = []
    for run in ("a", "b"):
        r = CliRunner().invoke(app, ["augment", str(src), "-o", str(tmp_path / run), "--split", "svm",
                                     "--seed", "3", "-q"])
        assert r.exit_code == 0, r.output
        outs.append(tmp_path / run)
    names = sorted(p.name for p in outs[0].iterdir())
    assert names == ["MANIFEST.tsv", "u0.female0.flac", "u0.vtlp0.flac", "u1.female0.flac", "u1.vtlp0.flac"]
    for n in names:
        assert (outs[0] / n).read_bytes() == (outs[1] / n).read_bytes()
    items = scan(outs[0], "speech")  # its own MANIFEST.tsv: the splits come along
    assert [it.split for it in items] == ["svm"] * 4
    r = CliRunner().invoke(app, ["augment", str(src), "-o", str(tmp_path / "x"), "--kinds", "robot", "-q"])
    assert r.exit_code == 2 and "unknown augmentation" in r.output
