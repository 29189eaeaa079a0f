"""Every knob of a run, one module per wing; light to load: no section imports a feature module.

May import: `core`.
"""

from glan_utils.settings.benchmarks import BENCHMARKS
from glan_utils.settings.config import ENV_PREFIX, Settings, load_settings
from glan_utils.settings.data import (
    DatasetSettings,
    DecontamSettings,
    DedupSettings,
    ExportSettings,
    QualityFilterSettings,
)
from glan_utils.settings.evaluation import EvalSettings
from glan_utils.settings.llm import EmbeddedSettings, LLMSettings, Price, api_key
from glan_utils.settings.scale import BatchSettings, RaySettings, ScaleSettings
from glan_utils.settings.stages import (
    FOLLOWUP_KINDS,
    AnswerSettings,
    FollowupSettings,
    QualitySettings,
    QuestionSettings,
    SubjectSettings,
    SyllabiSettings,
    TaxonomySettings,
)
from glan_utils.settings.train import PRESETS, FinetuneSettings

__all__ = [
    "BENCHMARKS",
    "ENV_PREFIX",
    "FOLLOWUP_KINDS",
    "PRESETS",
    "AnswerSettings",
    "BatchSettings",
    "DatasetSettings",
    "DecontamSettings",
    "DedupSettings",
    "EmbeddedSettings",
    "EvalSettings",
    "ExportSettings",
    "FinetuneSettings",
    "FollowupSettings",
    "LLMSettings",
    "Price",
    "QualityFilterSettings",
    "QualitySettings",
    "QuestionSettings",
    "RaySettings",
    "ScaleSettings",
    "Settings",
    "SubjectSettings",
    "SyllabiSettings",
    "TaxonomySettings",
    "api_key",
    "load_settings",
]
