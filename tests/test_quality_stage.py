"""The quality stage on the test server with scripted judge replies, and the data set that filters on it.

Planted bad pairs of eleven kinds (nine rule flags, a low judge score, a wrong closed answer caught by the
second answer) must all leave the data set while the clean pairs stay; resume and the cache behave as in every
stage; a failed judge reply is kept with its raw output and retried.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pyarrow.parquet as pq
import pytest

from glan_utils.core.records import Provenance, QAPair, TaxonomyNode
from glan_utils.data.build import build_dataset
from glan_utils.runs.store import RunStore
from glan_utils.stages import STAGES, pipeline
from glan_utils.stages.rules import rule_flags
from glan_utils.testing import OpenAIServer

NOUNS = [
    "cart",
    "pendulum",
    "spring",
    "beam",
    "pulley",
    "lens",
    "prism",
    "capacitor",
    "resistor",
    "solenoid",
    "turbine",
    "rocket",
]
PLACES = ["track", "ramp", "bridge", "tower", "river", "orbit", "lab", "canal", "valley", "harbor"]
VERBS = ["estimate", "derive", "compute", "justify", "determine", "evaluate"]
ELEMENTS = ["sodium", "carbon", "nitrogen", "argon", "copper", "zinc", "iron", "sulfur"]
CLEAN = 100


def taxonomy() -> list[TaxonomyNode]:
    field = TaxonomyNode(name="Science", level="field", path=["Science"])
    sub = TaxonomyNode(name="Natural", level="subfield", parent_id=field.id, path=["Science", "Natural"])
    return [field, sub] + [
        TaxonomyNode(name=name, level="discipline", parent_id=sub.id, path=["Science", "Natural", name])
        for name in ("Physics", "Chemistry")
    ]


def pair(discipline: TaxonomyNode, index: int, question: str, answer: str, **extra: Any) -> QAPair:
    values: dict[str, Any] = {
        "question_id": f"q{index}",
        "syllabus_id": f"syl-{discipline.name}",
        "subject_id": f"sub-{discipline.name}",
        "discipline_id": discipline.id,
        "field": "Science",
        "subfield": "Natural",
        "discipline": discipline.name,
        "subject": f"{discipline.name} I",
        "level": "undergraduate",
        "difficulty": "basic",
        "session_indices": [1],
        "concepts": ["momentum", "impulse"],
        "question": question,
        "answer": answer,
        "provenance": Provenance(prompt="answers", prompt_hash="h", model="fake-model"),
    }
    return QAPair(**(values | extra))


def clean_pair(discipline: TaxonomyNode, i: int) -> tuple[QAPair, str]:
    """A distinct, well-formed pair; even ones state a closed final answer. Returns it with its correct value."""
    rng = random.Random(i)
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    noun, place, verb, element = rng.choice(NOUNS), rng.choice(PLACES), rng.choice(VERBS), rng.choice(ELEMENTS)
    question = (
        f"Case {i}: a {noun} made of {element} rests near the {place} with a mass of {a} kg. "
        f"If a force acts for {b} seconds, {verb} the change in its momentum and explain the role of impulse."
    )
    reasoning = (
        f"We start from the definition of impulse, which is the product of the force and the time for which it "
        f"acts. The {noun} has a mass of {a} kg and the force acts for {b} seconds, so the impulse equals the "
        f"change in momentum of the {noun}. Taking a unit force, the change in momentum is {a} times {b} divided "
        f"by {a}, which gives the value below, and the direction is the same as that of the force."
    )
    closing = f" Final answer: {b}." if i % 2 == 0 else " This is why impulse and momentum change are equal."
    return pair(discipline, i, question, reasoning + closing), str(b)


GOOD = (
    "We use the definition of momentum as the product of mass and velocity, and the impulse is the integral of "
    "the force over the time it acts. Both sides are equal by the second law of motion, so the result follows."
)
PLANTS: dict[str, tuple[str, str]] = {
    "boilerplate_header": (
        "Planted header: why is impulse equal to the change of momentum?",
        "Subject: Homework 3\n" + GOOD,
    ),
    "greeting": ("Planted greeting: how are momentum and impulse related?", "Sure! I'd be happy to help. " + GOOD),
    "submission_instructions": (
        "Planted submission: state the impulse momentum theorem.",
        GOOD + " Please submit your answers to the course portal by Friday.",
    ),
    "refusal": (
        "Planted refusal: compare impulse with momentum.",
        "I'm sorry, but I can't help with this homework question because it might be graded work for a course.",
    ),
    "truncated": ("Planted truncation: what does impulse measure?", GOOD + " Therefore the impulse is the"),
    "wrong_language": (
        "Planted language: explain the impulse of a force.",
        "La quantité de mouvement est le produit de la masse et de la vitesse, et une impulsion est une force "
        "qui agit pendant un temps donc la variation de la quantité de mouvement est égale à l'impulsion.",
    ),
    "escape_garbage": (
        "Planted escapes: why does the impulse equal the change in momentum?",
        GOOD + " That\\u0027s it.",
    ),
    "answer_too_short": ("Planted short: what is the unit of impulse?", "Newton seconds."),
    "restates_syllabus": (
        "This class session covers the key concepts: momentum, impulse.",
        GOOD,
    ),
    "low_judge_score": ("Planted wrong: is impulse a scalar quantity in mechanics?", GOOD),
    "verifier_disagreement": (
        "Planted disagreement: a 6 kg cart gets 7 N s of impulse; find 6 times 7.",
        GOOD + " Final answer: 41.",
    ),
}


class Judge:
    """Scripted replies: rubric JSON for judge calls, a worked second answer for the verifier's calls."""

    def __init__(self, second_answers: dict[str, str]) -> None:
        self.second_answers = second_answers
        self.broken: str | None = None  # judge calls about this text get prose instead of JSON

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        if self.broken and any(self.broken in m["content"] for m in body["messages"]):
            return "I would rate it highly."
        if body.get("response_format"):
            low = "Planted wrong" in prompt
            scores = dict.fromkeys(("correctness", "completeness", "clarity", "concept_fit", "difficulty_fit"), 5)
            if low:
                scores |= {"correctness": 1, "completeness": 1, "difficulty_fit": 1}
            return json.dumps(scores | {"rationale": "The answer is wrong." if low else "Correct and complete."})
        value = next((v for q, v in self.second_answers.items() if q in prompt), "0")
        return f"The impulse equals the change in momentum, as shown above. Final answer: {value}."


