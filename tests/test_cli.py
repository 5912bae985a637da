"""The command line: help, mix, cochleagram, bad input (one line, exit code 2, nothing written);
separate's exit codes, unusable outputs, and a batch that survives a killed worker process."""
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fastifkl import cli
from fastifkl.cli import app
from fastifkl.corpus import MixtureSet
from tiny_model import tiny_model

runner = CliRunner()


def test_help_lists_commands():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for cmd in ("mix", "demo", "bench", "cochleagram", "train", "separate", "evaluate", "info", "experiment"):
        assert cmd in r.output


def test_help_reads_cleanly_for_a_new_user():
    """Every command's help: paragraphs on one line each (rich wraps them, no break mid-sentence),
    every option explained, no <bool> metavar beside a flag."""
    import typer.main

    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        for para in (cmd.help or "").split("\n\n"):
            assert all(ln.startswith("- ") for ln in para.splitlines()[1:]), (name, para)
        for p in cmd.params:
            assert p.help, f"{name} {p.opts} has no help text"
    wide = {"COLUMNS": "200", "TERMINAL_WIDTH": "200"}
    r = runner.invoke(app, ["--help"], env=wide)
    assert r.exit_code == 0
    panel = r.output[r.output.index("Commands"):]
    for cmd in group.commands:  # one line per command at 200 columns: the summary is unbroken
        rows = [ln for ln in panel.splitlines() if ln.startswith(f"\u2502 {cmd} ")]
        assert len(rows) == 1, (cmd, rows)
        nxt = panel.splitlines()[panel.splitlines().index(rows[0]) + 1]
        assert not re.match(r"\u2502 {10,}\S", nxt), (cmd, nxt)  # no continuation line
    for name in [None, *group.commands]:
        r = runner.invoke(app, ([name] if name else []) + ["--help"], env=wide)
        assert r.exit_code == 0 and "<bool>" not in r.output, (name, r.output)
    for name in ("separate", "evaluate"):
        out = runner.invoke(app, [name, "--help"], env=wide).output
        assert re.search(r"--workers +-j +<int> +\S", out), out


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


def test_mix_several_snrs_drawn_snrs_and_append(tmp_path):
    make_corpus(tmp_path / "c")
    sp, nz = str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise")
    out = tmp_path / "set"
    r = runner.invoke(app, ["mix", sp, nz, "-o", str(out), "--split", "train", "--noises", "hiss,hum",
                            "--snr", "-5,0,5", "--seed", "1"])
    assert r.exit_code == 0, r.output
    ms = MixtureSet.load(out)
    assert len(ms) == 12 and len({e.id for e in ms}) == 12
    assert sorted(e.snr_db for e in ms) == [-5.0] * 4 + [0.0] * 4 + [5.0] * 4
    for e in ms:
        mx = ms.mixture(e)
        assert 10 * np.log10(np.sum(mx.speech ** 2) / np.sum(mx.noise ** 2)) == pytest.approx(e.snr_db, abs=1e-9)
    # one drawn SNR per pair: the offsets of a single-SNR set with the same seed, SNRs from the list
    r = runner.invoke(app, ["mix", sp, nz, "-o", str(tmp_path / "draw"), "--split", "train", "--noises", "hiss,hum",
                            "--snr", "-5,0,5", "--draw-snr", "--seed", "1"])
    assert r.exit_code == 0, r.output
    runner.invoke(app, ["mix", sp, nz, "-o", str(tmp_path / "one"), "--split", "train", "--noises", "hiss,hum",
                        "--seed", "1"])
    draw, one = MixtureSet.load(tmp_path / "draw"), MixtureSet.load(tmp_path / "one")
    assert [e.offset for e in draw] == [e.offset for e in one] and [e.id for e in draw] == [e.id for e in one]
    assert {e.snr_db for e in draw} <= {-5.0, 0.0, 5.0}
    # --append adds to a set; an id already there is refused (exit 2, one line)
    r = runner.invoke(app, ["mix", sp, nz, "-o", str(tmp_path / "one"), "--split", "train", "--noises", "hiss",
                            "--append"])
    assert r.exit_code == 2 and "already in the set" in r.output
    r = runner.invoke(app, ["mix", sp, nz, "-o", str(tmp_path / "one"), "--split", "test", "--noises", "hiss",
                            "--append", "--snr", "3"])
    assert r.exit_code == 0, r.output
    both = MixtureSet.load(tmp_path / "one")
    assert len(both) == len(one) + 1 and both.entries[:len(one)] == one.entries and both.entries[-1].snr_db == 3.0
    r = runner.invoke(app, ["mix", sp, nz, "-o", str(tmp_path / "bad"), "--snr", "loud"])
    assert r.exit_code == 2 and "--snr must be" in r.output


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


