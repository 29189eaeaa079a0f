"""The run table and the one-page HTML report: offline (plotly.js inlined once), code hidden or shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser.runs import CODE_MARKER, make_report_run

from glan_utils.app.report import render_report
from glan_utils.app.summary import run_table, run_totals
from glan_utils.core.errors import InputError
from glan_utils.runs.store import RunStore


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_report_run(tmp_path / "outputs" / "demo")


def test_run_table_joins_manifest_records_and_ledger(run_dir: Path) -> None:
    table = run_table(run_dir).set_index("stage")
    assert table.loc["answers", "status"] == "complete_with_failures"
    assert table.loc["answers", "records"] == 2
    assert (table.loc["answers", "calls"], table.loc["answers", "cache_hits"]) == (3, 1)
    assert table.loc["answers", "call_failures"] == 1
    assert table.loc["01_tiny", "status"] == "complete"
    assert run_totals(run_dir)["tokens"] == 45


def test_report_is_offline_and_hides_code(run_dir: Path) -> None:
    html = render_report(run_dir).read_text(encoding="utf-8")
    assert html.count('class="plotly-graph-div"') == 2
    assert html.count("Plotly.newPlot") == 2
    assert html.count("plotly.js v") == 1, "plotly.js must be inlined exactly once"
    assert 'src="http' not in html, "no CDN scripts: the page must work offline"
    assert CODE_MARKER not in html
    assert "kept-rows" in html and "What this stage does." in html
    assert "<h1" in html and "Tiny GLAN data set" in html and "<em>synthetic</em>" in html
    assert "pretty_name" in html, "the card's YAML header is shown (as a code block)"
    assert "fake-model" in html, "config.yaml is included"


def test_report_can_show_code_and_write_elsewhere(run_dir: Path, tmp_path: Path) -> None:
    out = render_report(run_dir, tmp_path / "share" / "r.html", show_code=True)
    assert out == tmp_path / "share" / "r.html"
    assert CODE_MARKER in out.read_text(encoding="utf-8")


def test_missing_run_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run"):
        render_report(tmp_path / "nope")


def test_report_leads_with_findings_and_folds_the_rest(tmp_path: Path) -> None:
    from browser.runs import make_findings_run

    html = render_report(make_findings_run(tmp_path / "outputs" / "demo")).read_text(encoding="utf-8")
    first_fold = html.index('<details class="glan-fold">')
    findings = html[:first_fold]
    assert "12 kept" in findings and "glan-benchmarks" in findings
    assert findings.count('data-finding="') == 4 and 'class="glan-finding glan-missing"' not in findings
    assert "0-shot, generated letter extracted" in findings and "95% CI" in findings
    mix = findings[findings.index('data-finding="mix"') : findings.index('data-finding="benchmarks"')]
    assert all(f'"{kind}"' in mix for kind in ("derivation or proof", "case analysis", "untyped")), mix[:500]
    assert html.count("<details") == html.count("</details>") >= 6
    for title in ("Stages and cost", "Run card", "Prompts", "Configuration", "Data set card", "Notebook 01_tiny"):
        assert f"<summary>{title}" in html[first_fold:], title


def test_findings_say_what_is_missing_instead_of_empty_boxes(run_dir: Path) -> None:
    html = render_report(run_dir).read_text(encoding="utf-8")
    findings = html[: html.index('<details class="glan-fold">')]
    assert findings.count('class="glan-finding glan-missing"') == 4 and "no evaluation yet" in findings
    assert "Paper benchmarks not run: " in findings and "bbh: no copy ships on PyPI" in findings
    assert "evol_instruct: the Evol-Instruct test set" in findings


def test_run_card_has_hashes_scores_and_no_secrets(tmp_path: Path) -> None:
    import json

    from browser.runs import make_findings_run

    from glan_utils.data.run_card import END, START, refresh_cards
    from glan_utils.runs.store import RunStore

    run_dir = make_findings_run(tmp_path / "outputs" / "demo")
    RunStore(run_dir).write_config(
        {
            "seed": 7,
            "llm": {"model": "fake-model", "base_url": "http://user:pw@127.0.0.1:9/v1", "api_key": "sk-secret"},
            "dataset": {"export": {"seed": 3}},
        }
    )
    (run_dir / "taxonomy.jsonl").write_text('{"id": "t1"}\n{"id": "t2"}\n')
    (run_dir / "reviews").mkdir()
    (run_dir / "reviews" / "alice.json").write_text("{}")
    model_dir = run_dir / "finetune" / "cpu-demo"
    model_dir.mkdir(parents=True)
    (model_dir / "README.md").write_text("# A fine-tune\n")
    (model_dir / "train_result.json").write_text('{"steps": 4}')
    card = refresh_cards(run_dir)
    assert card["finetune"] == {"cpu-demo": {"steps": 4}}
    assert START in (model_dir / "README.md").read_text(), "the model card embeds the run card"
    text = (run_dir / "run_card.json").read_text()
    assert "sk-secret" not in text and "pw@" not in text
    assert card["models_and_endpoints"]["llm.base_url"] == "http://127.0.0.1/v1"
    assert card["seeds"] == {"seed": 7, "dataset.export.seed": 3}
    assert card["taxonomy"]["nodes"] == 2 and set(card["taxonomy"]["reviews"]) == {"alice.json"}
    assert card["prompts"]["questions"] and card["prompts"]["judge_pairwise"]
    assert card["data"]["kept"] == 12 and card["costs"]["answers"]["calls"] == 3
    assert {(s["model"], s["benchmark"], s["protocol"]) for s in card["evaluation"]["benchmarks"]} >= {
        ("tuned", "arc_easy", "paper")
    }
    readme = (run_dir / "dataset" / "README.md").read_text()
    assert readme.count(START) == 1 and readme.index(START) < readme.index(END)
    refresh_cards(run_dir)  # a second refresh replaces the section, never appends a second one
    readme = (run_dir / "dataset" / "README.md").read_text()
    assert readme.count(START) == 1
    embedded = json.loads(readme.split("```json\n", 1)[1].split("\n```", 1)[0])
    assert embedded["data"]["kept"] == 12 and embedded["schema"] == card["schema"]


def test_first_screen_says_what_failed_and_which_model_made_the_data(run_dir: Path) -> None:
    store = RunStore(run_dir)
    store.update_manifest(
        "07_evaluation", kind="notebook", status="failed", error="SetupError: prompt 2,103 tokens > context 2,048"
    )
    html = render_report(run_dir).read_text(encoding="utf-8")
    first = html[: html.index('<div class="glan-findings">')]
    assert (
        "Not completed:" in first
        and "07_evaluation failed (SetupError: prompt 2,103 tokens &gt; context 2,048)" in first
    )
    assert "Data made by:" in first and "fake-model (answers)" in first
    assert "embedded smoke-test model" in first, "no endpoint in config.yaml: the embedded model made the data"
    store.write_config({"run_name": run_dir.name, "llm": {"model": "fake-model", "base_url": "http://h/v1"}})
    remote = render_report(run_dir).read_text(encoding="utf-8")
    assert "embedded smoke-test model" not in remote[: remote.index('<div class="glan-findings">')]


def test_charts_share_colours_label_axes_and_say_no_data() -> None:
    import pandas as pd

    from glan_utils.views import plots
    from glan_utils.views.quality_plots import verifier_bars
    from glan_utils.views.style import colors, styled

    rows = [
        ("Sciences", "Physical", "Physics", "Optics", "basic", "a b c"),
        ("Arts", "Visual", "Painting", "Oils", "challenging", "d e"),
        ("Sciences", "Physical", "Chemistry", "Bonds", "basic", "f"),
    ]
    qa = pd.DataFrame(rows, columns=["field", "subfield", "discipline", "subject", "difficulty", "answer"])
    mix, lengths = styled(plots.difficulty_mix(qa)), styled(plots.answer_lengths(qa))
    colour = {t.name: t.marker.color for t in mix.data}
    assert colour == {t.name: t.marker.color for t in lengths.data} == colors(["basic", "challenging"])
    assert colors(["Physics"])["Physics"] == colors(["Chemistry", "Physics"])["Physics"], "a value's colour is its own"
    assert plots.coverage(qa).layout.height >= 600
    assert mix.layout.yaxis.title.text == "Q/A pairs" and lengths.layout.xaxis.title.text == "answer length (words)"
    truncated = styled(plots.pairs_vs_target(qa, qa.assign(x=1), 2))
    assert truncated.layout.yaxis.title.text == "Q/A pairs"
    empty = styled(verifier_bars(pd.DataFrame({"discipline": ["Physics"], "verifier_agreement": [None]})))
    assert [a.text for a in empty.layout.annotations] == ["no data"]
