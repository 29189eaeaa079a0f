"""The GLAN flow, one module per stage. `STAGES` holds each module's `Stage` in pipeline order; every other list
of stages (runners, record types, snapshot sections, estimates) is derived from it.

May import: `core`, `settings`, `llm`, `runs`.
"""

from glan_utils.stages import answers, followups, quality, questions, subjects, syllabi, taxonomy
from glan_utils.stages.registry import Stage

STAGES: dict[str, Stage] = {
    stage.name: stage
    for stage in (
        taxonomy.STAGE,
        subjects.STAGE,
        syllabi.STAGE,
        questions.STAGE,
        answers.STAGE,
        quality.STAGE,
        followups.STAGE,
    )
}

__all__ = ["STAGES", "Stage"]
