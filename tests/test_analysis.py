"""Error analysis: numbers checked against a hand-computed prediction file; the CLI on a tiny trained run."""

import json

import pytest
import yaml

from tinydistill.cli import main
from tinydistill.data.records import Example
from tinydistill.errors import DataError
from tinydistill.evaluation.analysis import analysis_markdown, analyze_predictions, join_predictions, read_predictions

from .conftest import run_config

CH = ("red", "green", "blue")


def _ex(i: int, answer: int, domain: str | None) -> Example:
    return Example(id=f"q{i}", question=f"question {i}?", choices=CH, answer=answer, domain=domain)


# gold:        a  a  b  b  c  c   (q5 has no domain → the default)
# prediction:  a  b  b  -  a  c   (q3 unparsed)
# teacher:     a  a  c  b  -  b   (q4: rationale states nothing; q5: wrong)
EXAMPLES = [_ex(0, 0, "bio"), _ex(1, 0, "bio"), _ex(2, 1, "geo"), _ex(3, 1, "geo"), _ex(4, 2, "geo"),
            _ex(5, 2, None)]
PREDS = [0, 1, 1, None, 0, 2]
RANK = [0, 1, 1, 2, 0, 2]
RATIONALES = ["so the answer is (a) red.", "so the answer is (a) red.", "the answer is (c) blue.",
              "the answer is (b) green.", "no idea", "the answer is (b) green."]


def _rows() -> list[dict]:
    return [{"id": ex.id, "gold": ex.answer, "prediction": p, "rank_prediction": r, "generate_prediction": p}
            for ex, p, r in zip(EXAMPLES, PREDS, RANK, strict=True)]


def test_numbers_match_a_hand_computed_prediction_file(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in reversed(_rows())))  # order differs from the data
    rows = read_predictions(path)
    joined = join_predictions(rows, EXAMPLES, path)
    assert [ex.id for ex in joined] == [r["id"] for r in rows]
    by_id = {ex.id: r for ex, r in zip(EXAMPLES, RATIONALES, strict=True)}
    a = analyze_predictions(rows, joined, {"t": [by_id[ex.id] for ex in joined]}, n_examples=1,
                            default_domain="arc")

    assert a["n"] == 6 and a["accuracy"] == pytest.approx(3 / 6)
    assert {k: (v["n"], v["correct"]) for k, v in a["by_class"].items()} == {"a": (2, 1), "b": (2, 1), "c": (2, 1)}
    assert {k: (v["n"], v["correct"]) for k, v in a["by_domain"].items()} == {
        "arc": (1, 1), "bio": (2, 1), "geo": (3, 1)}
    assert a["confusion"]["columns"] == ["a", "b", "c", "none"]
    assert a["confusion"]["matrix"] == [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0]]
    # collapse over the primary predictions: a 2, b 2, c 1, unparsed 1 → top share 2/5
    assert a["collapse"]["top_share"] == pytest.approx(2 / 5)
    assert a["collapse"]["distribution"] == {"a": 2, "b": 2, "c": 1, "unparsed": 1}
    assert a["modes"]["rank"]["accuracy"] == pytest.approx(3 / 6)
    assert a["modes"]["rank"]["distribution"] == {"a": 2, "b": 2, "c": 2}

    t = a["teachers"]["t"]
    # teacher right on q0, q1, q3; student right on q0, q2, q5
    assert (t["both_right"], t["student_beats"], t["student_loses"], t["both_wrong"]) == (1, 2, 2, 1)
    assert t["accuracy"] == pytest.approx(3 / 6) and t["stated"] == pytest.approx(5 / 6)
    assert len(t["beats_examples"]) == 1 and len(t["loses_examples"]) == 1  # n_examples caps the lists
    beat = t["beats_examples"][0]  # rows are in prediction-file order: q5 first
    assert beat["id"] == "q5" and beat["gold"] == "(c) blue" and beat["student"] == "(c) blue"
    assert beat["teacher"] == "(b) green" and beat["rationale"] == "the answer is (b) green."
    loss = t["loses_examples"][0]
    assert loss["id"] == "q3" and loss["student"] is None and loss["teacher"] == "(b) green"

    md = analysis_markdown(a)
    assert "| geo | 3 | 1 | 33.3 |" in md and "| b | 0 | 1 | 0 | 1 |" in md


def test_predictions_from_other_data_are_refused(tmp_path):
    rows = _rows()
    with pytest.raises(DataError, match=r"p.jsonl:2 field 'id': id 'zz' is not in the data"):
        join_predictions([rows[0], {**rows[1], "id": "zz"}], EXAMPLES, tmp_path / "p.jsonl")
    with pytest.raises(DataError, match=r"field 'gold': gold 2 but the data's answer is 0"):
        join_predictions([{**rows[0], "gold": 2}], EXAMPLES, "p.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q0"}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: not JSON"):
        read_predictions(bad)


@pytest.mark.slow
def test_analyze_cli_on_a_trained_run(tiny_t5_dir, synthetic_data, tmp_path, capsys):
    from tinydistill.config.loader import config_from_dict
    from tinydistill.run import run

    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs", **{
        "train.epochs": 1, "data.train.limit": 16, "eval.modes": ["rank"]}))
    run(cfg, progress=False, log=lambda *_: None)
    (cfg.run_dir / "analysis.json").unlink()  # written by the run; the command must write it again

    assert main(["analyze", str(cfg.run_dir), "--examples", "2"]) == 0
    out = capsys.readouterr().out
    a = json.loads((cfg.run_dir / "analysis.json").read_text())
    summary = json.loads((cfg.run_dir / "summary.json").read_text())
    assert a["accuracy"] == pytest.approx(summary["valid"]["rank_accuracy"])
    assert a["collapse"]["top_share"] == pytest.approx(summary["valid"]["rank_top_share"])
    assert sum(map(sum, a["confusion"]["matrix"])) == 48
    assert list(a["by_domain"]) == ["valid"]  # no domain column: the data file's name
    assert len(a["errors"]) == 2 and "synth" in a["teachers"]  # imported teacher read, never called
    assert (cfg.run_dir / "analysis.md").read_text().startswith("# Error analysis")
    assert f"accuracy {100 * a['accuracy']:.1f}%" in out

    # another data file: its predictions must match it
    other = tmp_path / "other.jsonl"
    other.write_text(synthetic_data["train"].read_text())
    assert main(["analyze", str(cfg.run_dir), "--data", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "predictions.jsonl:1 field 'id'" in err and "\n" not in err
    raw = yaml.safe_load((cfg.run_dir / "config.yaml").read_text())
    assert raw["data"]["test"] is None
    assert main(["analyze", str(cfg.run_dir), "--split", "test"]) == 2
    assert "test_predictions.jsonl: predictions file not found" in capsys.readouterr().err


def test_an_empty_predictions_file_is_named_not_analysed(tmp_path):
    """It analysed 0 rows and replaced the run's own analysis.json with that."""
    empty = tmp_path / "p.jsonl"
    empty.write_text("\n")
    with pytest.raises(DataError, match=r"p.jsonl: no predictions in this file"):
        read_predictions(empty)
