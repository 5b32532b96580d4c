"""report.html is one self-contained file with its plots; the model card carries the run's metrics."""

import base64
import json
import re

import pytest
import yaml

from tinydistill.evaluation.html_report import Html, html_page, markdown_to_html

from .conftest import run_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def _external_refs(page: str) -> list[str]:
    return re.findall(r'(?:src|href)="(?!data:)([^"#][^"]*)"', page) + re.findall(r"<link|<script", page)


def test_html_page_renders_every_kind_of_section(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "plots" / "x.png"
    png.parent.mkdir()
    fig.savefig(png)
    md = ("# Results\n\nSome **bold** and `code <b>`.\n\n| method | acc |\n|---|---:|\n| TinyLLM | 49.4 |\n\n"
          "- one\n- two\n\n![local](plots/x.png) ![remote](http://example.com/x.png)\n")
    page = html_page("grid <report>", [("Table", md), ("Raw", Html("<p id='raw'>raw</p>")), ("File", png),
                                       ("Figure", fig), ("Skipped", None)], base_dir=tmp_path)
    assert page.startswith("<!DOCTYPE html>") and "<title>grid &lt;report&gt;</title>" in page
    assert "<td>TinyLLM</td><td>49.4</td>" in page and "<strong>bold</strong>" in page
    assert "<code>code &lt;b&gt;</code>" in page and "<li>two</li>" in page and "<p id='raw'>raw</p>" in page
    assert "<h3>Results</h3>" in page  # markdown headings sit below the section's <h2>
    assert "Skipped" not in page
    pngs = _embedded_pngs(page)
    assert len(pngs) == 3 and all(p.startswith(PNG_MAGIC) for p in pngs)  # local md image, file, figure
    assert _external_refs(page) == []  # the remote image is not fetched by the page
    assert "[image remote: http://example.com/x.png]" in page


def test_markdown_tables_keep_escaped_pipes():
    out = markdown_to_html("| a | b |\n|---|---|\n| x \\| y | 2 |")
    assert "<td>x | y</td><td>2</td>" in out


@pytest.mark.slow
def test_run_writes_report_html_and_model_card(tiny_t5_dir, synthetic_data, tmp_path):
    from tinydistill.config.loader import config_from_dict
    from tinydistill.run import run

    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", method="finetune", **{
        "train.epochs": 1, "data.train.limit": 16, "eval.modes": ["rank"],
        "data.test": {"path": str(synthetic_data["valid"])}}))
    run(cfg, progress=False, log=lambda *_: None)
    summary = json.loads((cfg.run_dir / "summary.json").read_text())

    page = (cfg.run_dir / "report.html").read_text()
    assert _external_refs(page) == []
    pngs = _embedded_pngs(page)
    assert len(pngs) == 3 and all(p.startswith(PNG_MAGIC) for p in pngs)  # loss, per-class accuracy, confusion
    for heading in ("Configuration", "Results", "Training loss and valid accuracy", "Accuracy per gold answer",
                    "Confusion matrix", "Error analysis"):
        assert f"<h2>{heading}</h2>" in page, heading
    assert f"<td>{100 * summary['valid']['rank_accuracy']:.1f}</td>" in page
    assert "<td>test</td>" in page and "synth: student right, teacher not" in page

    card = (cfg.run_dir / "best" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and front["tags"] == ["distillation", "tinydistill", "finetune"]
    assert front["datasets"] == ["train", "valid"] and front["metrics"] == ["accuracy"]
    assert "base_model" not in front  # a local folder is not a hub id
    for split in ("valid", "test"):
        acc = f"{100 * summary[split]['rank_accuracy']:.1f}"
        assert re.search(rf"\| {split} \| this student \| {re.escape(acc)} \|", card), split
    assert "`synth` (imported): α = 0.5" in card and "AutoModelForSeq2SeqLM.from_pretrained" in card
    assert f"top prediction share {100 * summary['valid']['rank_top_share']:.1f}%" in card
    assert summary["precision"] == "no" and "precision no\n" in card  # the run config asks for fp32
    assert "The prefix opens the decoder input" in card  # prefix_side auto: a seq2seq student's is the decoder's


def test_a_failing_extra_is_a_warning_not_a_lost_run(tmp_path, monkeypatch):
    from tinydistill.data.records import Example
    from tinydistill.evaluation import html_report
    from tinydistill.evaluation.run_extras import write_run_extras

    (tmp_path / "config.yaml").write_text("name: r\n")
    monkeypatch.setattr(html_report, "write_html_report", lambda *a, **k: 1 / 0)
    logs: list[str] = []
    ex = Example(id="1", question="q?", choices=("x", "y"), answer=1)
    write_run_extras(tmp_path, [{"id": "1", "gold": 1, "prediction": 1}], [ex], {}, log=logs.append)
    assert logs == ["warning: report.html not written: ZeroDivisionError: division by zero"]
    assert json.loads((tmp_path / "analysis.json").read_text())["accuracy"] == pytest.approx(1.0)
