"""Build pipeline runs against the test server and check what they left on disk.

The reliability tests run the real generation chain (user taxonomy -> subject rounds -> subjects -> syllabi ->
questions -> answers) and then ask the same questions of every run directory: does
every line parse, is the cache intact, was every planned unit of work done once or recorded as a failure?
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glan_utils.core.jsonl import iter_jsonl
from glan_utils.settings import Settings, load_settings
from glan_utils.stages import answers, pipeline, subjects
from glan_utils.stages import questions as homework
from glan_utils.stages import syllabi as syllabus

# Every fault the test server can inject; `timeout` hangs for the server's `hang_s`.
ALL_FAULTS = ("429", "500", "503", "reset", "timeout", "malformed", "prose", "truncated", "wrong_schema")
TAXONOMY_YAML = """\
Mathematics:
  Algebra: [Linear Algebra, Group Theory]
  Analysis: [Real Analysis, Complex Analysis]
"""
# Files a stage's work lands in: subject rounds are the LLM stage behind `subjects` (a merge, no calls).
LLM_STAGES = (subjects.STAGE_ROUNDS, syllabus.NAME, homework.NAME, answers.NAME)


def pipeline_overrides(root: Path, base_url: str, taxonomy_text: str = TAXONOMY_YAML, **sizes: Any) -> dict[str, Any]:
    """Dotted settings for a run in `root` on a user taxonomy; dotted `sizes` override small defaults."""
    taxonomy_file = root / "taxonomy.yaml"
    taxonomy_file.write_text(taxonomy_text, encoding="utf-8")
    return {
        "output_dir": str(root / "outputs"),
        "run_name": "rel",
        "llm.base_url": base_url,
        "llm.model": "fake-model",
        "llm.cache_path": str(root / "cache.sqlite"),
        "llm.timeout_s": 5,
        "llm.retry_max_wait_s": 0.05,
        "taxonomy.source": str(taxonomy_file),
        "subjects.rounds": 1,
        "subjects.max_subjects": 3,
        "syllabi.min_sessions": 2,
        "syllabi.max_sessions": 4,
        "syllabi.concepts_per_session": 3,
        "questions.questions_per_syllabus": 4,
        **sizes,
    }


def settings_for(overrides: dict[str, Any]) -> Settings:
    return load_settings(None, overrides, environ={})


async def run_pipeline(settings: Settings) -> dict[str, Any]:
    """Every generation stage in order; returns each stage's report as a dict."""
    return {name: report.as_dict() for name, report in (await pipeline.run_until(settings)).items()}


def planned_task_ids(settings: Settings) -> dict[str, set[str]]:
    """The task ids each LLM stage plans, derived from the previous stage's records (as the pipeline does)."""
    kept = pipeline.kept_disciplines(settings)
    return {
        subjects.STAGE_ROUNDS: {t.id for t in subjects.round_tasks(kept, settings.subjects.rounds)},
        syllabus.NAME: {s.id for s in pipeline.kept_records(settings, subjects.NAME)},
        homework.NAME: {t.id for t in homework.question_tasks(settings)},
        answers.NAME: {q.id for q in pipeline.kept_records(settings, homework.NAME)},
    }


@dataclass
class Accounting:
    """For one stage: what was planned, done (record lines), failed (failure lines) and duplicated."""

    planned: set[str]
    done: set[str]
    failed: set[str]
    duplicate_ids: list[str] = field(default_factory=list)
    failure_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> set[str]:
        """Planned tasks with neither a record nor a failure: silently dropped work."""
        return self.planned - self.done - self.failed


def account(settings: Settings, stage: str, planned: set[str]) -> Accounting:
    run_dir = settings.run_dir
    rows = list(iter_jsonl(run_dir / f"{stage}.jsonl"))
    failures = list(iter_jsonl(run_dir / f"{stage}.failures.jsonl"))
    ids = Counter(row["id"] for row in rows)
    return Accounting(
        planned=planned,
        done={row["task_id"] for row in rows},
        failed={row["task_id"] for row in failures},
        duplicate_ids=[i for i, n in ids.items() if n > 1],
        failure_reasons=Counter(row["reason"].split(":")[0] for row in failures),
    )


def ledger_lines(settings: Settings) -> list[dict[str, Any]]:
    return list(iter_jsonl(settings.run_dir / "ledger.jsonl"))


def record_ids(run_dir: Path) -> dict[str, set[str]]:
    """Record ids per stage file (failures and the ledger excluded): what a run produced."""
    return {
        path.stem: {row["id"] for row in iter_jsonl(path)}
        for path in sorted(run_dir.glob("*.jsonl"))
        if not path.name.endswith(".failures.jsonl") and path.name != "ledger.jsonl"
    }


def torn_or_bad_lines(path: Path) -> tuple[int, bool]:
    """(complete lines that do not parse as JSON, whether the last line is cut short)."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    bad = 0
    for line in lines[:-1]:
        try:
            json.loads(line)
        except ValueError:
            bad += 1
    return bad, bool(lines[-1])


def sqlite_ok(path: Path) -> bool:
    with sqlite3.connect(path) as db:
        checked = db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        for (value,) in db.execute("SELECT value FROM responses"):
            json.loads(value)
    return checked


def corrupt_files(root: Path, torn_tail_allowed: bool) -> list[str]:
    """Every JSONL and SQLite file under `root` that is damaged; a torn last line is damage unless allowed."""
    problems = []
    for path in _files(root, "*.jsonl"):
        bad, torn = torn_or_bad_lines(path)
        if bad or (torn and not torn_tail_allowed):
            problems.append(f"{path}: {bad} bad lines, torn tail={torn}")
    problems += [f"{p}: integrity_check failed" for p in _files(root, "*.sqlite") if not sqlite_ok(p)]
    return problems


def _files(root: Path, pattern: str) -> Iterator[Path]:
    return (p for p in sorted(root.rglob(pattern)) if p.is_file())


@contextmanager
def server_process(*args: str) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    """The test server as its own process (no GIL shared with the run): yields its base URL and a stats reader."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "glan_utils.testing.openai_server", *args], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        root = base_url.removesuffix("/v1")

        def stats() -> dict[str, Any]:
            with urllib.request.urlopen(f"{root}/stats", timeout=10) as reply:
                return json.loads(reply.read())

        yield base_url, stats
    finally:
        proc.terminate()
        proc.wait(timeout=30)
