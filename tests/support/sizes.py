"""The tiny run most stage tests use: the 2-discipline test taxonomy, one subject each, two questions a syllabus."""

from pathlib import Path

TAXONOMY = str(Path(__file__).resolve().parents[1] / "data" / "taxonomy" / "paths.csv")
TINY_RUN = {
    "taxonomy.source": TAXONOMY,
    "subjects.rounds": 1,
    "subjects.max_subjects": 1,
    "syllabi.min_sessions": 2,
    "syllabi.max_sessions": 3,
    "questions.questions_per_syllabus": 2,
}