# ---- exit codes, unusable outputs, lost workers (separate) ----------------------------------


def fastifkl(*args, **kw):
    """Run the real command line in a subprocess (what a user sees)."""
    return subprocess.run([sys.executable, "-m", "fastifkl.cli", *map(str, args)], capture_output=True, text=True, **kw)


def no_traceback(r):
    text = r.stderr + r.stdout
    assert "Traceback" not in text and "Error:" not in text.replace("fastifkl: error:", ""), text


def leftovers(d: Path) -> list[str]:
    """Temporary or partial files in an output directory."""
    return sorted(p.name for p in d.iterdir() if p.name.startswith(".") or p.suffix == ".tmp") if d.is_dir() else []


@pytest.fixture(scope="module")
def sep_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("sep")
    model = tiny_model(d / "tiny.fkl")
    ind = d / "in"
    ind.mkdir()
    rng = np.random.default_rng(5)
    for i in range(6):
        sf.write(ind / f"g{i}.wav", rng.standard_normal(16000 * 3) * 0.1, 16000)
    (d / "junk.wav").write_text("not audio")
    return model, ind, d / "junk.wav"


def test_separate_exit_codes(sep_inputs, tmp_path):
    model, ind, junk = sep_inputs
    good = [ind / "g0.wav", ind / "g1.wav"]
    # all good -> 0, nothing on stderr
    r = fastifkl("separate", *good, "-m", model, "-o", tmp_path / "a")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["g0.sep.wav", "g1.sep.wav"]
    # one bad file alone -> 2, one line
    r = fastifkl("separate", junk, "-m", model, "-o", tmp_path / "b")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [f"fastifkl: error: {junk}: not a readable audio file "
                                             "(Error opening '" + str(junk) + "': Format not recognised.)"]
    # bad + good -> the good ones done, one line per bad file, a summary, exit 2
    r = fastifkl("separate", good[0], junk, good[1], "-m", model, "-o", tmp_path / "c")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"fastifkl: skipped: {junk}: not a readable audio file")
    assert lines[1] == "fastifkl: 1 of 3 files failed (1 bad input); 2 done"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["g0.sep.wav", "g1.sep.wav"]
    assert (tmp_path / "c" / "g0.sep.wav").read_bytes() == (tmp_path / "a" / "g0.sep.wav").read_bytes()
    # a non-model file as -m -> 2, one line
    r = fastifkl("separate", good[0], "-m", good[1], "-o", tmp_path / "d")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"fastifkl: error: {good[1]}: corrupt or truncated model file (BadZipFile: File is not a zip file)"]


