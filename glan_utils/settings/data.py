"""Settings of the data set stage (dedup, decontamination, export), in a light module of their own.

Only pydantic and the `Section` base: loading settings must not pull in numpy, datasketch or pyarrow.
"""

from __future__ import annotations

from pydantic import Field

from glan_utils.core.section import Section


class DedupSettings(Section):
    """Exact and near-duplicate removal over questions (paper §2.6: near-duplicates removed)."""

    exact: bool = Field(True, description="Remove questions whose normalised text is identical.")
    near: bool = Field(True, description="Remove near-duplicate questions with MinHash LSH.")
    threshold: float = Field(0.8, gt=0, lt=1, description="Estimated Jaccard similarity at which two are duplicates.")
    shingle_size: int = Field(3, ge=1, description="Words per shingle (word n-gram).")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations; more = finer similarity estimate.")
    seed: int = Field(1, description="Seed of the MinHash permutations.")
    chunk_size: int = Field(2048, ge=1, description="Texts hashed per vectorised chunk (bounds transient memory).")


class DecontamSettings(Section):
    """N-gram overlap decontamination against benchmark test (and train/validation/dev where shipped) sets."""

    enabled: bool = True
    ngram: int = Field(13, ge=3, description="Words per n-gram; 13 as in GPT-3 and lm-eval's decontamination.")
    min_matches: int = Field(1, ge=1, description="Shared n-grams with one benchmark at which a record is removed.")
    benchmarks: list[str] | None = Field(None, description="Benchmarks to check; null = all of them.")
    splits: list[str] | None = Field(None, description="Splits to check; null = every split shipped offline.")
    cache_dir: str | None = Field(None, description="Where n-gram indexes are cached; null = the workbench cache.")
    chunk_size: int = Field(1024, ge=1, description="Records per vectorised chunk.")
    workers: int | None = Field(None, ge=1, description="Processes matching chunks; null = one per CPU.")
    examples: int = Field(3, ge=0, description="Flagged records kept as examples per benchmark.")


class ExportSettings(Section):
    """Train / held-out test split (GLAN-Test: 50 questions per discipline) and the export batch size."""

    test_per_discipline: int = Field(50, ge=0, description="Test questions per discipline (paper: 50).")
    test_fraction: float | None = Field(None, gt=0, lt=1, description="If set: this share of each discipline instead.")
    test_max_share: float = Field(0.5, gt=0, le=1, description="Never more than this share of a discipline.")
    seed: int = Field(0, description="Seeds which records go to test.")
    chunk_size: int = Field(10_000, ge=1, description="Rows per write batch.")


class QualityFilterSettings(Section):
    """Which QA pairs the data set drops for quality (not in the paper: a documented choice of this workbench).

    Rule checks run on every pair at build time (no calls); the judge score and verifier verdicts come from the
    quality stage's records and apply only to pairs it judged.
    """

    enabled: bool = Field(True, description="Apply the quality filters; false = keep every pair as the paper does.")
    min_score: float = Field(3.0, ge=1, le=5, description="Drop pairs whose mean judge score (1..5) is below this.")
    drop_flags: list[str] | None = Field(
        None, description="Rule flags that drop a pair; null = every rule that is not a warning (README table)."
    )
    drop_disagreement: bool = Field(True, description="Drop pairs whose verifier disagreed with the final answer.")
    semantic_dedup: bool = Field(False, description="Also drop semantic near-duplicates (embedding cosine).")
    semantic_threshold: float = Field(0.9, gt=0, lt=1, description="Cosine at which two questions are semantic dupes.")
    min_words_basic: int = Field(15, ge=0, description="Rule `answer_too_short`: fewest words in a basic answer.")
    min_words_challenging: int = Field(30, ge=0, description="Rule `answer_too_short`: fewest in a challenging one.")


class DatasetSettings(Section):
    """Paper §2.6: near-duplicates removed, decontaminated against benchmarks, held-out GLAN-Test split."""

    dedup: DedupSettings = Field(default_factory=DedupSettings)
    decontamination: DecontamSettings = Field(default_factory=DecontamSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    quality: QualityFilterSettings = Field(default_factory=QualityFilterSettings)
    examples: int = Field(5, ge=0, description="Removed duplicates shown as examples per reason.")
    license: str = Field("other", description="License id written into the dataset card.")
    pretty_name: str | None = Field(None, description="Card title; null = derived from the run name.")
