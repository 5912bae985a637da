"""A small seeded fuzz of what users hand us: model files and audio files with mutated bytes,
headers and contents.  Each one is either still valid (exit 0) or refused with ONE line naming
the file, exit 2 -- never a traceback (issue 19, item 5)."""
import io
import zipfile

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fastifkl.cli import app
from fastifkl.errors import FastifklError
from fastifkl.separator import Separator
from tiny_model import tiny_model

runner = CliRunner()
N_MODELS = 48
N_AUDIO = 32
# bytes an .npy header is made of: mutations with them reach numpy's header parser (tokenizer)
HEADER_BYTES = b" '\"(){}[],:0123456789<>|fFTruealsodiscrhpx_\\\n\t#;=."


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    return tiny_model(d / "tiny.fkl", n_channels=3, n_points=5), d


def _entries(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in entries.items():
            z.writestr(n, b)
    return path


def _mutate(b: bytes, lo: int, hi: int, rng, alphabet: bytes | None) -> bytes:
    """1-3 edits (replace, delete or insert a byte) at random places of ``b[lo:hi]``."""
    b = bytearray(b)
    for _ in range(int(rng.integers(1, 4))):
        i = int(rng.integers(lo, max(lo + 1, min(hi, len(b)))))
        new = int(rng.integers(256)) if alphabet is None else alphabet[int(rng.integers(len(alphabet)))]
        op = int(rng.integers(3))
        if op == 0 and i < len(b):
            b[i] = new
        elif op == 1 and i < len(b):
            del b[i]
        else:
            b.insert(i, new)
    return bytes(b)


def mutated_models(good, d, n: int, seed: int = 19):
    """``n`` seeded variants of ``good``: a .npy header or meta.json edited inside a valid zip,
    or the file's raw bytes edited or truncated."""
    rng = np.random.default_rng(seed)
    entries = _entries(good)
    names = sorted(entries)
    raw = good.read_bytes()
    out = []
    for k in range(n):
        how = ("npy-header", "npy-header", "meta", "raw", "truncate")[k % 5]
        p = d / f"m{k:02d}_{how}.fkl"
        if how == "npy-header":
            name = [x for x in names if x.endswith(".npy")][int(rng.integers(len(names) - 1))]
            b = entries[name]
            hlen = 10 + int.from_bytes(b[8:10], "little")
            alpha = HEADER_BYTES if rng.random() < 0.8 else None
            _zip(p, {**entries, name: _mutate(b, 8, hlen, rng, alpha)})
        elif how == "meta":
            b = entries["meta.json"]
            _zip(p, {**entries, "meta.json": _mutate(b, 0, len(b), rng, HEADER_BYTES)})
        elif how == "raw":
            p.write_bytes(_mutate(raw, 0, len(raw), rng, None))
        else:
            p.write_bytes(raw[: int(rng.integers(0, len(raw)))])
        out.append(p)
    return out


def _one_line_exit_2(r, path):
    """The CLI result is a clean refusal naming ``path`` or a success; never a traceback."""
    assert r.exception is None or isinstance(r.exception, SystemExit), (path, repr(r.exception))
    assert "Traceback" not in r.output + r.stderr
    if r.exit_code == 0:
        return False
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, (path, r.exit_code, r.stderr)
    assert lines[0].startswith(f"fastifkl: error: {path}: "), lines
    return True


def test_npy_header_that_breaks_numpys_tokenizer_is_a_corrupt_model(tiny, tmp_path):
    """An unclosed bracket in a header: numpy's parser raises tokenize.TokenError (not a
    ValueError); it must still read as a corrupt model file, exit 2."""
    good, _ = tiny
    entries = _entries(good)
    b = entries["bias.npy"]
    hlen = 10 + int.from_bytes(b[8:10], "little")
    header = b[10:hlen].replace(b"}", b" ", 1)  # {'descr': ... (3,), <- never closed
    p = _zip(tmp_path / "open.fkl", {**entries, "bias.npy": b[:10] + header + b[hlen:]})
    with pytest.raises(FastifklError, match=r"corrupt model file \(entry 'bias.npy' has a bad header"):
        Separator.load(p)
    r = runner.invoke(app, ["info", str(p)])
    assert _one_line_exit_2(r, p) and "corrupt model file" in r.stderr


def test_fuzzed_model_files(tiny, tmp_path):
    good, _ = tiny
    files = mutated_models(good, tmp_path, N_MODELS)
    refused = {}
    for p in files:
        try:
            Separator.load(p)
        except FastifklError as exc:
            msg = str(exc)
            assert "\n" not in msg and str(p) in msg, msg
            if "npy-header" in p.name:
                assert "corrupt" in msg, msg  # every header failure reads as a corrupt model file
            refused[p] = msg
        r = runner.invoke(app, ["info", str(p)])
        assert _one_line_exit_2(r, p) == (p in refused), (p, r.stderr)
    # the fuzz reaches the refusals it is meant for: most variants are broken
    assert len(refused) >= 0.7 * N_MODELS, len(refused)
    assert sum("npy-header" in p.name for p in refused) >= 10
    # a few through `separate` as well (the model is checked before any work)
    wav = tmp_path / "x.wav"
    sf.write(wav, np.random.default_rng(0).standard_normal(8000) * 0.1, 16000)
    for p in list(refused)[:4]:
        r = runner.invoke(app, ["separate", str(wav), "-m", str(p), "-o", str(tmp_path / "out"), "-q"])
        assert _one_line_exit_2(r, p)


def mutated_audio(d, n: int, seed: int = 23):
    """``n`` seeded broken variants of a 0.5 s file (WAV PCM16, WAV float, FLAC), plus fixed
    cases: NaN, infinite, stereo, empty, zero bytes, garbage."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(8000) * 0.1
    bases = {}
    for fmt, sub in (("wav", "PCM_16"), ("wav", "FLOAT"), ("flac", "PCM_16")):
        buf = io.BytesIO()
        sf.write(buf, x, 16000, format=fmt.upper(), subtype=sub)
        bases[f"{fmt}-{sub}"] = (fmt, buf.getvalue())
    out = []
    for k in range(n):
        key = sorted(bases)[k % len(bases)]
        fmt, raw = bases[key]
        how = ("header", "truncate", "raw")[(k // len(bases)) % 3]
        if how == "header":
            b = _mutate(raw, 0, 48, rng, None)
        elif how == "truncate":
            b = raw[: int(rng.integers(0, 60))]
        else:
            b = _mutate(raw, 0, len(raw), rng, None)
        p = d / f"a{k:02d}_{key}_{how}.{fmt}"
        p.write_bytes(b)
        out.append(p)
    fixed = {
        "nan.wav": np.r_[x[:4000], np.nan, x[4000:]],
        "inf.wav": np.r_[x[:4000], -np.inf, x[4000:]],
        "stereo.wav": np.column_stack([x, x]),
        "empty.wav": np.zeros(0),
    }
    for name, v in fixed.items():
        sf.write(d / name, v, 16000, subtype="FLOAT")
        out.append(d / name)
    (d / "zero.wav").write_bytes(b"")
    (d / "garbage.flac").write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    return out + [d / "zero.wav", d / "garbage.flac"]


def test_fuzzed_audio_files(tiny, tmp_path):
    model, _ = tiny
    files = mutated_audio(tmp_path, N_AUDIO)
    n_refused = 0
    for p in files:
        out = tmp_path / f"out_{p.stem}"
        r = runner.invoke(app, ["separate", str(p), "-m", str(model), "-o", str(out), "-q"])
        if _one_line_exit_2(r, p):
            n_refused += 1
            assert not out.exists() or not any(out.iterdir()), p  # nothing written for a refused file
        else:
            assert (out / f"{p.stem}.sep.wav").is_file()
        if p.name in ("nan.wav", "inf.wav", "stereo.wav", "empty.wav", "zero.wav", "garbage.flac"):
            assert r.exit_code == 2, (p, r.stderr)
    assert n_refused >= 0.5 * len(files), n_refused