def test_unexpected_error_in_one_file_exit_1(sep_inputs, tmp_path, monkeypatch):
    model, ind, junk = sep_inputs
    from fastifkl.audio_stream import WavWriter

    real_write = WavWriter.write

    def write(self, y):
        if self.path.name == "g1.sep.wav":
            raise RuntimeError("boom")
        return real_write(self, y)

    monkeypatch.setattr(WavWriter, "write", write)
    out = tmp_path / "o"
    r = runner.invoke(app, ["separate", str(ind / "g0.wav"), str(ind / "g1.wav"), str(ind / "g2.wav"), "-m", str(model),
                            "-o", str(out), "-q"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == [f"fastifkl: skipped: {ind / 'g1.wav'}: failed (RuntimeError: boom)",
                                             "fastifkl: 1 of 3 files failed (1 unexpected error); 2 done"]
    assert sorted(p.name for p in out.iterdir()) == ["g0.sep.wav", "g2.sep.wav"]
    # bad input outranks it: exit 2
    r = runner.invoke(app, ["separate", str(ind / "g1.wav"), str(junk), "-m", str(model), "-o", str(out), "-q"])
    assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == \
        "fastifkl: 2 of 2 files failed (1 unexpected error, 1 bad input); 0 done"


def readonly_dir(path: Path):
    """A directory nobody may write in: chmod for users, a read-only tmpfs for root."""
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        return path
    mount = ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    return path


def tiny_disk(path: Path):
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                                           capture_output=True).returncode:
        pytest.skip("needs root (mount) for a full file system; test_full_disk_injected covers it")
    return path


@pytest.mark.parametrize("case", ["proc", "file_in_the_way", "dir_in_the_way", "read_only", "full_disk"])
def test_unusable_output_one_line_exit_2(sep_inputs, tmp_path, case):
    model, ind, _ = sep_inputs
    files = [ind / "g0.wav", ind / "g1.wav"]
    mounted = None
    if case == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc")
        out, named, why = Path("/proc/x"), "/proc/x", "cannot create the output directory"
    elif case == "file_in_the_way":
        out = tmp_path / "o"
        out.write_text("a file")
        named, why = out, "cannot create the output directory (a file is in the way)"
    elif case == "dir_in_the_way":
        out = tmp_path / "o"
        (out / "g1.sep.wav").mkdir(parents=True)
        named, why = out / "g1.sep.wav", "cannot write (a directory is in the way)"
    elif case == "read_only":
        out = mounted = readonly_dir(tmp_path / "ro")
        named = out
        reason = "Read-only file system" if os.geteuid() == 0 else "Permission denied"
        why = f"cannot write in the output directory ({reason})"
    else:
        out = mounted = tiny_disk(tmp_path / "full")  # 64 kB: the first 3 s output (192 kB) cannot fit
        named, why = out / "g0.sep.wav", "cannot write (No space left on device); stopped after 0 of 2 files"
    try:
        r = fastifkl("separate", *files, "-m", model, "-o", out)
        no_traceback(r)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, r.stderr
        if case == "dir_in_the_way":  # only that file: the other is done
            assert lines == [f"fastifkl: skipped: {named}: {why}",
                             "fastifkl: 1 of 2 files failed (1 cannot write); 1 done"]
            assert sorted(p.name for p in out.iterdir()) == ["g0.sep.wav", "g1.sep.wav"]
            assert (out / "g1.sep.wav").is_dir() and not any((out / "g1.sep.wav").iterdir())
        else:
            assert len(lines) == 1 and lines[0].startswith(f"fastifkl: error: {named}: {why}"), r.stderr
            assert not out.is_dir() or list(out.iterdir()) == []  # no partial output, no temporary file
        assert leftovers(out) == []
        # the same for cochleagram (it stops at the first output it cannot write)
        if case == "dir_in_the_way":
            (out / "g1.cochleagram.npy").mkdir()
            named = out / "g1.cochleagram.npy"
        elif case == "full_disk":
            named, why = out / "g0.cochleagram.npy", "cannot write (No space left on device)"
        r = fastifkl("cochleagram", files[0], files[1], "-o", out)
        no_traceback(r)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines() == [f"fastifkl: error: {named}: {why}"] or (
            case == "proc" and r.stderr.startswith("fastifkl: error: /proc/x: cannot create the output directory"))
        assert leftovers(out) == []
    finally:
        if mounted is not None and os.geteuid() == 0:
            subprocess.run(["umount", str(mounted)], capture_output=True)
        elif mounted is not None:
            mounted.chmod(0o755)


def test_full_disk_injected(sep_inputs, tmp_path, monkeypatch):
    """ENOSPC half-way through writing (in-process, any user): one line, exit 2, nothing left."""
    model, ind, _ = sep_inputs
    from fastifkl.audio_stream import WavWriter

    def write_then_full(self, y):
        self._fh.write(bytes(1000))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(WavWriter, "write", write_then_full)
    out = tmp_path / "o"
    r = runner.invoke(app, ["separate", str(ind / "g0.wav"), str(ind / "g1.wav"), "-m", str(model), "-o", str(out)])
    assert r.exit_code == 2, r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)  # no traceback
    assert r.stderr.strip().splitlines() == [
        f"fastifkl: error: {out / 'g0.sep.wav'}: cannot write (No space left on device); stopped after 0 of 2 files"]
    assert list(out.iterdir()) == []