def write_planted_run(settings: Any) -> tuple[list[QAPair], dict[str, QAPair], dict[str, str]]:
    nodes = taxonomy()
    store = RunStore(settings.run_dir)
    store.append("taxonomy", nodes)
    physics, chemistry = nodes[2], nodes[3]
    clean, seconds = [], {}
    for i in range(CLEAN):
        made, value = clean_pair(physics if i % 2 else chemistry, i)
        clean.append(made)
        seconds[made.question] = value
    planted = {
        kind: pair(physics if k % 2 else chemistry, 1000 + k, question, answer)
        for k, (kind, (question, answer)) in enumerate(PLANTS.items())
    }
    seconds[planted["verifier_disagreement"].question] = "42"
    store.append("answers", [*clean, *planted.values()])
    return clean, planted, seconds


@pytest.fixture
def planted(make_settings):
    with OpenAIServer(models=["fake-model", "judge-model"]) as server:
        settings = make_settings(server.base_url, {"quality.model": "judge-model", "llm.concurrency": 4})
        clean, plants, seconds = write_planted_run(settings)
        server.responder = Judge(seconds)
        yield server, settings, clean, plants


def test_rule_checks_name_each_planted_kind_and_pass_clean_pairs():
    physics = taxonomy()[2]
    for kind, (question, answer) in PLANTS.items():
        flags = rule_flags(pair(physics, 0, question, answer).model_dump())
        assert flags == ([] if kind in ("low_judge_score", "verifier_disagreement") else [kind]), kind
    flagged = [i for i in range(CLEAN) if rule_flags(clean_pair(physics, i)[0].model_dump())]
    assert flagged == []


