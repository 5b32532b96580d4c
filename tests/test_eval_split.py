"""`tinydistill eval` names the split it scored: `--split`, else the one the file's name names."""

import json

import pytest

from tests.conftest import synthetic_rows, write_jsonl
from tinydistill.cli import main
from tinydistill.data.loaders import split_of_file


@pytest.mark.parametrize("name,split", [("test.jsonl", "test"), ("obqa_test.json", "test"),
                                        ("arc-validation.csv", "validation"), ("dev.jsonl", "dev"),
                                        ("my_train_v2.jsonl", "train"), ("quiz.csv", "quiz"),
                                        ("train_then_test.jsonl", "test"), ("OBQA_Valid.JSONL", "valid"),
                                        ("rows.test.jsonl.gz", "rows"), ("2024-val.json", "val")])
def test_split_of_file(name, split):
    assert split_of_file(f"some/dir/{name}") == split


def test_eval_labels_metrics_with_the_split_it_scored(tmp_path, tiny_t5_dir, capsys):
    data = write_jsonl(tmp_path / "test.jsonl", synthetic_rows(6, seed=3))
    assert main(["eval", str(tiny_t5_dir), "--data", str(data), "--out", str(tmp_path / "a"), "--modes", "rank"]) == 0
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["split"] == "test"
    assert "(test, 6 rows)" in capsys.readouterr().out
    assert main(["eval", str(tiny_t5_dir), "--data", str(data), "--split", "holdout", "--out", str(tmp_path / "b"),
                 "--modes", "rank"]) == 0
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["split"] == "holdout"