def test_other_commands_name_the_unusable_output(sep_inputs, tmp_path):
    model = sep_inputs[0]
    make_corpus(tmp_path / "c")
    r = fastifkl("mix", tmp_path / "c" / "speech", tmp_path / "c" / "noise", "-o", "/proc/x/set")
    no_traceback(r)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["fastifkl: error: /proc/x: No such file or directory"]
    r = fastifkl("mix", tmp_path / "c" / "speech", tmp_path / "c" / "noise", "-o", tmp_path / "set", "--noises", "hum")
    assert r.returncode == 0, r.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "figs").write_text("a file where the figure directory should be")
    for opt, path, named, why in (("--report", tmp_path / "taken", tmp_path / "taken", "a directory is in the way"),
                                  ("--report", "/proc/x/r.json", "/proc/x", "cannot create the output directory"),
                                  ("--plot", tmp_path / "figs", tmp_path / "figs", "a file is in the way")):
        r = fastifkl("evaluate", model, tmp_path / "set", opt, path, "-q")
        no_traceback(r)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"fastifkl: error: {named}") and why in lines[0], r.stderr
    assert leftovers(tmp_path) == []


def dying_separate_job(job):
    """cli._separate_job, but the worker holding a file named kill_always* always dies, and the one
    holding kill_once* dies the first time (as the OOM killer would)."""
    src = Path(job["src"])
    if src.name.startswith("kill_always"):
        os.kill(os.getpid(), signal.SIGKILL)
    if src.name.startswith("kill_once"):
        mark = src.with_suffix(".mark")
        if not mark.exists():
            mark.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    return cli._separate_job(job)


def test_worker_lost_twice_skips_that_file(sep_inputs, tmp_path, monkeypatch):
    model, ind, _ = sep_inputs
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a", "kill_once", "b", "kill_always", "c"):
        (d / f"{name}.wav").write_bytes((ind / "g0.wav").read_bytes())
    monkeypatch.setattr(cli, "_separate_job", dying_separate_job)  # pickled by reference: workers run it too
    out = tmp_path / "o"
    r = runner.invoke(app, ["separate", str(d), "-m", str(model), "-o", str(out), "-j", "2"])
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (f"fastifkl: skipped: {d / 'kill_always.wav'}: worker process died twice "
                        "(killed by signal 9 (SIGKILL); out of memory?)"), r.stderr
    assert re.fullmatch(r"fastifkl: note: [23] worker process\(es\) died and were replaced; the files they held "
                        r"were run again", lines[1]), lines[1]
    assert lines[2] == "fastifkl: 1 of 5 files failed (1 worker died twice); 4 done"
    assert len(lines) == 3 and "Traceback" not in r.output
    assert sorted(p.name for p in out.iterdir()) == ["a.sep.wav", "b.sep.wav", "c.sep.wav", "kill_once.sep.wav"]
    assert (out / "kill_once.sep.wav").read_bytes() == (out / "a.sep.wav").read_bytes()  # same input, same bytes


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                kids.append(int(d))
    return kids


