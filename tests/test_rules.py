"""The no-call rule checks measured on a labelled set of realistic pairs (`tests/data/rule_pairs.jsonl`).

The set holds clean pairs of every question type from the paper's six fields (letters, memos, emails, code with
escapes, HTML with entities, LaTeX, answers ending in ':' or ';', finance due dates, non-English pairs) and bad
pairs of every kind a real run meets, each labelled with the rule that should catch it. A rule drops pairs by
default only if it reaches the targets here; the README's table is this test's measurement.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from glan_utils.data.quality_filter import filter_pairs, pair_reasons
from glan_utils.settings import QualityFilterSettings
from glan_utils.settings.stages import QUESTION_TYPES
from glan_utils.stages.rules import DROPPING, RULES, prose, rule_flags

ROOT = Path(__file__).resolve().parents[1]
PAIRS = [json.loads(line) for line in (ROOT / "tests" / "data" / "rule_pairs.jsonl").open(encoding="utf-8")]
FIELDS = {
    "Humanities",
    "Social sciences",
    "Natural sciences",
    "Formal sciences",
    "Applied sciences",
    "Industry, services and agriculture",
}
RECALL, CLEAN_KEPT = 0.95, 0.98


def measure() -> tuple[dict[str, dict[str, float]], float, float]:
    """Per rule: flags, precision (share of its flags on bad pairs), recall on the pairs labelled with it, the
    share of clean pairs it keeps; then the recall of the dropping rules together and the clean pairs they keep."""
    flags = [rule_flags(pair) for pair in PAIRS]
    clean = [f for pair, f in zip(PAIRS, flags, strict=True) if pair["kind"] == "clean"]
    bad = [f for pair, f in zip(PAIRS, flags, strict=True) if pair["kind"] != "clean"]
    table = {}
    for rule in RULES:
        hits = [pair["kind"] for pair, f in zip(PAIRS, flags, strict=True) if rule in f]
        own = [rule in f for pair, f in zip(PAIRS, flags, strict=True) if pair["kind"] == rule]
        table[rule] = {
            "flags": len(hits),
            "precision": sum(kind != "clean" for kind in hits) / len(hits) if hits else 1.0,
            "recall": sum(own) / len(own) if own else float("nan"),
            "labelled": len(own),
            "clean_kept": sum(rule not in f for f in clean) / len(clean),
        }
    dropped = [bool(set(f) & set(DROPPING)) for f in bad]
    return table, sum(dropped) / len(bad), sum(not set(f) & set(DROPPING) for f in clean) / len(clean)


def test_the_labelled_set_covers_every_field_type_kind_and_language():
    kinds = Counter(pair["kind"] for pair in PAIRS)
    assert len(PAIRS) >= 300 and kinds["clean"] >= 100
    assert set(kinds) - {"clean"} == set(RULES)  # every rule has labelled pairs, every label is a rule
    assert all(n >= 8 for n in kinds.values())
    clean = [pair for pair in PAIRS if pair["kind"] == "clean"]
    assert {pair["field"] for pair in clean} == FIELDS and {pair["field"] for pair in PAIRS} == FIELDS
    assert set(QUESTION_TYPES) <= {pair["question_type"] for pair in clean}
    assert len({pair["language"] for pair in clean}) >= 5
    assert len({pair["discipline"] for pair in clean}) >= 40
    assert len({pair["id"] for pair in PAIRS}) == len(PAIRS)


def test_each_dropping_rule_reaches_the_targets_and_warnings_are_those_that_do_not():
    table, recall, kept = measure()
    for rule, row in table.items():
        reaches = row["recall"] >= RECALL and row["clean_kept"] >= CLEAN_KEPT
        assert reaches == (rule in DROPPING), (rule, row)
    assert recall >= RECALL and kept >= CLEAN_KEPT, (recall, kept)


def test_the_readme_table_is_this_measurement():
    table, recall, kept = measure()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for rule, row in table.items():
        line = (
            f"| `{rule}` | {'drop' if rule in DROPPING else 'warning'} | {row['labelled']} | {row['flags']} | "
            f"{row['precision']:.2f} | {row['recall']:.2f} | {row['clean_kept']:.3f} |"
        )
        assert line in readme, line
    assert f"bad pairs dropped: {recall:.3f}; clean pairs kept: {kept:.3f}" in readme


@pytest.mark.parametrize(
    ("inside", "outside"),
    [
        ('Use `"\\u00e9"` for é.', 'Use "\\u00e9" for é in this chemistry answer about salts.'),
        ("```python\nprint('caf\\xc3\\xa9')\n```", "The result prints caf\\xc3\\xa9 on screen for the gas law."),
        ("Write `&amp;` in the page.", "Fish &amp; chips are sold near the harbour in the town."),
    ],
)
def test_escape_checks_skip_code_blocks_and_inline_code(inside: str, outside: str):
    question = "Explain the rule about the gas law with an example."
    body = " The rest of the answer explains the idea in full sentences so that it is long enough to keep."
    assert "escape_garbage" not in rule_flags({"question": question, "answer": inside + body})
    assert "escape_garbage" in rule_flags({"question": question, "answer": outside + body})
    assert prose(inside) != inside and prose(outside) == outside


def test_truncation_reads_the_end_outside_code_and_accepts_colons_and_semicolons():
    base = "The query groups orders by customer and keeps the large totals, as the question asks for."
    assert rule_flags({"question": "q?", "answer": base + "\n\nIn SQL it reads:\n\nSELECT 1;"}) == []
    assert rule_flags({"question": "q?", "answer": base + "\n\nThe checklist heading reads:"}) == []
    assert rule_flags({"question": "q?", "answer": base + "\n\n```sql\nSELECT name FROM t WHERE x =\n```"}) == []
    assert rule_flags({"question": "q?", "answer": base + "\n\n```sql\nSELECT name FROM t"}) == ["truncated"]
    assert rule_flags({"question": "q?", "answer": base + " The total is then added to the"}) == ["truncated"]


def test_the_data_set_drops_the_dropping_rules_by_default_and_exactly_the_named_ones_otherwise():
    answer = "Sure! The impulse of a force is the product of the force and the time it acts: the change in momentum."
    pair = {"id": "p", "question": "Why?", "answer": answer}
    assert rule_flags(pair) == ["greeting"]
    assert "greeting" in DROPPING and pair_reasons(pair, None, set(), QualityFilterSettings()) == ["greeting"]
    assert pair_reasons(pair, None, set(), QualityFilterSettings(drop_flags=["refusal"])) == []
    assert pair_reasons(pair, None, set(), QualityFilterSettings(drop_flags=["greeting"])) == ["greeting"]


def test_the_paper_config_names_every_rule_it_applies():
    text = (ROOT / "configs" / "paper.yaml").read_text(encoding="utf-8")
    assert "dataset.quality.enabled false" in text and all(f" {rule}" in text for rule in DROPPING)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_data_set_counts_the_flags_of_the_pairs_it_keeps(tmp_path, enabled):
    answer = "The impulse of a force is the product of the force and the time it acts: the change in momentum."
    pairs = [
        {"id": "a", "question": "Why?", "answer": "Sure! " + answer, "discipline": "Physics"},
        {"id": "b", "question": "Why?", "answer": answer + " Good luck!", "discipline": "Physics"},
        {"id": "c", "question": "Why?", "answer": answer, "discipline": "Physics"},
    ]
    cfg = QualityFilterSettings(enabled=enabled, drop_flags=["greeting"])  # submission_instructions is kept
    removed, summary = filter_pairs(pairs, np.ones(3, bool), tmp_path, cfg)
    assert removed.tolist() == [enabled, False, False]
    assert summary["by_reason"] == ({"greeting": 1} if enabled else {})
    assert summary["flagged_kept"] == {"submission_instructions": 1} | ({} if enabled else {"greeting": 1})
