"""HumanEval / MBPP pass@1: build the test program from a completion and run it in the sandbox.

lm-eval's own code tasks score through the `evaluate` library's `code_eval`, which downloads from the hub; our
task YAMLs (`glan_utils/evaluation/tasks/humaneval.yaml`, `mbpp.yaml`) point `process_results` at the functions here
instead."""

from __future__ import annotations

import re
from typing import Any

from glan_utils.evaluation.sandbox import SandboxLimits, run_python

_FENCE = re.compile(r"```(?:[\w+-]*)\n(.*?)(?:```|$)", re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block of a chat answer, or the text itself when it is bare code."""
    match = _FENCE.search(text)
    return match.group(1) if match else text


def humaneval_program(doc: dict[str, Any], completion: str) -> str:
    """Prompt + completion (or a full function the model rewrote) followed by the task's `check` call."""
    code = extract_code(completion)
    if f"def {doc['entry_point']}(" in code:  # the model restated the function: keep the prompt's imports
        imports = [line for line in doc["prompt"].splitlines() if line.startswith(("import ", "from "))]
        body = "\n".join([*imports, code])
    else:
        body = doc["prompt"] + code
    return f"{body}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def mbpp_program(doc: dict[str, Any], completion: str) -> str:
    """Setup code, the model's solution, then the task's assert statements."""
    tests = "\n".join(doc["test_list"])
    return f"{doc.get('test_setup_code') or ''}\n{extract_code(completion)}\n\n{tests}\n"


def pass_at_1(program: str, limits: SandboxLimits | None = None) -> float:
    """1.0 when the program exits cleanly inside the sandbox limits, else 0.0."""
    return float(run_python(program, limits).passed)


def process_humaneval(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` hook for HumanEval."""
    return {"pass@1": pass_at_1(humaneval_program(doc, results[0]))}


def process_mbpp(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` hook for MBPP."""
    return {"pass@1": pass_at_1(mbpp_program(doc, results[0]))}
