"""Settings: file < env < overrides, and one clear line naming the bad key."""

from __future__ import annotations

import pytest

from glan_utils.core.errors import ConfigError
from glan_utils.settings import load_settings


def test_layers_merge_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: filerun\nllm:\n  concurrency: 3\n  model: file-model\n")
    settings = load_settings(
        path, {"llm.model": "param-model"}, environ={"GLAN_LLM__CONCURRENCY": "7", "GLAN_SUBJECTS__ROUNDS": "2"}
    )
    assert settings.run_name == "filerun"
    assert settings.llm.concurrency == 7 and settings.subjects.rounds == 2
    assert settings.llm.model == "param-model"


@pytest.mark.parametrize(
    ("text", "overrides", "needle"),
    [
        ("llm:\n  concurency: 3\n", {}, "llm.concurency: unknown key"),
        ("llm:\n  concurrency: lots\n", {}, "llm.concurrency"),
        ("", {"subjects.top_p": 2}, "subjects.top_p"),
        ("run_name: 'bad name/..'\n", {}, "run_name"),
        ("llm: [1, 2\n", {}, "not valid YAML"),
        ("- a\n- b\n", {}, "top level must be a mapping"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, overrides, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides, environ={})
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_missing_file_is_clear():
    with pytest.raises(ConfigError, match="file not found"):
        load_settings("/nonexistent/glan.yaml", environ={})


def test_snapshot_names_the_key_variable_not_the_key(monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-secret-value")
    settings = load_settings(None, {"llm.api_key_env": "MY_KEY"}, environ={})
    assert "sk-secret-value" not in str(settings.snapshot())
    assert settings.snapshot()["llm"]["api_key_env"] == "MY_KEY"
