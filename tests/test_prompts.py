"""Prompts: data reaches the model verbatim, every stage's rendered prompt is pinned, and paper mode's two calls.

The golden files under tests/data/golden/ are the rendered prompts of fixed records; a prompt edit shows up as a
diff there (regenerate with `GLAN_UPDATE_GOLDEN=1 pytest tests/test_prompts.py` and review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from glan_utils.core.records import ClassSession, Question, Subject, Syllabus, TaxonomyNode
from glan_utils.llm.prompts import RenderedPrompt
from glan_utils.runs.store import RunStore
from glan_utils.stages import answers, extraction, pipeline, questions, subjects, syllabi, taxonomy
from glan_utils.testing import OpenAIServer, fake_json
from glan_utils.testing.fake_payloads import json_schema_of

GOLDEN = Path(__file__).parent / "data" / "golden"
# what HTML-escaping JSON quoting (Jinja's `tojson`) used to do to data, and what must never reach the model
ESCAPES = ("\\u0027", "\\u003c", "\\u003e", "\\u0026", '\\"', "\\\\")
NAME = 'Newton\'s <Laws> & "Co" \\ a<b'  # a discipline name with every character `tojson` escaped
CONCEPT = "x<y & y's \\alpha"
QUESTION = "Given `if a<b: print('ok')` & $\\frac{a}{b} > \"1\"$, what prints?\n```python\nprint(a<b)\n```"


def tricky(value: Any, key: str = "") -> Any:
    """Replace the free-text strings of a schema-valid reply with ones full of quotes, markup, code and LaTeX."""
    if isinstance(value, dict):
        return {k: tricky(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [tricky(v, key) for v in value]
    if isinstance(value, str) and key in ("subject_name", "title", "key_concepts", "subtopics"):
        return f"{CONCEPT} {value[-4:]}"
    if isinstance(value, str) and key == "question":
        return f"{QUESTION} {value[-4:]}"
    return value


def responder(body: dict[str, Any]) -> str:
    schema = json_schema_of(body)
    if schema is None:
        return "Final answer: it prints True."
    return json.dumps(tricky(fake_json(schema, json.dumps(body["messages"]))), ensure_ascii=False)


async def test_data_reaches_every_prompt_verbatim(tmp_path, make_settings):
    source = tmp_path / "taxonomy.json"
    source.write_text(json.dumps({"Science": {"Physics": [NAME]}}), encoding="utf-8")
    with OpenAIServer(models=["fake-model"], responder=responder) as server:
        overrides = {
            "taxonomy.source": str(source),
            "subjects.rounds": 2,
            "subjects.per_round": 2,
            "subjects.max_subjects": 1,
            "syllabi.min_sessions": 2,
            "syllabi.max_sessions": 2,
            "questions.questions_per_syllabus": 2,
        }
        settings = make_settings(server.base_url, overrides)
        reports = await pipeline.run_until(settings, "answers")
        bodies = server.requests
    assert all(r.summary.failed == 0 for r in reports.values())
    by_stage: dict[str, list[str]] = {}
    for body in bodies:
        text = "\n".join(m["content"] for m in body["messages"])
        assert not any(escape in text for escape in ESCAPES), text
        stage = "answers" if "response_format" not in body else body["response_format"]["json_schema"]["name"]
        by_stage.setdefault(stage, []).append(text)
    assert set(by_stage) == {"SubjectProposalReplyList", "SyllabusReply", "QuestionReply", "answers"}
    assert all(NAME in text for texts in by_stage.values() for text in texts)  # the discipline, as written
    assert CONCEPT in by_stage["SubjectProposalReplyList"][-1]  # round 2 sees round 1's names, verbatim
    assert all(CONCEPT in text for text in by_stage["SyllabusReply"] + by_stage["QuestionReply"])
    store = RunStore(settings.run_dir)
    asked = [q.question for q in store.iter_records("questions")]
    assert asked and all(q.startswith(QUESTION) for q in asked)
    user_turns = [body["messages"][-1]["content"] for body in bodies if "response_format" not in body]
    assert sorted(user_turns) == sorted(asked)  # the answer model gets the bare question, byte for byte


@pytest.mark.parametrize(
    ("name", "fields"),
    [
        ("judge", ("question", "reference", "answer")),
        ("judge_pairwise", ("question", "answer_1", "answer_2")),
        ("quality", ("question", "answer")),
    ],
)
def test_judges_read_data_verbatim(name: str, fields: tuple[str, ...]) -> None:
    """The judges grade exactly the code and math they are shown: no `\\u003c` for `<`, no doubled backslashes."""
    from glan_utils.llm.prompts import render

    names = {"discipline": NAME, "difficulty": "basic", "subject": NAME, "level": "intro", "language": "English"}
    names |= {"question_type": "code"}
    rendered = render(name, **names, concepts=[CONCEPT], **dict.fromkeys(fields, QUESTION))
    text = "\n".join(m["content"] for m in rendered.messages)
    assert not any(escape in text for escape in ESCAPES), text
    assert NAME in text and text.count(f"<<<\n{QUESTION}\n>>>") == len(fields)
    if name == "quality":
        assert "applying the concepts to a concrete case" in text  # what the question prompt asks of a basic one


# ----- golden rendered prompts -----

DISCIPLINE = TaxonomyNode(name="Linear Algebra", level="discipline", path=["Mathematics", "Algebra", "Linear Algebra"])
SUBJECT = Subject(
    discipline_id=DISCIPLINE.id,
    discipline=DISCIPLINE.name,
    subject_name="Matrix Theory",
    level="undergraduate intermediate",
    subtopics=["eigenvalues", "Jordan form"],
)
SYLLABUS = Syllabus(
    subject_id=SUBJECT.id,
    discipline_id=DISCIPLINE.id,
    discipline=DISCIPLINE.name,
    subject_name=SUBJECT.subject_name,
    level=SUBJECT.level,
    overview="Matrices as linear maps, and what their spectra say about them.",
    objectives=["compute eigenvalues", "reason about diagonalisability"],
    outcomes=["decide whether a matrix is diagonalisable"],
    sessions=[
        ClassSession(
            index=1, title="Eigenvalues", description="Characteristic polynomial.", key_concepts=["eigenvalue"]
        ),
        ClassSession(
            index=2,
            title="Diagonalisation",
            description="Bases of eigenvectors.",
            key_concepts=["eigenbasis", "A=PDP^{-1}"],
        ),
    ],
)
QUESTION_RECORD = Question(
    syllabus_id=SYLLABUS.id,
    subject_id=SUBJECT.id,
    discipline_id=DISCIPLINE.id,
    discipline=DISCIPLINE.name,
    subject=SUBJECT.subject_name,
    level=SUBJECT.level,
    difficulty="challenging",
    question_type="derivation or proof",
    session_indices=[1, 2],
    concepts=["eigenvalue", "eigenbasis"],
    sample_index=0,
    question="Prove that a 3x3 matrix with three distinct eigenvalues is diagonalisable.",
)


def golden_prompts(settings: Any) -> dict[str, RenderedPrompt]:
    task = questions.QuestionTask(
        SYLLABUS,
        questions.Draw(0, "challenging", (1, 2), ("eigenvalue", "eigenbasis")),
        question_type="code with tests",
    )
    return {
        "taxonomy_field": taxonomy.expand_prompt(taxonomy.ExpandTask(None, "field", 6), "English"),
        "taxonomy_discipline": taxonomy.expand_prompt(
            taxonomy.ExpandTask(
                TaxonomyNode(name="Algebra", level="subfield", path=["Mathematics", "Algebra"]), "discipline", 5
            ),
            "English",
        ),
        "subjects": subjects.subjects_prompt(
            DISCIPLINE, settings, 2, ["Linear Algebra I (undergraduate introductory)"]
        ),
        "subjects_paper": subjects.subjects_prompt(DISCIPLINE, settings, 0, [], paper=True),
        "syllabi": syllabi.syllabus_prompt(SUBJECT, settings, siblings=["Matrix Theory", "Numerical Linear Algebra"]),
        "questions": questions.question_prompt(task, "English", settings.questions.question_types),
        "answers": answers.answer_prompt(QUESTION_RECORD, "English"),
        "extract": extraction.extraction_prompt("1. Matrix Theory ...", "course syllabus", syllabi.SHAPE),
    }


def as_text(prompt: RenderedPrompt) -> str:
    return "".join(f"----- {m['role']} -----\n{m['content']}\n" for m in prompt.messages)


GOLDEN_NAMES = [
    "taxonomy_field",
    "taxonomy_discipline",
    "subjects",
    "subjects_paper",
    "syllabi",
    "questions",
    "answers",
    "extract",
]


@pytest.mark.parametrize("name", GOLDEN_NAMES)
def test_rendered_prompt_matches_golden(name, make_settings):
    paper_sizes = {"syllabi.min_sessions": 10, "syllabi.max_sessions": 30, "syllabi.concepts_per_session": 5}
    prompt = golden_prompts(make_settings("http://127.0.0.1:9/v1", paper_sizes))[name]
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("GLAN_UPDATE_GOLDEN"):
        path.write_text(as_text(prompt), encoding="utf-8")
    assert as_text(prompt) == path.read_text(encoding="utf-8"), f"{name} prompt changed: review, then regenerate"


# ----- paper mode -----


@pytest.mark.parametrize("stage", ["subjects", "syllabi"])
async def test_paper_mode_writes_free_text_then_extracts(stage, openai_server, make_settings):
    sizes = {
        "taxonomy.source": str(Path(__file__).parent / "data" / "taxonomy" / "paths.csv"),
        "subjects.rounds": 1,
        "subjects.max_subjects": 1,
        "syllabi.min_sessions": 2,
        "syllabi.max_sessions": 3,
    }
    settings = make_settings(openai_server.base_url, {**sizes, f"{stage}.structure": "paper"})
    await pipeline.run_until(settings, stage)
    bodies = [b for b in openai_server.requests if (stage == "syllabi") == ("syllabus" in json.dumps(b))]
    drafts = [b for b in bodies if "response_format" not in b]
    extracts = [b for b in bodies if "response_format" in b]
    assert len(drafts) == len(extracts) == 5  # one per discipline (subjects) or per subject (syllabi)
    assert all("plain text" in b["messages"][-1]["content"] for b in drafts)
    assert all(b["temperature"] == 0.0 and "<<<" in b["messages"][-1]["content"] for b in extracts)
    assert len(list(RunStore(settings.run_dir).iter_records(stage))) == 5