def _pool_workers(cli_pid: int) -> list[int]:
    """The pool's worker processes: children of the forkserver that the CLI process started."""
    out = []
    for c in _children(cli_pid):
        try:
            cmd = Path(f"/proc/{c}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in cmd:
            out += _children(c)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find the worker processes")
def test_kill_9_of_one_worker_mid_batch(sep_inputs, tmp_path):
    model, ind, _ = sep_inputs
    out = tmp_path / "o"
    proc = subprocess.Popen([sys.executable, "-m", "fastifkl.cli", "separate", str(ind), "-m", str(model),
                             "-o", str(out), "-j", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and any(p.suffix == ".wav" for p in out.iterdir()):  # mid-batch: one file done
            workers = _pool_workers(proc.pid)
            if workers:
                killed = workers[0]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "the batch ended before a worker could be killed"
    assert proc.returncode == 0, stderr  # every file done (the lost ones re-run)
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["fastifkl: note: 1 worker process(es) died and were replaced; "
                                           "the files they held were run again"]
    assert sorted(p.name for p in out.iterdir()) == [f"g{i}.sep.wav" for i in range(6)]  # no .tmp left
    # same bytes as a run without a lost worker
    ref = tmp_path / "ref"
    assert fastifkl("separate", ind, "-m", model, "-o", ref, "-q").returncode == 0
    for i in range(6):
        assert (out / f"g{i}.sep.wav").read_bytes() == (ref / f"g{i}.sep.wav").read_bytes()


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path):
    from fastifkl.audio import atomic_path, remove_stale_temps

    code = ("import os, signal, sys\nfrom fastifkl.audio import atomic_path\n"
            f"with atomic_path({str(tmp_path / 'x.sep.wav')!r}) as tmp:\n"
            "    open(tmp, 'wb').write(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    r = subprocess.run([sys.executable, "-c", code])
    assert r.returncode == -signal.SIGKILL
    stale = [p.name for p in tmp_path.iterdir()]
    assert len(stale) == 1 and stale[0].startswith(".x.sep.wav.") and stale[0].endswith(".tmp")
    with atomic_path(tmp_path / "y.sep.wav") as mine:  # a live writer's file is kept
        mine.write_bytes(b"being written")
        assert remove_stale_temps(tmp_path) == [tmp_path / stale[0]]
        assert mine.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.sep.wav"]


def dying_fit_channel(job):
    """channel.fit_channel, but the worker training channel 2 always dies."""
    from fastifkl import channel

    if job["channel"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return channel.fit_channel(job)


def test_train_job_lost_twice_is_one_line_exit_1(tmp_path, monkeypatch):
    from fastifkl import channel

    make_corpus(tmp_path / "c")
    c = tmp_path / "c"
    r = runner.invoke(app, ["mix", str(c / "speech"), str(c / "noise"), "-o", str(tmp_path / "set")])
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(channel, "fit_channel", dying_fit_channel)  # pickled by reference: workers run it
    r = runner.invoke(app, ["train", str(tmp_path / "set"), "-o", str(tmp_path / "m.fkl"), "--kernel", "gaussian",
                            "--channels", "4", "--max-train", "60", "-j", "2", "-q"])
    assert r.exit_code == 1, r.output
    assert r.stderr.strip().splitlines() == [
        "fastifkl: error: job 2 (dying_fit_channel): its worker process died twice (killed by signal 9 (SIGKILL); "
        "out of memory?)"]
    assert not (tmp_path / "m.fkl").exists() and leftovers(tmp_path) == []


def test_mixing_counts_audible_speech_not_its_dc_offset(tmp_path):
    """An utterance with a DC offset is mixed at the SNR of its audible (mean-free) part."""
    make_corpus(tmp_path / "c")
    u = tmp_path / "c" / "speech" / "u0.flac"
    x, sr = sf.read(u)
    sf.write(u, x - x.mean() + 0.25, sr, subtype="PCM_24")  # an offset holding most of the energy
    x, _ = sf.read(u)
    r = runner.invoke(app, ["mix", str(tmp_path / "c" / "speech"), str(tmp_path / "c" / "noise"), "-o",
                            str(tmp_path / "set"), "--split", "train", "--noises", "hiss", "--snr", "0"])
    assert r.exit_code == 0, r.output
    ms = MixtureSet.load(tmp_path / "set")
    e = next(e for e in ms if e.speech.endswith("u0.flac"))
    mx = ms.mixture(e)
    clean = x - x.mean()
    np.testing.assert_allclose(mx.speech, clean, atol=1e-6)
    assert abs(mx.speech.mean()) < 1e-12
    # the audible speech and the noise have equal energy at 0 dB; with the offset counted the
    # noise would be ~ (0.25**2 + var) / var times stronger
    assert 10 * np.log10(np.sum(clean ** 2) / np.sum(mx.noise ** 2)) == pytest.approx(0.0, abs=1e-4)
