"""Length-grouped batches: a partition of the epoch, deterministic in (seed, epoch), shorter padding, and a
resumed run with grouping on matches the uninterrupted one."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from tinydistill.config.loader import config_from_dict
from tinydistill.data.batching import epoch_batches, length_grouped_batches, row_length, sequential_batches
from tinydistill.run import run
from tinydistill.students.collate import TaskItem
from tinydistill.training.trainer import epoch_order

from .conftest import run_config


def _lengths(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(5, 200) for _ in range(n)]


@pytest.mark.parametrize("n,batch_size", [(1000, 8), (37, 4), (5, 8), (0, 4)])
def test_grouped_batches_partition_the_epoch(n, batch_size):
    order = epoch_order(n, seed=3, epoch=1)
    batches = length_grouped_batches(order, _lengths(n), batch_size, seed=3, epoch=1, mega_batches=5)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(n)) and len(flat) == n
    assert all(len(b) == batch_size for b in batches[:-1])  # only the epoch's last batch may be short
    assert len(batches) == -(-n // batch_size)


def test_grouped_batches_are_deterministic_and_change_with_epoch():
    lengths = _lengths(400)
    order = epoch_order(400, seed=0, epoch=0)
    a = length_grouped_batches(order, lengths, 8, seed=0, epoch=0)
    assert a == length_grouped_batches(order, lengths, 8, seed=0, epoch=0)
    other = epoch_order(400, seed=0, epoch=1)
    assert a != length_grouped_batches(other, lengths, 8, seed=0, epoch=1)


def test_grouping_cuts_padding_but_keeps_batches_shuffled():
    lengths = _lengths(800)
    order = epoch_order(800, seed=0, epoch=0)

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    plain = sequential_batches(order, 8)
    grouped = length_grouped_batches(order, lengths, 8, seed=0, epoch=0, mega_batches=50)
    assert padded(grouped) < 0.75 * padded(plain)
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped]
    assert sum(spread) / len(spread) < 10  # rows of a batch have similar lengths
    maxima = [max(lengths[i] for i in b) for b in grouped]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)  # not longest-first overall


def test_row_length_sums_every_task_and_epoch_batches_switch():
    rows = [{"answer": TaskItem([1] * k, [2, 3]), "rationale/t": TaskItem([1] * k, [4] * k)} for k in (3, 9, 1, 6)]
    assert [row_length(r) for r in rows] == [11, 29, 5, 20]  # 3k + 2
    order = [2, 0, 3, 1]
    assert epoch_batches(order, rows, 2, group_by_length=False, seed=0, epoch=0) == [[2, 0], [3, 1]]
    grouped = epoch_batches(order, rows, 2, group_by_length=True, seed=0, epoch=0)
    assert sorted(map(sorted, grouped)) == [[0, 2], [1, 3]]  # the two long rows together, the two short ones


def _losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line and '"split"' not in line]


@pytest.mark.slow
def test_resume_with_grouping_matches_uninterrupted(tiny_t5_dir, synthetic_data, tmp_path):
    over = {"train.epochs": 2, "train.checkpoint_every": 4, "train.eval_every": 5, "train.batch_size": 8,
            "train.group_by_length": True}
    full = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "a", **over))
    run(full, progress=False, log=lambda *_: None)
    resumed = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "b", **over))
    with pytest.raises(KeyboardInterrupt):
        run(resumed, progress=False, log=lambda *_: None, stop_after_steps=13)  # mid-epoch (20 batches/epoch)
    run(resumed, progress=False, log=lambda *_: None)

    a = load_file(next((full.run_dir / "checkpoints").glob("step-*")) / "model.safetensors")
    b = load_file(next((resumed.run_dir / "checkpoints").glob("step-*")) / "model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert _losses(full.run_dir) == pytest.approx(_losses(resumed.run_dir), rel=1e-5)
