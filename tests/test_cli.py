"""The command line: help, mix, cochleagram, bad input (one line, exit code 2, nothing written)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fastifkl.cli import app
from fastifkl.corpus import MixtureSet

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("mix", "demo", "bench", "cochleagram", "train", "separate", "evaluate", "info", "experiment"):
        assert cmd in r.output


def test_python_cli_launcher_from_checkout():
    r = subprocess.run([sys.executable, "cli.py", "--version"], capture_output=True, text=True,
                       cwd=__import__("pathlib").Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and r.stdout.startswith("fastifkl ")


@pytest.fixture
def bad_dir(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "empty.wav", np.zeros(0), 16000)
    (d / "text.wav").write_text("not audio at all")
    sf.write(d / "nan.wav", np.r_[np.zeros(500), np.nan, np.zeros(500)], 16000, subtype="FLOAT")
    sf.write(d / "inf.wav", np.r_[np.zeros(500), np.inf, np.zeros(500)], 16000, subtype="FLOAT")
    sf.write(d / "short.wav", np.zeros(200), 16000)
    sf.write(d / "stereo.wav", np.zeros((2000, 2)), 16000)
    sf.write(d / "good.wav", np.random.default_rng(0).standard_normal(4000) * 0.1, 16000)
    return d


@pytest.mark.parametrize("name, msg", [
    ("empty.wav", "empty"), ("text.wav", "not a readable audio file"), ("nan.wav", "NaN"),
    ("inf.wav", "infinite"), ("short.wav", "too short"), ("stereo.wav", "2 channels"),
    ("missing.wav", "no such file"),
])
def test_bad_input_one_line_exit_2_nothing_written(bad_dir, tmp_path, name, msg):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "fastifkl.cli", "cochleagram", str(bad_dir / "good.wav"),
                        str(bad_dir / name), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and msg in lines[0], r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cochleagram_command_and_downmix(bad_dir, tmp_path):
    out = tmp_path / "out"
    r = runner.invoke(app, ["cochleagram", str(bad_dir / "good.wav"), str(bad_dir / "stereo.wav"), "--downmix",
                            "-o", str(out)])
    assert r.exit_code == 0, r.output
    e = np.load(out / "good.cochleagram.npy")
    assert e.shape == (64, 1 + (4000 - 320) // 160)


def make_corpus(root):
    (root / "speech").mkdir(parents=True)
    (root / "noise").mkdir()
    rng = np.random.default_rng(0)
    rows = ["file\tkind\tlabel\tsplit"]
    for i, split in enumerate(["train", "train", "test"]):
        sf.write(root / "speech" / f"u{i}.flac", rng.standard_normal(4000 + 500 * i) * 0.1, 16000)
        rows.append(f"speech/u{i}.flac\tspeech\tvoice\t{split}")
    for name, n in (("hum", 3000), ("hiss", 20000)):
        sf.write(root / "noise" / f"{name}.flac", rng.standard_normal(n) * 0.1, 16000)
        rows.append(f"noise/{name}.flac\tnoise\t{name}\t")
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")


def test_mix_set_is_regenerated_bit_for_bit(tmp_path):
    make_corpus(tmp_path / "c")
    out = tmp_path / "set"
    r = runner.invoke(app, ["mix", str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise"), "-o", str(out),
                            "--split", "train", "--noises", "hiss,hum", "--seed", "7", "--wavs"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(l) for l in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(lines) == 4 and {l["domain"] for l in lines} == {"hiss", "hum"}
    assert all(l["split"] == "train" and l["snr_db"] == -5 for l in lines)
    ms = MixtureSet.load(out)
    for e in ms:
        mx = ms.mixture(e)
        written, _ = sf.read(out / "wav" / f"{e.id}.mix.wav")
        np.testing.assert_allclose(written, mx.mixture, atol=1e-6)
        assert 10 * np.log10(np.sum(mx.speech ** 2) / np.sum(mx.noise ** 2)) == pytest.approx(-5, abs=1e-9)
    # same seed -> identical manifest; different seed -> different offsets
    out2 = tmp_path / "set2"
    runner.invoke(app, ["mix", str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise"), "-o", str(out2),
                        "--split", "train", "--noises", "hiss,hum", "--seed", "7"])
    assert (out2 / "manifest.jsonl").read_text().replace("set2", "set") == (out / "manifest.jsonl").read_text()


def test_mix_errors(tmp_path):
    make_corpus(tmp_path / "c")
    r = runner.invoke(app, ["mix", str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise"),
                            "-o", str(tmp_path / "s"), "--noises", "nope"])
    assert r.exit_code == 2 and "noise 'nope' not found" in r.output
    r = runner.invoke(app, ["mix", str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise"),
                            "-o", str(tmp_path / "s3")])
    assert r.exit_code == 0
    (tmp_path / "c" / "noise" / "hum.flac").unlink()
    from fastifkl.errors import InputError
    with pytest.raises(InputError, match="hum.flac, which is missing"):
        MixtureSet.load(tmp_path / "s3")
