"""Listener-quality measures (fastifkl.quality) and the pure pieces of bench/quality.py."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fastifkl.audio import mix_at_snr
from fastifkl.errors import InputError
from fastifkl.quality import (
    cell_means,
    compensate_delay,
    estimate_delay,
    listener_scores,
    shift,
    si_snr_db,
    snr_db,
    summarize,
)

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _brute_delay(y, x, max_lag):
    """argmax over |d| <= max_lag of sum_n y[n + d] x[n], by loops (zeros outside the signals)."""
    best, arg = -np.inf, None
    for d in range(-max_lag, max_lag + 1):
        acc = 0.0
        for n in range(x.size):
            if 0 <= n + d < y.size:
                acc += y[n + d] * x[n]
        if acc > best + 1e-12:
            best, arg = acc, d
    return arg


# ----------------------------------------------------------------------------- delay
@pytest.mark.parametrize("ny,nx,max_lag", [(300, 300, 40), (350, 300, 60), (250, 300, 25)])
def test_estimate_delay_matches_brute_force(rng, ny, nx, max_lag):
    for _ in range(3):
        x = rng.standard_normal(nx)
        y = rng.standard_normal(ny)
        assert estimate_delay(y, x, max_lag) == _brute_delay(y, x, max_lag)


@pytest.mark.parametrize("d", [-37, 0, 5, 320, 480, 1600])
def test_estimate_delay_recovers_a_known_lag_in_noise(rng, d):
    from fastifkl.demo import synthetic_voiced_speech

    x = synthetic_voiced_speech(1.0, rng) + 0.3 * rng.standard_normal(16000)
    n = x.size
    y = 0.5 * shift(x, -d, n + 2000) + 0.05 * rng.standard_normal(n + 2000)  # y[k] = 0.5 x[k - d] + noise
    assert estimate_delay(y, x, 1600) == d


def test_estimate_delay_stays_within_the_search_range(rng):
    x = rng.standard_normal(4000)
    y = shift(x, -2000, 8000)  # true lag 2000 > max_lag
    assert abs(estimate_delay(y, x, 1600)) <= 1600


def test_zero_output_has_lag_zero():
    assert estimate_delay(np.zeros(500), np.ones(500), 100) == 0


def test_shift_by_hand():
    y = np.array([1.0, 2, 3, 4, 5])
    np.testing.assert_array_equal(shift(y, 2, 5), [3, 4, 5, 0, 0])
    np.testing.assert_array_equal(shift(y, -1, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(shift(y, 0, 7), [1, 2, 3, 4, 5, 0, 0])
    np.testing.assert_array_equal(shift(y, 9, 3), [0, 0, 0])


def test_compensate_delay_realigns_a_late_output(rng):
    x = rng.standard_normal(3000)
    y = np.concatenate([np.zeros(320), x, np.zeros(100)])
    aligned, d = compensate_delay(y, x, 16000, 100.0)
    assert d == 320
    np.testing.assert_array_equal(aligned, x)


# ----------------------------------------------------------------------------- SNRs
def test_snr_by_hand_and_silence_gains_minus_the_input_snr(rng):
    s = np.array([3.0, 4.0])
    assert snr_db(s, np.array([3.0, 3.0])) == pytest.approx(10 * np.log10(25.0))
    assert snr_db(s, np.zeros(2)) == pytest.approx(0.0)
    speech = rng.standard_normal(8000)
    mx = mix_at_snr(speech, rng.standard_normal(8000), -5.0, offset=0)
    assert snr_db(mx.speech, mx.mixture) == pytest.approx(-5.0)
    gain_of_silence = snr_db(mx.speech, np.zeros(8000)) - snr_db(mx.speech, mx.mixture)
    assert gain_of_silence == pytest.approx(5.0)


def test_si_snr_by_hand():
    assert si_snr_db(np.array([1.0, 1, 0, 0]), np.array([2.0, 2, 1, -1])) == pytest.approx(10 * np.log10(4.0))
    assert si_snr_db(np.array([1.0, 0]), np.array([1.0, 1])) == pytest.approx(0.0)
    assert si_snr_db(np.array([1.0, 0]), np.array([2.0, 1])) == pytest.approx(10 * np.log10(4.0))
    assert si_snr_db(np.array([1.0, 2]), np.zeros(2)) == float("-inf")
    assert si_snr_db(np.array([1.0, 2]), np.array([5.0, 10])) == float("inf")


def test_si_snr_is_scale_invariant_and_gives_the_input_snr_of_an_orthogonal_mixture(rng):
    s = rng.standard_normal(4000)
    v = rng.standard_normal(4000)
    v -= (v @ s) / (s @ s) * s  # exactly orthogonal to s
    v *= np.sqrt((s @ s) / (v @ v) / 10 ** (3 / 10))  # input SNR +3 dB
    assert si_snr_db(s, s + v) == pytest.approx(3.0)
    assert si_snr_db(s, 0.1 * (s + v)) == pytest.approx(3.0)
    # the plain SNR is not: |s - 0.1 (s + v)|^2 = 0.81 |s|^2 + 0.01 |v|^2
    assert snr_db(s, 0.1 * (s + v)) == pytest.approx(-10 * np.log10(0.81 + 0.01 * 10 ** (-3 / 10)))


def test_si_snr_rejects_mismatched_or_silent_input():
    with pytest.raises(InputError):
        si_snr_db(np.ones(3), np.ones(4))
    with pytest.raises(InputError):
        si_snr_db(np.zeros(3), np.ones(3))


def test_listener_scores_against_pystoi(rng):
    from pystoi import stoi

    from fastifkl.demo import synthetic_voiced_speech

    s = synthetic_voiced_speech(2.0, rng)
    y = s + 0.5 * np.std(s) * rng.standard_normal(s.size)
    sc = listener_scores(s, y)
    assert sc["stoi"] == pytest.approx(stoi(s, y, 16000, extended=False))
    assert sc["estoi"] == pytest.approx(stoi(s, y, 16000, extended=True))
    assert sc["stoi"] < listener_scores(s, s)["stoi"] == pytest.approx(1.0, abs=1e-6)
    assert sc["snr_db"] == pytest.approx(snr_db(s, y))
    with pytest.raises(InputError):
        listener_scores(s, y[:-1])


# ----------------------------------------------------------------------------- summaries
def _records():
    """Two noises x two SNRs x two utterances; system A beats the mixture by 0.1 STOI except in
    (n2, +5), where it ties (not counted as better), and loses 0.2 in (n2, -5)."""
    recs = []
    for noise in ("n1", "n2"):
        for snr in (-5.0, 5.0):
            for k, utt in enumerate(("u1", "u2")):
                base = 0.5 + 0.1 * (snr > 0) + 0.02 * k
                m = {"stoi": base, "estoi": base - 0.3, "snr_db": snr, "si_snr_db": snr}
                recs.append({"system": "mixture", "noise": noise, "snr": snr, "utt": utt, **m})
                delta = {("n2", 5.0): 0.0, ("n2", -5.0): -0.2}.get((noise, snr), 0.1)
                recs.append({"system": "A", "noise": noise, "snr": snr, "utt": utt, "stoi": base + delta,
                             "estoi": base - 0.3 + 2 * delta, "snr_db": snr + 4.0, "si_snr_db": snr + 1.0})
    return recs


def test_cell_means_and_summary_by_hand():
    cells = cell_means(_records())
    assert len(cells) == 8 and all(c["n"] == 2 for c in cells)
    a = {(c["noise"], c["snr"]): c for c in cells if c["system"] == "A"}
    assert a[("n1", -5.0)]["stoi"] == pytest.approx(0.61)  # mean of 0.6 and 0.62
    summ = summarize(cells)
    assert summ["snrs"] == ["-5", "+5"]
    A = summ["systems"]["A"]
    assert A["cells_better"] == 2 and A["cells"] == 4
    assert A["per_snr"]["-5"]["stoi_gain"] == pytest.approx((0.1 - 0.2) / 2)
    assert A["per_snr"]["+5"]["stoi_gain"] == pytest.approx(0.05)
    assert A["per_snr"]["+5"]["stoi"] == pytest.approx(0.61 + 0.05)
    assert A["stoi_gain"] == pytest.approx(0.0)
    assert A["estoi_gain"] == pytest.approx(0.0)
    assert A["snr_gain"] == pytest.approx(4.0) and A["si_snr_gain"] == pytest.approx(1.0)
    assert A["per_noise_stoi_gain"] == pytest.approx({"n1": 0.1, "n2": -0.1})
    M = summ["systems"]["mixture"]
    assert M["stoi_gain"] == 0 and M["cells_better"] == 0


def test_summary_needs_the_reference():
    cells = [c for c in cell_means(_records()) if c["system"] == "A"]
    with pytest.raises(InputError):
        summarize(cells)


# ----------------------------------------------------------------------------- bench pieces
def test_missing_peer_is_skipped_with_a_note(monkeypatch):
    peers = _bench_module("_peers")
    monkeypatch.setitem(sys.modules, "noisereduce", None)  # import noisereduce -> ImportError
    notes = []
    systems = peers.build_systems(["mmse", "noisereduce"], [("default", "default")], [None], note=notes.append)
    assert [s.name for s in systems] == ["mmse"]
    assert len(notes) == 1 and "skipping noisereduce" in notes[0]
    with pytest.raises(ValueError):
        peers.build_systems(["nonesuch"], [], [None], note=notes.append)


def test_output_mode_is_detected_from_the_signature():
    peers = _bench_module("_peers")

    class Old:
        def separate(self, x, *, return_mask=False):
            return x

    class New:
        def separate(self, x, *, return_mask=False, output="ratio"):
            return x

    assert not peers.supports_output_mode(Old())
    assert peers.supports_output_mode(New())


def _row(when, quick=False, utts=("u1", "u2")):
    cells = cell_means(_records())
    return {"bench": "quality", "when": when, "command": "python bench/quality.py", "commit": "abc" * 14,
            "quick": quick, "jobs": 1, "load_avg_start": [1.0, 1.0, 1.0], "load_avg_end": [1.0, 1.0, 1.0],
            "wall_s": 10.0, "material": {"speech_dir": "../shared/corpus/speech/ieee_real", "split": "test",
                                         "utterances": list(utts), "noises": ["n1", "n2"], "noise_dir": "x"},
            "snrs": [-5.0, 5.0], "seed": 0, "n_mixtures": 8, "audio_s": 16.0, "systems": ["mixture", "A"],
            "oracle": [], "versions": {}, "summary": summarize(cells),
            "compute": {"A": {"s_per_s": 0.25, "setup_s_per_s": 0.0, "timed": True,
                              "lag_samples": {"mode": 0, "share_at_mode": 1.0, "min": 0, "max": 0}}}}


def test_report_keeps_the_latest_full_run_of_each_setup(tmp_path):
    rep = _bench_module("_quality_report")
    jl = tmp_path / "quality.jsonl"
    rows = [_row("2026-01-01T00:00:00"), _row("2026-01-02T00:00:00"), _row("2026-01-03T00:00:00", quick=True),
            _row("2026-01-04T00:00:00", utts=("u1",))]
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = rep.write_report(jl, tmp_path / "QUALITY.md").read_text()
    assert "2026-01-02" in text and "2026-01-04" in text
    assert "2026-01-01" not in text and "2026-01-03" not in text  # superseded; quick
    line = next(ln for ln in text.splitlines() if ln.startswith("| A |"))
    assert "2/4" in line and "0.250" in line and "+0.000" in line
    # the reader learns that ours is offline and the streaming peers are causal
    assert "ours is an OFFLINE system" in text and "whole file" in text and "zero-phase" in text
    assert "RNNoise and DeepFilterNet3 are CAUSAL" in text


def _fkl_row(when, sha, keep_dc=False):
    """A run whose system is the default fastifkl model of content ``sha``."""
    r = json.loads(json.dumps(_row(when)).replace('"A"', '"fastifkl"'))
    r["versions"] = {"fastifkl": {"model": "default.fkl", "model_sha256": sha}}
    r["keep_dc"] = keep_dc
    return r


def test_report_drops_or_flags_runs_on_an_earlier_default_model(tmp_path):
    """A section measured on an earlier default model is dropped beside a run of the same setup
    on the current one, and flagged where it is the only run of its setup."""
    rep = _bench_module("_quality_report")
    old, new = "0" * 64, "1" * 64
    jl = tmp_path / "quality.jsonl"
    rows = [_fkl_row("2026-01-01T00:00:00", old), _fkl_row("2026-01-02T00:00:00", old, keep_dc=True),
            _fkl_row("2026-01-03T00:00:00", new), _fkl_row("2026-01-04T00:00:00", old)]  # old model, later
    jl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = rep.write_report(jl, tmp_path / "QUALITY.md", current_sha=new).read_text()
    assert "2026-01-03" in text  # the current model's run of the default setup
    assert "2026-01-01" not in text and "2026-01-04" not in text  # earlier model beside it: dropped
    assert "2026-01-02" in text  # the only --keep-dc run: kept, flagged
    heads = [ln for ln in text.splitlines() if ln.startswith("## ")]
    assert len(heads) == 2 and heads[0].endswith("dB") and heads[1].endswith("(EARLIER DEFAULT MODEL)")
    assert text.count("**Stale: measured on an earlier default model (sha256 000000000000)") == 1
    assert "current one (111111111111)" in text
    # with every run on the current model nothing is flagged
    jl.write_text(json.dumps(_fkl_row("2026-01-05T00:00:00", new)) + "\n")
    assert "Stale" not in rep.write_report(jl, tmp_path / "Q2.md", current_sha=new).read_text()


def test_cli_bench_passes_options_on_to_the_script(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from fastifkl.cli import app

    monkeypatch.chdir(BENCH.parent)
    out = tmp_path / "Q.md"
    r = CliRunner().invoke(app, ["bench", "quality", "--report", "--docs", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("# Listener quality")
