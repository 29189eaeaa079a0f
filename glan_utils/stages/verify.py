"""Closed final answers: find one in an answer's text, and decide whether two of them agree (sympy).

A question with one closed answer (a number, or a short formula) can be checked without a reference: a second,
independent answer (another seed, optionally another model) must reach the same value. Extraction looks for
`\\boxed{...}`, "final answer: ..." or "the answer is ..."; only short strings made of numbers, single-letter
symbols, operators and a few named functions go to sympy (its parser evaluates Python, so nothing else may).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from glan_utils.core.records import Verification

_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})+)\}")
_FINAL = re.compile(r"(?:final answer|the answer is|answer\s*[:=])\s*(?:is\s*)?[:=]?\s*(.+)", re.IGNORECASE)
_FUNCTIONS = frozenset({"sqrt", "pi", "sin", "cos", "tan", "log", "ln", "exp", "e", "E", "I"})
_SAFE = re.compile(r"^[0-9A-Za-z+\-*/^().,= ]{1,80}$")
_NUMBER = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?$")
_TRAILING = re.compile(r"[\s.;:!]+$|\s*(?:\*\*|\$)+\s*$|^\s*(?:\*\*|\$)+\s*")
_UNIT = re.compile(r"^(.*?\d)\s*(?:%|[A-Za-z]{1,5}(?:/[A-Za-z]{1,5})?(?:\^?\d)?)$")
_FRAC = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")
_SQRT = re.compile(r"\\sqrt\{([^{}]+)\}")
RELATIVE_TOLERANCE = 1e-3


def final_answer(text: str) -> str | None:
    """The stated final answer of a worked solution, or None when it states none."""
    boxed = _BOXED.findall(text)
    if boxed:
        return boxed[-1].strip()
    lines = [m.group(1) for m in _FINAL.finditer(text)]
    return _clean(lines[-1]) if lines else None


def _clean(raw: str) -> str:
    value = raw.strip().split("\n", 1)[0]
    for _ in range(3):
        value = _TRAILING.sub("", value).strip()
    return value.rsplit("=", 1)[-1].strip() if "=" in value else value


def _without_unit(value: str) -> str:
    match = _UNIT.match(value)
    return match.group(1) if match and not _is_symbolic(value) else value


def _delatex(value: str) -> str:
    """The few LaTeX forms closed answers use, as plain formulas: fractions, roots, products, pi."""
    value = _FRAC.sub(r"(\1)/(\2)", value)
    value = _SQRT.sub(r"sqrt(\1)", value)
    for latex, plain in (("−", "-"), ("×", "*"), ("\\cdot", "*"), ("\\times", "*"), ("\\pi", "pi"), ("\\", "")):
        value = value.replace(latex, plain)
    return value


def _is_symbolic(value: str) -> bool:
    names = re.findall(r"[A-Za-z]+", value)
    return all(len(n) == 1 or n in _FUNCTIONS for n in names) and bool(re.search(r"[+\-*/^()]", value))


@lru_cache(maxsize=4096)
def closed_value(answer: str) -> Any:
    """The sympy value of a closed final answer (number or short formula), or None when it is not closed."""
    value = final_answer(answer)
    if value is None:
        return None
    value = _without_unit(_delatex(value))
    if _NUMBER.match(value):
        return _sympify(value.replace(",", ""))
    if _SAFE.match(value) and "__" not in value and _is_symbolic(value):
        return _sympify(value.replace("^", "**").replace("ln", "log"))
    return None


def _sympify(value: str) -> Any:
    from sympy.parsing.sympy_parser import (  # imported on use: sympy costs ~0.5 s to import
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    try:
        return parse_expr(value, transformations=(*standard_transformations, implicit_multiplication_application))
    except Exception:  # any parse error means "not a closed answer"
        return None


def agree(first: Any, second: Any) -> bool | None:
    """Whether two closed values are equal (numerically within 0.1%, else symbolically); None if undecidable."""
    import sympy

    try:
        if first.is_number and second.is_number:
            a, b = complex(first), complex(second)
            return abs(a - b) <= RELATIVE_TOLERANCE * max(abs(a), abs(b), 1e-12)
        return bool(sympy.simplify(first - second) == 0)
    except Exception:  # sympy raises many types on odd input; undecided, not wrong
        return None


def compare_answers(answer: str, second_answer: str) -> Verification:
    """The closed-answer verdict of a pair whose answer has a closed value, against an independent answer."""
    first, second = closed_value(answer), closed_value(second_answer)
    shown = final_answer(answer) or "", final_answer(second_answer) or ""
    if second is None:
        return Verification(
            kind="closed_answer", agreed=None, first=shown[0], second=shown[1], detail="no closed answer"
        )
    agreed = agree(first, second)
    detail = {True: "same value", False: "different values", None: "could not compare"}[agreed]
    return Verification(kind="closed_answer", agreed=agreed, first=shown[0], second=shown[1], detail=detail)
