"""fastifkl.experiment: config parsing, report pieces on fake counts, and the --quick protocol on
the shared corpus (asserts the direction of the paper's finding)."""
import json
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest

from fastifkl import experiment as exp
from fastifkl.errors import InputError
from fastifkl.masks import pooled_scores

# ---------------------------------------------------------------------------------------------
# config


def test_default_config_is_the_corpus_protocol():
    cfg = exp.load_config()
    assert cfg.snr_db == -5.0 and cfg.lc_db == -10.0
    assert cfg.train_noises == ["ssn", "pink", "street", "fridge", "dishes"]
    assert len(cfg.test_noises) == 12 and not set(cfg.test_noises) & set(cfg.train_noises)
    assert "brown" not in cfg.test_noises
    assert cfg.pitches == ["true", "estimated"]
    assert (cfg.n_kernel, cfg.n_svm, cfg.n_test_primary) == (0, 0, 0)  # all utterances of each split
    assert cfg.workers == 2 and not cfg.tune


def test_toml_overrides_quick_and_options(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('snr_db = 0\nn_svm = 5\ntest_noises = ["cafe", "white"]\n[separator]\nC = 2.0\n')
    cfg = exp.load_config(p, quick=True, workers=1)
    assert cfg.snr_db == 0.0 and isinstance(cfg.snr_db, float)
    assert cfg.n_svm == 5  # the file wins over --quick
    assert cfg.n_kernel == exp.QUICK["n_kernel"]  # --quick where the file says nothing
    assert cfg.separator == {**exp.QUICK["separator"], "C": 2.0}  # tables merge
    assert cfg.test_noises == ["cafe", "white"] and cfg.workers == 1


@pytest.mark.parametrize("text, msg", [
    ("snr = 3\n", "unknown key 'snr'"),
    ("n_svm = -1\n", "n_svm"),
    ("n_svm = 1.5\n", "integer"),
    ('pitches = ["oracle"]\n', "pitch"),
    ('test_noises = ["ssn", "cafe"]\n', "both for training and testing: ssn"),
    ('train_noises = ["ssn"]\n', "at least 2"),
    ("[separator]\nkernel = 'gaussian'\n", "kernel"),
    ("[separator]\nbogus = 1\n", "bogus"),
    ("snr_db = [\n", "not valid TOML"),
])
def test_bad_config_is_one_clear_error(tmp_path, text, msg):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=msg.replace("(", r"\(")):
        exp.load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(InputError, match="no such config file"):
        exp.load_config(tmp_path / "nope.toml")


def test_corpus_without_manifest_is_rejected(tmp_path):
    (tmp_path / "speech").mkdir()
    cfg = exp.load_config(corpus=str(tmp_path))
    with pytest.raises(InputError, match="no MANIFEST.tsv"):
        exp.select_corpus(cfg)
    with pytest.raises(InputError, match="not found"):
        exp.select_corpus(exp.load_config(corpus=str(tmp_path / "absent")))


