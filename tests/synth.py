"""Small synthetic corpora for tests (the project never ships audio)."""
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt

from fastifkl.demo import synthetic_voiced_speech

SR = 16000


def noises(rng: np.random.Generator, seconds: float = 4.0) -> dict[str, np.ndarray]:
    n = int(seconds * SR)
    t = np.arange(n) / SR
    white = rng.standard_normal(n)
    low = sosfilt(butter(4, 800, "low", fs=SR, output="sos"), rng.standard_normal(n))
    high = sosfilt(butter(4, 2000, "high", fs=SR, output="sos"), rng.standard_normal(n))
    hum = sum(np.sin(2 * np.pi * 100 * k * t + k) / k for k in range(1, 8)) + 0.05 * rng.standard_normal(n)
    beeps = np.sin(2 * np.pi * 1500 * t) * (np.sin(2 * np.pi * 3 * t) > 0) + 0.05 * rng.standard_normal(n)
    return {"white": white, "low": low, "high": high, "hum": hum, "beeps": beeps}


def make_corpus(root: Path, n_utts: int = 6, seed: int = 0, splits=None) -> Path:
    """speech/*.flac (split column: kernel / svm / test) + noise/*.flac + MANIFEST.tsv."""
    rng = np.random.default_rng(seed)
    (root / "speech").mkdir(parents=True, exist_ok=True)
    (root / "noise").mkdir(exist_ok=True)
    splits = splits or (["kernel"] * 2 + ["svm"] * (n_utts - 3) + ["test"])
    rows = ["file\tkind\tlabel\tsplit"]
    for i in range(n_utts):
        x = 0.3 * synthetic_voiced_speech(1.0 + 0.2 * (i % 3), rng)
        sf.write(root / "speech" / f"u{i}.flac", x, SR, subtype="PCM_24")
        rows.append(f"speech/u{i}.flac\tspeech\tsynth\t{splits[i]}")
    for name, v in noises(rng).items():
        sf.write(root / "noise" / f"{name}.flac", 0.3 * v / np.abs(v).max(), SR, subtype="PCM_24")
        rows.append(f"noise/{name}.flac\tnoise\t{name}\t")
    (root / "MANIFEST.tsv").write_text("\n".join(rows) + "\n")
    return root


def mixture_sets(root: Path):
    """The train set (non-test utterances x white, low, hum; seed 0) and the test set (test
    utterances x high, beeps; seed 1) of a corpus made by :func:`make_corpus`."""
    from fastifkl.corpus import MixtureSet, scan, select_noises

    sp = scan(root / "speech", "speech")
    nz = select_noises(scan(root / "noise", "noise"), ["white", "low", "hum"])
    train = MixtureSet.create([s for s in sp if s.split != "test"], nz, root / "train_set", seed=0)
    test_nz = select_noises(scan(root / "noise", "noise"), ["high", "beeps"])
    test = MixtureSet.create([s for s in sp if s.split == "test"], test_nz, root / "test_set", seed=1)
    return train, test
