"""The masked-rationale pathway of a multiple-choice student: the loss on known values, the masks, the staged run."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from tests.test_reproduce import choice_config, tinyllm_folder
from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import StudentConfig
from tinydistill.data.records import Example
from tinydistill.losses import IGNORE_INDEX
from tinydistill.run import RATIONALE_STAGE_DIR, run
from tinydistill.students.choice import (
    ChoiceModel,
    MaskedRationaleHead,
    encode_masked_rationale,
    mask_positions,
    pad_masked_rationales,
)
from tinydistill.students.collate import MultiTaskCollator, TaskSpec, tokenize_tasks
from tinydistill.students.registry import load_student


class _Encoder(nn.Module):
    """Returns fixed hidden states; its word embeddings are ``embeddings``."""

    def __init__(self, hidden: torch.Tensor, embeddings: torch.Tensor) -> None:
        super().__init__()
        self.hidden = hidden
        self.embeddings = nn.Embedding.from_pretrained(embeddings)

    def forward(self, **_) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.hidden)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings


class _Scorer(nn.Module):
    def __init__(self, encoder: _Encoder) -> None:
        super().__init__()
        self.base_model = encoder
        self.config = SimpleNamespace()


def test_masked_rationale_loss_matches_a_hand_computed_value():
    """H=2, V=3, identity dense: LN(gelu([1,0])) = [1,-1] and LN(gelu([0,1])) = [-1,1], so the masked positions'
    logits are E·h = [1,-1,0] and [-1,1,0]; labels 0 and 2 cost log(e+1/e+1) - 1 and log(e+1/e+1)."""
    hidden = torch.tensor([[[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]]])  # (B=1, L=3, H=2); position 0 unmasked
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    model = ChoiceModel(_Scorer(_Encoder(hidden, embeddings)), mlm_head=MaskedRationaleHead(2, 3, eps=0.0))
    batch = {"input_ids": torch.zeros(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 3, dtype=torch.long),
             "mlm_labels": torch.tensor([[IGNORE_INDEX, 0, 2]])}
    z = math.log(math.e + 1 / math.e + 1)
    assert model.masked_rationale_loss(batch).item() == pytest.approx(((z - 1) + z) / 2, abs=1e-5)
    # row weights weigh every masked token of their row: a second row (weight 3) with one masked token, label 1
    two = torch.cat([hidden, torch.tensor([[[0.0, 1.0], [9.0, 9.0], [9.0, 9.0]]])])
    model = ChoiceModel(_Scorer(_Encoder(two, embeddings)), mlm_head=MaskedRationaleHead(2, 3, eps=0.0))
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "mlm_labels": torch.tensor([[IGNORE_INDEX, 0, 2], [1, IGNORE_INDEX, IGNORE_INDEX]]),
             "row_weights": torch.tensor([1.0, 3.0])}
    expected = ((z - 1) + z + 3 * (z - 1)) / 5  # [-1,1,0] with label 1 costs z - 1
    assert model.masked_rationale_loss(batch).item() == pytest.approx(expected, abs=1e-5)


def test_the_head_reads_the_encoders_own_embeddings(tiny_bert_dir):
    """The output matrix is the word-embedding tensor itself (tied): a gradient of the loss reaches it."""
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice"),
                           with_rationale_head=True)
    assert student.model.mlm_head is not None and student.model.decoder is None
    tok = student.tokenizer
    source = tok("explain: what goes with a cat?")["input_ids"]
    item, _ = encode_masked_rationale(tok, source, "a cat likes milk so milk", 16, 0.5, "k")
    batch = pad_masked_rationales([item], student.pad_token_id)
    student.model.masked_rationale_loss(batch).backward()
    embeddings = student.model.encoder.get_input_embeddings().weight
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0
    extra = sum(p.numel() for p in student.model.mlm_head.parameters())
    assert extra == 32 * 32 + 32 + 2 * 32 + len(tok)  # dense, LayerNorm, output bias: nothing else


def test_masks_are_fixed_by_their_key_and_hide_only_rationale_tokens(tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    source = tok("explain: what goes with a cat?\nAnswer Choices:\n(a) milk\n(b) bone")["input_ids"]
    rationale = "a cat likes milk because cats drink milk every single day"
    ids = tok(rationale, add_special_tokens=False)["input_ids"]
    item, cut = encode_masked_rationale(tok, source, rationale, 64, 0.3, "0/rationale/t/5")
    assert not cut
    assert item.input_ids[: len(source)] == source  # the question and choices are never masked
    assert item.input_ids[-1] == tok.sep_token_id and item.type_ids == [0] * len(source) + [1] * (len(ids) + 1)
    masked = [i for i, label in enumerate(item.mlm_labels) if label != IGNORE_INDEX]
    assert len(masked) == round(0.3 * len(ids))
    for i in masked:
        assert item.input_ids[i] == tok.mask_token_id and item.mlm_labels[i] == ids[i - len(source)]
    unmasked = [i for i in range(len(source), len(source) + len(ids)) if i not in masked]
    assert all(item.input_ids[i] == ids[i - len(source)] for i in unmasked)
    again, _ = encode_masked_rationale(tok, source, rationale, 64, 0.3, "0/rationale/t/5")
    assert again == item  # the same row, task and seed: the same masks in every run and after every resume
    assert mask_positions(len(ids), 0.3, "1/rationale/t/5") != mask_positions(len(ids), 0.3, "0/rationale/t/5")
    short, cut = encode_masked_rationale(tok, source, rationale, 5, 0.3, "k")
    assert cut and len(short.input_ids) == len(source) + 5  # 4 rationale tokens + [SEP]


def test_tokenised_rationale_tasks_become_masked_pairs(tiny_bert_dir):
    """Through the product's own key (seed, task, row): every row masks round(ratio·n) of its n rationale tokens,
    rows with the same text mask different positions, and so do two teachers and two seeds; a re-run repeats."""
    student = load_student(StudentConfig(model=str(tiny_bert_dir), architecture="multiple_choice"),
                           with_rationale_head=True)
    text = "the cat drinks milk because cats like milk and milk is what cats drink"
    n = len(student.tokenizer(text, add_special_tokens=False)["input_ids"])
    rows = [Example(str(i), "what goes with a cat?", ("milk", "bone"), 0) for i in range(6)]  # alike but the row
    tasks = [TaskSpec("answer", "", lambda i, e: "x", 8),
             TaskSpec("rationale/a", "explain: ", lambda i, e: text, 32),
             TaskSpec("rationale/b", "explain: ", lambda i, e: text, 32)]

    def masks(seed: int, ratio: float = 0.5) -> dict[str, list[tuple[int, ...]]]:
        items, _ = tokenize_tasks(student, rows, tasks, 48, mask_ratio=ratio, mask_seed=seed)
        batch = MultiTaskCollator(student.kind, student.pad_token_id)(items)
        assert set(batch) == {"answer", "rationale/a", "rationale/b"} and "choice_mask" in batch["answer"]
        out = {}
        for task in ("rationale/a", "rationale/b"):
            b = batch[task]
            assert b["input_ids"].shape == b["mlm_labels"].shape and b["row_index"].tolist() == list(range(6))
            labelled = b["mlm_labels"] != IGNORE_INDEX
            assert (b["input_ids"][labelled] == student.tokenizer.mask_token_id).all()
            out[task] = [tuple(torch.nonzero(row).flatten().tolist()) for row in labelled]
        return out

    first = masks(0)
    for task, positions in first.items():
        assert [len(p) for p in positions] == [round(0.5 * n)] * 6, task
        assert len(set(positions)) == 6, task  # no two rows masked alike
    assert first["rationale/a"] != first["rationale/b"]  # the teacher is part of the key
    assert masks(0) == first  # fixed: the same masks in every run and after every resume
    assert masks(1)["rationale/a"] != first["rationale/a"]  # the seed is part of the key
    assert [len(p) for p in masks(0, 0.3)["rationale/a"]] == [round(0.3 * n)] * 6


@pytest.mark.slow  # a 10-epoch training threshold; the stage layout is pinned by the learning-rate test below
def test_tinyllm_learns_rationales_first_then_answers_and_deploys_a_plain_choice_model(tmp_path, tiny_bert_dir):
    data = tinyllm_folder(tmp_path)
    raw = choice_config(tiny_bert_dir, data, tmp_path / "runs", method="tinyllm",
                        train={"epochs": 10, "batch_size": 8, "lr": 5e-3, "mixed_precision": "no",
                               "warmup_ratio": 0.0, "rationale_stage_epochs": 3})  # lr 1e-2 left the answer
    # loss at ln 4 on some CPUs and seeds; at 5e-3 every seed 0-3 learned the answers (valid 0.50-0.79)
    outcome = run(config_from_dict(raw), progress=False, log=lambda *_: None)
    stage = [json.loads(line) for line in (outcome.cfg.run_dir / RATIONALE_STAGE_DIR / "metrics.jsonl").open()]
    for teacher in ("flan_t5", "llama2"):
        losses = [r[f"loss/rationale/{teacher}"] for r in stage]
        assert losses[-1] < losses[0]  # each teacher's masked-rationale loss falls
    assert all("loss/answer" not in r for r in stage)
    answer = [json.loads(line) for line in (outcome.cfg.run_dir / "metrics.jsonl").open() if "loss" in line]
    assert all(set(k for k in r if k.startswith("loss/")) == {"loss/answer"} for r in answer)
    assert answer[-1]["loss/answer"] < 0.9 * math.log(4)  # the choice head learned: below chance's ln 4
    assert outcome.valid.metrics["rank_accuracy"] > 0.4  # the synthetic task: chance is 25%
    best = AutoModelForMultipleChoice.from_pretrained(outcome.cfg.run_dir / "best")  # plain transformers
    assert not any("mlm" in n for n, _ in best.named_parameters())
    assert any("rationale stage" in n for n in json.loads(
        (outcome.cfg.run_dir / "summary.json").read_text())["method_notes"])


@pytest.mark.slow  # three runs; a thrown-away RNG state on resume fails the fast test_training.py resume test too
def test_a_run_stopped_in_the_rationale_stage_resumes_to_the_uninterrupted_result(tmp_path, tiny_bert_dir):
    data = tinyllm_folder(tmp_path)

    def cfg(out):  # attention dropout on: each step draws random numbers, so the RNG state must be restored
        raw = choice_config(
            tiny_bert_dir, data, out, method="tinyllm",
            train={"epochs": 1, "batch_size": 8, "lr": 1e-2, "mixed_precision": "no", "warmup_ratio": 0.0,
                   "rationale_stage_epochs": 2, "checkpoint_every": 1})
        raw["student"]["attention_dropout"] = 0.3
        return config_from_dict(raw)

    whole = run(cfg(tmp_path / "a"), progress=False, log=lambda *_: None)
    with pytest.raises(KeyboardInterrupt, match="rationale stage"):
        run(cfg(tmp_path / "b"), progress=False, log=lambda *_: None, stop_after_steps=3)
    torch.manual_seed(12345)  # a fresh process: the generator is not where the stopped run left it
    resumed = run(cfg(tmp_path / "b"), progress=False, log=lambda *_: None)
    assert resumed.valid.metrics == whole.valid.metrics
    a = AutoModelForMultipleChoice.from_pretrained(whole.cfg.run_dir / "best").state_dict()
    b = AutoModelForMultipleChoice.from_pretrained(resumed.cfg.run_dir / "best").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_rationale_stage_runs_at_its_own_learning_rate_and_the_answer_stage_at_lr(tmp_path, tiny_bert_dir):
    data = tinyllm_folder(tmp_path)
    raw = choice_config(tiny_bert_dir, data, tmp_path / "runs", method="tinyllm",
                        train={"epochs": 1, "batch_size": 8, "lr": 1e-3, "mixed_precision": "no", "warmup_ratio": 0.0,
                               "rationale_stage_epochs": 1, "rationale_stage_lr": 4e-3})
    outcome = run(config_from_dict(raw), progress=False, log=lambda *_: None)

    def lrs(path):
        return [json.loads(line)["lr"] for line in path.open() if '"lr"' in line]

    stage, answer = lrs(outcome.cfg.run_dir / RATIONALE_STAGE_DIR / "metrics.jsonl"), lrs(
        outcome.cfg.run_dir / "metrics.jsonl")
    assert stage and answer
    assert 1e-3 < max(stage) <= 4e-3 and stage == sorted(stage, reverse=True)  # linear decay from 4e-3
    assert max(answer) <= 1e-3
    # the rationale stage logs each teacher's masked-rationale loss and no answer loss; the answer stage the answer
    records = [json.loads(line) for line in (outcome.cfg.run_dir / RATIONALE_STAGE_DIR / "metrics.jsonl").open()]
    assert records and all({k for k in r if k.startswith("loss/")} == {"loss/rationale/flan_t5",
                                                                       "loss/rationale/llama2"} for r in records)
    records = [json.loads(line) for line in (outcome.cfg.run_dir / "metrics.jsonl").open() if '"loss"' in line]
    assert records and all({k for k in r if k.startswith("loss/")} == {"loss/answer"} for r in records)
    best = AutoModelForMultipleChoice.from_pretrained(outcome.cfg.run_dir / "best")  # plain transformers
    assert not any("mlm" in n for n, _ in best.named_parameters())
    notes = json.loads((outcome.cfg.run_dir / "summary.json").read_text())["method_notes"]
    assert any(n.startswith("rationale stage: 1 epoch(s) on rationale/flan_t5, rationale/llama2") for n in notes)