def test_cli_reports_missing_manifest(tmp_path):
    r = subprocess.run([sys.executable, "-m", "fastifkl.cli", "experiment", "--corpus", str(tmp_path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("fastifkl: error:") and "MANIFEST.tsv" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# report pieces on fake counts


NOISES = ["cafe", "white"]


def _fake_records():
    """Two utterances x two noises; counts chosen so that every pooled number is known."""
    recs = []
    for utt in range(2):
        for n in NOISES:
            base = 10 if n == "cafe" else 20
            counts = {
                "KL-SVM|estimated": (8 + utt, base, 2, 40),  # hits, n_target, fas, n_noise
                "G-SVM|estimated": (6, base, 4 + utt, 40),
                "Rethresholding|estimated": (5, base, 1, 40),
                "MMSE": (3, base, 0, 40),
            }
            resyn = {k: {"snr_gain": 1.0 + utt + (k == "IBM"), "stoi": 0.5 + 0.1 * utt}
                     for k in ["Mixture", "IBM", *counts]}
            resyn["Mixture"]["snr_gain"] = 0.0
            recs.append({"id": f"u{utt}__{n}", "noise": n, "group": "primary", "counts": counts, "resyn": resyn})
    return recs


def test_summarise_pools_per_noise_then_averages():
    g = exp.summarise(_fake_records(), ["cafe", "white", "never_seen"])
    assert g["noises"] == NOISES and g["n_mixtures"] == 4
    kl = g["scores"]["KL-SVM|estimated"]
    # cafe: hits 8+9 of 20 targets, fas 4 of 80 noise units
    assert kl["per_noise"]["cafe"]["hit"] == pytest.approx(17 / 20)
    assert kl["per_noise"]["cafe"]["fa"] == pytest.approx(4 / 80)
    assert kl["per_noise"]["white"]["hit"] == pytest.approx(17 / 40)
    want = np.mean([17 / 20 - 4 / 80, 17 / 40 - 4 / 80])
    assert kl["mean_over_noises"]["hit_fa"] == pytest.approx(want)
    # pooled over all units differs from the mean over noises (different number of targets)
    assert kl["pooled"]["hit"] == pytest.approx(34 / 60)
    acc_cafe = (17 + 80 - 4) / 100
    acc_white = (17 + 80 - 4) / 120
    assert kl["mean_over_noises"]["accuracy"] == pytest.approx((acc_cafe + acc_white) / 2)
    r = g["resynthesis"]
    assert r["IBM"]["per_noise"]["cafe"]["snr_gain_db"] == pytest.approx(2.5)
    assert r["Mixture"]["mean_over_noises"]["snr_gain_db"] == 0.0
    assert r["MMSE"]["mean_over_noises"]["stoi"] == pytest.approx(0.55)


def test_markdown_tables_show_our_and_the_papers_numbers():
    g = exp.summarise(_fake_records(), NOISES)
    t1 = exp.table1_markdown(g, ["estimated"])
    lines = t1.strip().splitlines()
    assert lines[0] == "| | G-SVM, estimated pitch | KL-SVM, estimated pitch |"
    assert "| Accuracy (paper) | 0.703 | 0.746 |" in lines
    assert "| HIT-FA (paper) | 0.390 | 0.456 |" in lines
    kl = g["scores"]["KL-SVM|estimated"]["mean_over_noises"]["hit_fa"]
    gs = g["scores"]["G-SVM|estimated"]["mean_over_noises"]["hit_fa"]
    hit_fa_row = [ln for ln in lines if ln.startswith("| HIT-FA (ours)")][0]
    assert hit_fa_row == f"| HIT-FA (ours) | {gs:.3f} | {kl:.3f} |"
    d = exp.kl_minus_g(g, "estimated")
    assert d["hit_fa_points"] == pytest.approx(100 * (kl - gs))
    per = exp.per_noise_markdown(g, "estimated").strip().splitlines()
    assert per[0] == "| noise | KL-SVM | G-SVM | MMSE | Rethresholding |"
    mmse_cafe = pooled_scores([(3, 10, 0, 40)] * 2)["hit_fa"]
    assert per[2].startswith("| cafe | ") and per[2].split(" | ")[3] == f"{mmse_cafe:.3f}"
    assert per[-1].startswith("| **mean** |")
    rs = exp.resynthesis_markdown(g, ["estimated"], "snr_gain_db").splitlines()
    assert rs[0].split(" | ")[1] == "IBM" and "Mixture" in rs[0]
    st = exp.stages_markdown({"a": 1.0, "b": 2.25})
    assert "| **total** | 3.2 |" in st or "| **total** | 3.3 |" in st


def test_full_report_from_fake_results(tmp_path):
    g = exp.summarise(_fake_records(), NOISES)
    cfg = exp.load_config(pitches=["estimated"], test_noises=NOISES)
    res = {
        "command": "fastifkl experiment fake.toml", "fastifkl_version": "0", "config": asdict(cfg),
        "machine": {"python": "3", "platform": "x", "cpus": 2},
        "corpus": {k: [] for k in ("kernel", "svm", "tune", "primary", "control", "train_noises", "test_noises")},
        "models": {}, "groups": {"primary": g}, "fig1": {"mixture": "u0__cafe"}, "stoi_available": False,
        "kl_minus_g": {"estimated": exp.kl_minus_g(g, "estimated")}, "kl_above_mmse_every_noise": {"estimated": True},
        "figures": {}, "stage_seconds": {"mixing": 0.1, "testing": 2.0},
    }
    exp.write_results(res, tmp_path)
    md = (tmp_path / "RESULTS.md").read_text()
    # the command stands above every number block: every table is preceded by it in its section
    for section in md.split("\n## ")[2:]:
        if "|" in section:
            assert "fastifkl experiment fake.toml" in section.split("|", 1)[0], section[:80]
    assert "STOI: skipped" in md and "Not run (no control utterances" in md
    assert json.loads((tmp_path / "results.json").read_text())["command"] == "fastifkl experiment fake.toml"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave nothing behind


# ---------------------------------------------------------------------------------------------
# the quick protocol on the shared corpus


@pytest.mark.corpus
def test_quick_experiment_scores_both_svms_on_unseen_noises(corpus_dir, tmp_path):
    cfg = exp.load_config(quick=True, corpus=str(corpus_dir))
    res = exp.run_experiment(cfg, out_dir=tmp_path / "docs", work_dir=tmp_path / "work",
                             command="fastifkl experiment --quick", log=None)
    out = tmp_path / "docs"
    assert (out / "RESULTS.md").is_file() and (out / "results.json").is_file()
    prim = res["groups"]["primary"]
    assert prim["noises"] == cfg.test_noises  # all 12 unseen noises
    assert prim["n_mixtures"] == cfg.n_test_primary * 12
    for p in cfg.pitches:
        for s in ("KL-SVM", "G-SVM", "Rethresholding"):
            assert set(prim["scores"][f"{s}|{p}"]["per_noise"]) == set(cfg.test_noises)
    assert set(prim["scores"]["MMSE"]["per_noise"]) == set(cfg.test_noises)
    # the IBM resynthesis must beat the unprocessed mixture by a wide margin (sanity of the SNR gain)
    assert prim["resynthesis"]["IBM"]["mean_over_noises"]["snr_gain_db"] > 3.0
    if shutil.which("true") and res["stoi_available"]:
        resyn = prim["resynthesis"]
        assert resyn["IBM"]["mean_over_noises"]["stoi"] > resyn["Mixture"]["mean_over_noises"]["stoi"]
    if res["figures"]:
        assert (out / res["figures"]["fig2"]).stat().st_size > 1000
        assert (out / res["figures"]["fig1"]).stat().st_size > 1000
    # What the code guarantees (not the paper's finding, which a 3-utterance run cannot settle:
    # the full run has KL-SVM below G-SVM with estimated pitch, docs/RESULTS.md): each SVM's
    # mask is better than chance (a random mask has HIT-FA 0 in expectation) and below the
    # IBM's (HIT-FA 1); the KL-SVM really uses the learned kernel on most channels; the
    # reported KL - G margin is the difference of the two scores.
    for p in cfg.pitches:
        kl = prim["scores"][f"KL-SVM|{p}"]["mean_over_noises"]["hit_fa"]
        g = prim["scores"][f"G-SVM|{p}"]["mean_over_noises"]["hit_fa"]
        print(f"quick, {p} pitch: KL-SVM HIT-FA {kl:.4f}, G-SVM {g:.4f}, margin {100 * (kl - g):+.2f} points")
        for name, v in (("KL-SVM", kl), ("G-SVM", g)):
            assert 0.05 < v < 1.0, f"{p} pitch: {name} HIT-FA {v:.3f} is not between chance and the IBM"
        assert res["kl_minus_g"][p]["hit_fa_points"] == pytest.approx(100 * (kl - g))
        info = res["models"][f"KL-SVM|{p}"]
        assert info["params"]["kernel"] != res["models"][f"G-SVM|{p}"]["params"]["kernel"]
        n_ch = res["models"][f"G-SVM|{p}"]["params"]["n_channels"]
        assert len(info["gaussian_fallback_channels"]) < n_ch / 2, info["gaussian_fallback_channels"]


def test_test_noises_from_another_directory(corpus_dir, tmp_path):
    d = tmp_path / "my_noises"
    d.mkdir()
    for name in ("cafe", "wind"):
        (d / f"{name}_rec.flac").symlink_to(corpus_dir / "noise" / f"{name}.flac")
    cfg = exp.load_config(corpus=str(corpus_dir), test_noise_dir=str(d))
    sel = exp.select_corpus(cfg)
    assert [it.label for it in sel["test_noises"]] == ["cafe_rec", "wind_rec"]  # labels = file stems
    assert len(sel["primary"]) == 10 and len(sel["control"]) == 10
    assert len(sel["kernel"]) == 10 and len(sel["svm"]) == 30 and sel["tune"] == []
    assert all(it.split == "kernel" for it in sel["kernel"])
    assert {it.label for it in sel["primary"]} == {"ieee_male"}
    (d / "ssn.flac").symlink_to(corpus_dir / "noise" / "ssn.flac")
    with pytest.raises(InputError, match="include training noises: ssn.flac"):
        exp.select_corpus(cfg)


def test_default_selection_follows_the_corpus_splits(corpus_dir):
    sel = exp.select_corpus(exp.load_config(corpus=str(corpus_dir), tune=True))
    assert [it.label for it in sel["test_noises"]] == exp.Config().test_noises
    assert [it.label for it in sel["train_noises"]] == exp.Config().train_noises
    assert len(sel["tune"]) == 10 and all(it.split == "tune" for it in sel["tune"])
    q = exp.select_corpus(exp.load_config(quick=True, corpus=str(corpus_dir)))
    assert (len(q["kernel"]), len(q["svm"]), len(q["primary"]), len(q["control"])) == (4, 8, 3, 1)
    assert exp.select_corpus(exp.load_config(corpus=str(corpus_dir), control=False))["control"] == []
