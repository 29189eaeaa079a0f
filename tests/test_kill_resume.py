"""Kill and resume: SIGKILL a pipeline run at seeded random points, resume it, and compare with a clean run.

The run is a subprocess (`support/pipeline_driver.py`) against a test server in this process, so the server's
count spans every attempt. Kills land right after the N-th ledger line appears, i.e. between a paid call and
its cache write, while other calls are in flight. After every kill no file may be corrupt; at the end the
records must equal an uninterrupted run's, no call whose answer reached the cache may be sent again, and the
extra calls the server saw are bounded by the calls in flight at the kills.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from support.reliability import corrupt_files, ledger_lines, pipeline_overrides, record_ids, settings_for

from glan_utils.testing import OpenAIServer

DRIVER = Path(__file__).parent / "support" / "pipeline_driver.py"
CONCURRENCY = 8
# 4 disciplines -> 12 subjects -> 12 syllabi -> 120 questions -> 120 answers: ~256 calls.
SIZES = {"questions.questions_per_syllabus": 10, "llm.concurrency": CONCURRENCY}
KILLS = 6


def _start(overrides: dict[str, Any], root: Path) -> subprocess.Popen[bytes]:
    path = root / "overrides.json"
    path.write_text(json.dumps(overrides), encoding="utf-8")
    return subprocess.Popen([sys.executable, str(DRIVER), str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _finish(overrides: dict[str, Any], root: Path) -> None:
    proc = _start(overrides, root)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]


def _line_count(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_after_lines(overrides: dict[str, Any], root: Path, ledger: Path, target: int) -> bool:
    """Start a resume and SIGKILL it once the ledger has `target` lines; False if it finished first."""
    proc = _start(overrides, root)
    while proc.poll() is None and _line_count(ledger) < target:
        time.sleep(0.0005)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    return True


def _cache_keys(path: Path) -> set[str]:
    with sqlite3.connect(path) as db:
        return {key for (key,) in db.execute("SELECT key FROM responses")}


def _bodies(server: OpenAIServer) -> Counter[str]:
    return Counter(json.dumps(body, sort_keys=True) for body in server.requests)


def test_killed_runs_resume_to_the_same_data(tmp_path: Path) -> None:
    reference_root, killed_root = tmp_path / "reference", tmp_path / "killed"
    reference_root.mkdir()
    killed_root.mkdir()
    with OpenAIServer(latency_s=0.01) as server:
        reference = pipeline_overrides(reference_root, server.base_url, **SIZES)
        _finish(reference, reference_root)
        reference_bodies = _bodies(server)

    rng = random.Random(10)
    with OpenAIServer(latency_s=0.01) as server:
        overrides = pipeline_overrides(killed_root, server.base_url, **SIZES)
        settings = settings_for(overrides)
        ledger, cache = settings.run_dir / "ledger.jsonl", settings.cache_file
        kills: list[tuple[int, set[str]]] = []  # (ledger lines at the kill, cache keys stored by then)
        for _ in range(KILLS):
            target = _line_count(ledger) + rng.randint(1, 50)
            if not _kill_after_lines(overrides, killed_root, ledger, target):
                break
            assert corrupt_files(killed_root, torn_tail_allowed=True) == []
            kills.append((_line_count(ledger), _cache_keys(cache)))
        _finish(overrides, killed_root)
        killed_bodies = _bodies(server)

    assert len(kills) >= KILLS - 1, "the run finished before most kills: make it longer"
    assert corrupt_files(killed_root, torn_tail_allowed=False) == []
    assert record_ids(settings.run_dir) == record_ids(settings_for(reference).run_dir)
    assert not list(settings.run_dir.glob("*.failures.jsonl")) or all(
        p.stat().st_size == 0 for p in settings.run_dir.glob("*.failures.jsonl")
    )

    lines = ledger_lines(settings)
    for at, stored in kills:  # a call whose answer was cached before a kill is never paid for again
        resent = {line["cache_key"] for line in lines[at:] if not line["cached"]} & stored
        assert not resent, f"{len(resent)} cached calls were sent again after the kill at line {at}"
    assert set(killed_bodies) == set(reference_bodies)
    extra = sum((killed_bodies - reference_bodies).values())
    assert extra <= len(kills) * CONCURRENCY, f"{extra} calls resent for {len(kills)} kills"
    print(
        f"\nkill/resume figures: kills={len(kills)} at ledger lines {[at for at, _ in kills]}; "
        f"reference calls={sum(reference_bodies.values())} killed-run calls={sum(killed_bodies.values())} "
        f"(resent in flight: {extra})"
    )


_HAMMER = """
import sys, itertools
from glan_utils.llm.cache import ResponseCache
cache = ResponseCache(sys.argv[1])
for i in itertools.count():
    cache.put(f"key-{i}", {"text": "x" * (i % 5000), "i": i})
    if i == 200:
        print("ready", flush=True)
"""


def test_cache_survives_sigkill_during_writes(tmp_path: Path) -> None:
    """SIGKILL a process in a tight `put` loop, five times: the cache stays intact, every entry complete."""
    path = tmp_path / "cache.sqlite"
    rng = random.Random(3)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _HAMMER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert corrupt_files(tmp_path, torn_tail_allowed=False) == []
        with sqlite3.connect(path) as db:
            for (value,) in db.execute("SELECT value FROM responses"):
                entry = json.loads(value)
                assert entry["text"] == "x" * (entry["i"] % 5000)