async def test_planted_bad_pairs_leave_the_data_set_and_clean_ones_stay(planted):
    server, settings, clean, plants = planted
    report = await pipeline.run(settings, "quality")
    verdicts = {v.pair_id: v for v in RunStore(settings.run_dir).iter_records("quality")}
    assert report.summary.failed == 0 and len(verdicts) == CLEAN + len(PLANTS)
    judge_calls = [r for r in server.requests if r.get("response_format")]
    assert len(judge_calls) == len(verdicts) and all(r["model"] == "judge-model" for r in judge_calls)
    closed = CLEAN // 2 + 1  # even clean pairs and the planted disagreement state a closed answer
    assert len(server.requests) - len(judge_calls) == closed
    assert all(r["seed"] == 1 for r in server.requests if not r.get("response_format"))
    wrong = verdicts[plants["verifier_disagreement"].id].verifications[0]
    assert (wrong.agreed, wrong.first, wrong.second) == (False, "41", "42")
    assert verdicts[clean[0].id].verifications[0].agreed is True
    assert verdicts[plants["low_judge_score"].id].score < 3 <= verdicts[clean[1].id].score

    data = build_dataset(
        RunStore(settings.run_dir),
        settings.dataset.model_copy(
            update={"decontamination": settings.dataset.decontamination.model_copy(update={"enabled": False})}
        ),
    )
    kept = set(pq.read_table(settings.run_dir / "dataset" / "qa.parquet", columns=["id"])["id"].to_pylist())
    assert not kept & {p.id for p in plants.values()}
    assert len(kept & {p.id for p in clean}) >= 98
    assert set(PLANTS) <= set(data.quality["by_reason"])
    assert data.quality_removed == len(PLANTS) and data.kept == len(kept)
    per_discipline = {(r["discipline"], r["reason"]) for r in data.quality["by_discipline"]}
    assert ("Physics", "greeting") in per_discipline and ("Chemistry", "boilerplate_header") in per_discipline
    card = (settings.run_dir / "dataset" / "README.md").read_text(encoding="utf-8")
    assert "## Quality filter" in card and "| Physics | greeting | 1 |" in card


async def test_resume_and_cache_as_in_every_stage(planted):
    server, settings, clean, _ = planted
    server.responder.broken = clean[3].question  # its judge reply and the re-ask are both prose
    first = await pipeline.run(settings, "quality")
    store = RunStore(settings.run_dir)
    failure = next(store.iter_failures("quality"))
    assert first.summary.failed == 1 and failure.raw is not None and failure.reason
    calls = len(server.requests)

    server.responder.broken = None
    second = await pipeline.run(settings, "quality")  # resumes: only the failed pair is judged again
    assert (second.summary.failed, second.summary.records) == (0, 1)
    assert len(server.requests) - calls <= 2

    server.reset_stats()
    third = await pipeline.run(settings, "quality")  # everything done: no client, no call
    assert third.summary.records == 0 and server.count == 0

    (settings.run_dir / "quality.jsonl").unlink()
    fourth = await pipeline.run(settings, "quality")  # records gone, calls cached: all free
    assert fourth.summary.records == CLEAN + len(PLANTS) and server.count == 0
    assert (fourth.llm.calls, fourth.llm.cached) == (0, CLEAN + len(PLANTS) + CLEAN // 2 + 1)


def test_estimate_and_preview_cover_the_stage(planted):
    _, settings, _, _ = planted
    plan = pipeline.plans(settings)["quality"]
    assert plan.calls == CLEAN + len(PLANTS) + CLEAN // 2 + 1  # a judge call per pair, a second per closed one
    assert STAGES["quality"].model(settings) == "judge-model"
    prompt = pipeline.preview_prompt(settings, "quality")
    assert "correctness" in prompt.messages[-1]["content"] and prompt.name == "quality"
    assert re.search(r"difficulty_fit", prompt.messages[-1]["content"])


@pytest.mark.embedded
@pytest.mark.timeout(600)
async def test_embedded_demo_model_runs_the_stage(tmp_path):
    """The demo's SmolLM2-135M judges a few pairs: every pair gets a verdict or a failure kept with its raw text.
    Its scores are low and noisy (notebook 04 says so); only the machinery is checked here."""
    from glan_utils.settings import load_settings

    settings = load_settings(
        None,
        {
            "output_dir": str(tmp_path / "outputs"),
            "llm.cache_path": str(tmp_path / "cache.sqlite"),
            "quality.max_tokens": 256,
        },
        environ={},
    )
    nodes = taxonomy()
    store = RunStore(settings.run_dir)
    store.append("taxonomy", nodes)
    store.append("answers", [clean_pair(nodes[2], i)[0] for i in range(3)])
    report = await pipeline.run(settings, "quality")
    verdicts, failures = list(store.iter_records("quality")), list(store.iter_failures("quality"))
    assert len(verdicts) + len(failures) == report.summary.planned == 3
    assert all(1 <= v.score <= 5 and v.rationale for v in verdicts)
    assert all(f.reason for f in failures)
