"""Audio loading, validation, atomic writing and exact-SNR mixing."""
import numpy as np
import pytest
import soundfile as sf

from fastifkl import audio
from fastifkl.errors import InputError


def test_roundtrip_and_resampling(tmp_path):
    sr0 = 8000
    t = np.arange(sr0) / sr0
    x = 0.5 * np.sin(2 * np.pi * 440 * t)
    sf.write(tmp_path / "a.wav", x, sr0, subtype="FLOAT")
    y = audio.load(tmp_path / "a.wav")
    assert y.dtype == np.float64 and y.size == 16000
    # the tone keeps its frequency and level after polyphase resampling
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert np.fft.rfftfreq(y.size, 1 / 16000)[np.argmax(spec)] == pytest.approx(440, abs=1)
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=1e-2)
    audio.save(tmp_path / "b.wav", y)
    np.testing.assert_allclose(audio.load(tmp_path / "b.wav"), y, atol=1e-7)
    assert not list(tmp_path.glob(".*tmp"))


def test_stereo_refused_unless_downmix(tmp_path):
    st = np.random.default_rng(0).standard_normal((4000, 2)) * 0.1
    sf.write(tmp_path / "st.wav", st, 16000)
    with pytest.raises(InputError, match="st.wav: has 2 channels.*--downmix"):
        audio.load(tmp_path / "st.wav")
    y = audio.load(tmp_path / "st.wav", downmix=True)
    np.testing.assert_allclose(y, st.mean(axis=1), atol=1e-4)


def test_bad_files(tmp_path):
    (tmp_path / "text.wav").write_text("this is not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 16000)
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1] * 200), 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", np.zeros(100), 16000)
    cases = {"text.wav": "not a readable audio file", "empty.wav": "empty", "nan.wav": "NaN",
             "short.wav": "too short", "missing.wav": "no such file"}
    for name, msg in cases.items():
        with pytest.raises(InputError, match=msg) as ei:
            audio.load(tmp_path / name)
        assert name in str(ei.value) and "\n" not in str(ei.value)


def test_atomic_save_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    audio.save(target, np.zeros(1000))
    before = target.read_bytes()

    def boom(path, *a, **k):  # a crash half-way through writing
        with open(path, "wb") as fh:
            fh.write(b"RIFF\x00\x00")
        raise RuntimeError("disk full")

    from scipy.io import wavfile

    monkeypatch.setattr(wavfile, "write", boom)
    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(RuntimeError):
        audio.save(target, np.ones(1000))
    with pytest.raises(RuntimeError):
        audio.save(tmp_path / "new.flac", np.ones(1000))
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]


@pytest.mark.parametrize("snr", [-5.0, 0.0, 12.5])
def test_mix_at_exact_snr(snr):
    rng = np.random.default_rng(1)
    s = rng.standard_normal(5000)
    v = rng.standard_normal(20000) * 3
    mx = audio.mix_at_snr(s, v, snr, np.random.default_rng(2))
    assert 10 * np.log10(np.sum(mx.speech ** 2) / np.sum(mx.noise ** 2)) == pytest.approx(snr, abs=1e-9)
    np.testing.assert_array_equal(mx.mixture, mx.speech + mx.noise)
    # the segment is the noise at the recorded offset, scaled
    seg = v[mx.offset : mx.offset + 5000]
    ratio = mx.noise / seg
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-12)
    # regenerating from the offset is bit-for-bit
    again = audio.mix_at_snr(s, v, snr, offset=mx.offset)
    assert np.array_equal(again.mixture, mx.mixture)


def test_mix_loops_short_noise():
    s = np.ones(1000)
    v = np.arange(1, 301, dtype=float)
    mx = audio.mix_at_snr(s, v, 0.0, offset=250)
    seg = mx.noise / mx.noise[0] * 251
    np.testing.assert_allclose(seg[:50], np.arange(251, 301))
    np.testing.assert_allclose(seg[50:60], np.arange(1, 11))


def test_snr_db():
    r = np.ones(100)
    assert audio.snr_db(r, r * 1.1) == pytest.approx(20.0)
