"""Shared helpers of the benchmarks: best-of-n timing and JSON-line results."""
from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(fn, repeat: int = 5) -> float:
    """Smallest wall time of ``repeat`` calls of ``fn()`` in seconds (after the caller warmed it)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def record(name: str, payload: dict) -> Path:
    """Append one JSON line to bench/results/<name>.jsonl."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    row = {
        "bench": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu",
        **payload,
    }
    path = RESULTS / f"{name}.jsonl"
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    return path


def pin_pitch_method(method: str | None) -> None:
    """Make every ``fastifkl.pitch.track`` call of this process use ``method`` (the benches pin the
    tracker so that two trees, or two models, are compared with the same one).  The callers
    (``blocks.block_pitch``, ``training.track_pitch``) import ``track`` at call time, so replacing
    the module attribute reaches them; ``None`` leaves the tree's default."""
    if method is None:
        return
    import fastifkl.pitch as _pitch

    orig = getattr(_pitch, "_bench_unpinned_track", _pitch.track)

    def track(x, *args, **kwargs):
        kwargs["method"] = method
        return orig(x, *args, **kwargs)

    _pitch._bench_unpinned_track = orig
    _pitch.track = track
