"""``student.prefix_side: decoder``: the task prefix opens the decoder side, so one encoder pass serves the
answer and every teacher's rationale of a row; the per-task losses keep the prefix-in-encoder form's shape."""

import json

import pytest
import torch

from tinydistill.config.loader import config_from_dict
from tinydistill.config.schema import StudentConfig
from tinydistill.data.records import Example
from tinydistill.errors import TinyDistillError
from tinydistill.losses import IGNORE_INDEX
from tinydistill.methods.registry import MultiTaskObjective
from tinydistill.run import run
from tinydistill.students.collate import MultiTaskCollator, TaskSpec, tokenize_tasks
from tinydistill.students.registry import load_student

from .conftest import run_config

EXAMPLES = [Example(f"r{i}", f"what goes with a {a}?", ("milk", "bone", "seed"), i % 3,
                    rationales={"t1": f"a {a} likes it", "t2": "because" if i != 1 else ""})
            for i, a in enumerate(["cat", "dog", "bird", "cow"])]
TASKS = [TaskSpec("answer", "answer: ", lambda i, ex: ex.choices[ex.answer], 8),
         TaskSpec("rationale/t1", "explain t1: ", lambda i, ex: ex.rationales["t1"], 16),
         TaskSpec("rationale/t2", "explain t2: ", lambda i, ex: ex.rationales["t2"] or None, 16)]


@pytest.fixture(scope="module")
def t5(tiny_t5_dir):
    torch.manual_seed(0)
    return load_student(StudentConfig(model=str(tiny_t5_dir)))


def test_decoder_prefix_items_share_one_source_and_mask_the_prefix(t5):
    enc_rows, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64)
    dec_rows, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64, prefix_side="decoder")
    assert [r.keys() for r in dec_rows] == [r.keys() for r in enc_rows]  # row 1 lacks t2 in both forms
    for enc, dec in zip(enc_rows, dec_rows, strict=True):
        assert len({tuple(it.source_ids) for it in dec.values()}) == 1
        for name, item in dec.items():
            prefix = t5.tokenizer(TASKS[[t.name for t in TASKS].index(name)].prefix,
                                  add_special_tokens=False)["input_ids"]
            assert item.n_prefix == len(prefix) and item.target_ids == prefix + enc[name].target_ids
            assert len(item.source_ids) == len(enc[name].source_ids) - len(prefix)
    batch = MultiTaskCollator("seq2seq", t5.pad_token_id)(dec_rows)
    t2 = batch["rationale/t2"]
    assert t2["source_index"].tolist() == [0, 2, 3] and t2["shared_input_ids"].shape[0] == 4
    n = dec_rows[0]["rationale/t2"].n_prefix
    assert (t2["labels"][:, :n] == IGNORE_INDEX).all() and (t2["decoder_targets"][:, :n] != IGNORE_INDEX).all()
    enc_batch = MultiTaskCollator("seq2seq", t5.pad_token_id)(enc_rows)
    assert "shared_input_ids" not in enc_batch["answer"]  # different sources: nothing to share


def test_shared_encoder_pass_gives_the_per_task_losses_of_separate_passes(t5):
    rows, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64, prefix_side="decoder")
    batch = MultiTaskCollator("seq2seq", t5.pad_token_id)(rows)
    objective = MultiTaskObjective({"answer": 1.0, "rationale/t1": 0.5, "rationale/t2": 0.5})
    t5.model.eval()
    passes: list[int] = []  # encoder forward passes: one shared by the three tasks, else one per task
    hook = t5.model.get_encoder().register_forward_hook(lambda *_: passes.append(1))
    shared = objective.terms(t5, batch)
    assert len(passes) == 1
    separate = objective.terms(t5, {k: {n: v for n, v in t.items() if not n.startswith(("shared_", "source_"))}
                                    for k, t in batch.items()})
    assert len(passes) == 4
    hook.remove()
    # a task the objective has no weight for is computed, and weighs 0
    unweighted = MultiTaskObjective({"answer": 1.0}).terms(t5, batch)
    assert {name: w for name, (w, _) in unweighted.items()} == {"answer": 1.0, "rationale/t1": 0.0,
                                                                "rationale/t2": 0.0}
    enc_rows, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64)
    paper = objective.terms(t5, MultiTaskCollator("seq2seq", t5.pad_token_id)(enc_rows))
    assert shared.keys() == separate.keys() == paper.keys() == {"answer", "rationale/t1", "rationale/t2"}
    for name in shared:
        assert shared[name][0] == paper[name][0]
        torch.testing.assert_close(shared[name][1], separate[name][1], rtol=1e-4, atol=1e-5)
    loss = sum(w * v for w, v in shared.values())
    loss.backward()
    assert t5.model.get_encoder().block[0].layer[0].SelfAttention.q.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("prefix_side", ["encoder", "decoder"])
