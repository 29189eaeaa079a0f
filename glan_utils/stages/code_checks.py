"""The code verifier: a QA pair whose question ships tests and whose answer ships Python is run in the sandbox.

Part of the quality stage: `stages/quality.py` runs `check_code_pairs` after the judge, so notebook 04, `glan run`
and `run_until` all check code the same way. Each verdict is one line of `<run>/code_checks.jsonl` keyed by pair
id and program hash (append-only: a rerun checks only new or changed programs), and the data set's quality filter
reads that file as a verifier like the closed-answer one.
Tests are the `assert` lines of the question's Python code blocks; the program is the answer's code blocks
followed by those tests, run under `SandboxLimits` (no network, no new processes, time and memory caps).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from glan_utils.core.ids import content_hash
from glan_utils.core.jsonl import JsonlWriter, iter_jsonl
from glan_utils.core.paths import CODE_CHECKS
from glan_utils.core.records import QAPair, Verification
from glan_utils.core.sandbox import ExecResult, SandboxLimits, run_python
from glan_utils.runs.store import RunStore
from glan_utils.settings import Settings
from glan_utils.stages.superseded import superseded_ids

_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
Runner = Callable[[str, SandboxLimits], ExecResult]


def program(question: str, answer: str) -> str | None:
    """The answer's code followed by the question's test asserts, or None when either is missing."""
    tests = [
        line for block in _BLOCK.findall(question) for line in block.splitlines() if line.lstrip().startswith("assert")
    ]
    code = "\n\n".join(_BLOCK.findall(answer)).strip()
    return f"{code}\n\n# tests from the question\n" + "\n".join(tests) + "\n" if tests and code else None


def check(program_text: str, runner: Runner = run_python, limits: SandboxLimits | None = None) -> Verification:
    """Run one program in the sandbox: agreed = every test passed."""
    result = runner(program_text, limits or SandboxLimits())
    outcome = "timed out" if result.timed_out else f"exit status {result.returncode}"
    return Verification(
        kind="code",
        agreed=result.passed,
        first="tests passed" if result.passed else "tests failed",
        second=outcome,
        detail=(result.stderr or result.stdout)[-300:],
    )


def check_code_pairs(
    settings: Settings, runner: Runner = run_python, limits: SandboxLimits | None = None
) -> dict[str, Any]:
    """Check every current pair that has code and tests; returns counts (checked now, passed, failed, skipped)."""
    store = RunStore(settings.run_dir)
    path = settings.run_dir / CODE_CHECKS
    done = {row["key"] for row in iter_jsonl(path)}
    gone = superseded_ids(settings.run_dir)
    counts = {"checked": 0, "passed": 0, "failed": 0, "already_checked": 0}
    with JsonlWriter(path) as out:
        for pair in store.iter_records("answers", QAPair):
            text = program(pair.question, pair.answer) if pair.id not in gone else None
            if text is None:
                continue
            key = content_hash(pair.id, text)
            if key in done:
                counts["already_checked"] += 1
                continue
            verdict = check(text, runner, limits)
            out.write({"key": key, "pair_id": pair.id, "verification": verdict.model_dump()})
            counts["checked"] += 1
            counts["passed" if verdict.agreed else "failed"] += 1
    return counts
