"""HumanEval / MBPP pass@1: find the code a reply means, build the test program and run it in the sandbox.

A base model continues the prompt; a chat model answers in prose around a fenced block, restates the whole
function, or writes the function with no fence at all. One reading serves every style, so a number means what the
model meant: the fenced block that defines a tested function (else the first code block); without a fence, the
reply as it stands when it compiles after the prompt (a continuation), else the longest code that compiles, read
from the reply's start or from its first top-level statement, cut before the prose that follows it.

lm-eval's own code tasks score through the `evaluate` library's `code_eval`, which downloads from the hub; our task
YAMLs (`glan_utils/evaluation/tasks/humaneval*.yaml`, `mbpp.yaml`) point `process_results` at the functions here."""

from __future__ import annotations

import re
from typing import Any

from glan_utils.core.sandbox import SandboxLimits, run_python

_FENCE = re.compile(r"^[ \t]*(`{3,})[ \t]*([\w+.#-]*)[^\n]*\n(.*?)(?:^[ \t]*\1[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_PYTHON = {"", "python", "python3", "py"}
_STATEMENT = re.compile(r"^(?:def |async def |class |import |from |@|[A-Za-z_]\w*\s*=[^=])", re.MULTILINE)
_MARKERS = re.compile(r"\[(?:BEGIN|DONE)\]")  # MBPP's prompt format


def _compiles(code: str) -> bool:
    try:
        compile(code, "<reply>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, names: set[str]) -> bool:
    return any(re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) for name in names)


def _joined(prefix: str, code: str, names: set[str]) -> str:
    """`code` after `prefix`: a separate definition when it defines a tested function (the prompt's stub, whose body
    is its docstring, is then replaced and its imports and helpers kept), else a continuation of it."""
    return f"{prefix}\n\n{code}" if prefix and _defines(code, names) else prefix + code


def _longest_compiling(prefix: str, code: str, names: set[str]) -> str | None:
    """The longest run of `code`'s leading lines that compiles after `prefix` (trailing prose dropped)."""
    lines = code.splitlines()
    for end in range(len(lines), 0, -1):  # replies are short (a few hundred tokens), so this stays cheap
        program = _joined(prefix, "\n".join(lines[:end]) + "\n", names)
        if _compiles(program):
            return program
    return None


def reply_program(reply: str, prefix: str, names: set[str]) -> str:
    """The program a reply means after `prefix` (HumanEval: the prompt; MBPP: nothing), `names` the tested
    functions. A program that cannot be found is the reply as written, which then fails."""
    text = _MARKERS.sub("", reply)
    blocks = [m.group(3) for m in _FENCE.finditer(text) if m.group(2).lower() in _PYTHON]
    if blocks:
        return _joined(prefix, next((b for b in blocks if _defines(b, names)), blocks[0]), names)
    if _compiles(_joined(prefix, text, names)):
        return _joined(prefix, text, names)
    start = _STATEMENT.search(text)
    candidates = [_longest_compiling(prefix, part, names) for part in (text, text[start.start() :] if start else "")]
    return max((c for c in candidates if c), key=len, default=_joined(prefix, text, names))


def humaneval_program(doc: dict[str, Any], completion: str) -> str:
    """The code the completion means after the prompt, followed by the task's tests and `check` call."""
    body = reply_program(completion, doc["prompt"], {doc["entry_point"]})
    return f"{body}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def mbpp_program(doc: dict[str, Any], completion: str) -> str:
    """Setup code, the code the reply means, then the task's assert statements."""
    tests = "\n".join(doc["test_list"])
    called = set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", tests))
    return f"{doc.get('test_setup_code') or ''}\n{reply_program(completion, '', called)}\n\n{tests}\n"


def pass_at_1(program: str, limits: SandboxLimits | None = None) -> float:
    """1.0 when the program exits cleanly inside the sandbox limits, else 0.0."""
    return float(run_python(program, limits).passed)


def process_humaneval(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` hook for HumanEval (both the base and the chat task)."""
    return {"pass@1": pass_at_1(humaneval_program(doc, results[0]))}


def process_mbpp(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` hook for MBPP."""
    return {"pass@1": pass_at_1(mbpp_program(doc, results[0]))}