def test_each_rows_weight_scales_its_tokens_in_every_tasks_loss(t5, prefix_side):
    """A task's term is Σ_rows w_r · Σ_tokens CE / Σ_rows w_r · n_r (per-row rationale quality weights), computed
    here from the full logits of one task at a time; a task without weights is the plain token mean; every task
    of the batch gets its term, in either layout (one shared encoder pass or one pass per task)."""
    weights = [1.0, 0.0, 0.5, 0.25]
    tasks = [TASKS[0], TaskSpec("rationale/t1", "explain t1: ", lambda i, ex: ex.rationales["t1"], 16,
                                lambda i: weights[i]), TASKS[2]]
    rows, _ = tokenize_tasks(t5, EXAMPLES, tasks, 64, prefix_side=prefix_side)
    batch = MultiTaskCollator("seq2seq", t5.pad_token_id)(rows)
    t5.model.eval()
    terms = MultiTaskObjective({"answer": 1.0, "rationale/t1": 0.5, "rationale/t2": 0.25}).terms(t5, batch)
    assert {name: w for name, (w, _) in terms.items()} == {"answer": 1.0, "rationale/t1": 0.5, "rationale/t2": 0.25}

    def by_hand(task: str, row_weights: list[float] | None) -> float:
        tensors = {n: v for n, v in batch[task].items() if not n.startswith(("shared_", "source_"))}
        with torch.no_grad():
            logits, labels = t5.target_logits(tensors)
        total = count = 0.0
        for b in range(labels.shape[0]):
            w = 1.0 if row_weights is None else row_weights[b]
            for t in range(labels.shape[1]):
                if labels[b, t] != IGNORE_INDEX:
                    total += w * -torch.log_softmax(logits[b, t].double(), -1)[labels[b, t]].item()
                    count += w
        return total / count

    kept = [w for w in weights if w > 0]  # a row weighing 0 is not tokenised at all
    assert len(batch["rationale/t1"]["labels"]) == len(kept) == 3 and len(batch["rationale/t2"]["labels"]) == 3
    assert terms["answer"][1].item() == pytest.approx(by_hand("answer", None), rel=1e-4)
    assert terms["rationale/t1"][1].item() == pytest.approx(by_hand("rationale/t1", kept), rel=1e-4)
    assert terms["rationale/t1"][1].item() != pytest.approx(by_hand("rationale/t1", None), rel=1e-3)
    assert terms["rationale/t2"][1].item() == pytest.approx(by_hand("rationale/t2", None), rel=1e-4)


def test_decoder_prefix_needs_a_seq2seq_student(tiny_gpt2_dir):
    gpt2 = load_student(StudentConfig(model=str(tiny_gpt2_dir)))
    with pytest.raises(TinyDistillError, match="prefix_side"):
        tokenize_tasks(gpt2, EXAMPLES, TASKS, 64, prefix_side="decoder")


def test_auto_prefix_side_is_the_decoder_for_seq2seq_and_the_source_otherwise(t5, tiny_gpt2_dir):
    assert StudentConfig().prefix_side == "auto"
    auto, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64, prefix_side="auto")
    dec, _ = tokenize_tasks(t5, EXAMPLES, TASKS, 64, prefix_side="decoder")
    assert [{k: (it.source_ids, it.target_ids) for k, it in r.items()} for r in auto] == [
        {k: (it.source_ids, it.target_ids) for k, it in r.items()} for r in dec]
    gpt2 = load_student(StudentConfig(model=str(tiny_gpt2_dir)))
    auto, _ = tokenize_tasks(gpt2, EXAMPLES, TASKS, 64, prefix_side="auto")
    enc, _ = tokenize_tasks(gpt2, EXAMPLES, TASKS, 64, prefix_side="encoder")
    assert [{k: (it.source_ids, it.n_prefix) for k, it in r.items()} for r in auto] == [
        {k: (it.source_ids, it.n_prefix) for k, it in r.items()} for r in enc]


@pytest.mark.slow
def test_shared_encoder_training_learns(tiny_t5_dir, synthetic_data, tmp_path):
    cfg = config_from_dict(run_config(tiny_t5_dir, synthetic_data, tmp_path / "runs",
                                      **{"student.prefix_side": "decoder"}))
    outcome = run(cfg, progress=False, log=lambda *_: None)
    lines = [json.loads(x) for x in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in lines if "loss" in r]
    assert {"loss/answer", "loss/rationale/synth"} <= losses[0].keys()
    assert losses[-1]["loss"] < 0.5 * losses[0]["loss"]
    m = outcome.valid.metrics
    assert m["rank_accuracy"] >= 0.8, m  # chance is 0.25; evaluation reads the prefix on the decoder side too
    assert m["generate_accuracy"] >= 0.6, m
    generated = [json.loads(x)["generated"] for x in (cfg.run_dir / "predictions.jsonl").read_text().splitlines()]
    assert not any(g.startswith("answer") for g in generated)  # the forced prefix is not part of the answer
