"""Shared fixtures: tiny random students built from configs, the offline MiniLM tokenizer, synthetic data."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMultipleChoice,
    GPT2Config,
    GPT2LMHeadModel,
    T5Config,
    T5ForConditionalGeneration,
)

from tinydistill.students.registry import minilm_path

# one thread per pytest-xdist worker (`-n 2` runs two of them on a 2-core machine), two in a plain run
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)

PAIRS = {"cat": "milk", "dog": "bone", "bird": "seed", "cow": "grass", "bee": "honey", "fish": "water",
         "horse": "hay", "frog": "fly"}


def _saved(tmp_path_factory, name: str, model: torch.nn.Module, tokenizer) -> Path:
    """A new session folder ``name`` holding ``model`` and ``tokenizer``, as a model repository would."""
    out = tmp_path_factory.mktemp(name)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """The offline MiniLM WordPiece tokenizer (30,522 tokens), copied to a folder of its own."""
    out = tmp_path_factory.mktemp("tok")
    AutoTokenizer.from_pretrained(str(minilm_path())).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_t5_dir(tmp_path_factory, tokenizer_dir) -> Path:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=64, d_ff=128, d_kv=16, num_layers=2, num_decoder_layers=2,
                   num_heads=4, dropout_rate=0.0, decoder_start_token_id=tok.cls_token_id,
                   pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id)
    return _saved(tmp_path_factory, "t5", T5ForConditionalGeneration(cfg), tok)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tokenizer_dir) -> Path:
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                     bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
                     pad_token_id=tok.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return _saved(tmp_path_factory, "gpt2", GPT2LMHeadModel(cfg), tok)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A 2-layer BERT (width 32) with the MiniLM vocabulary: a choice student, and a decoder for rationales."""
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0)
    # a bare encoder, as all-MiniLM-L6-v2 ships
    return _saved(tmp_path_factory, "bert", BertForMultipleChoice(cfg).base_model, tok)


def synthetic_rows(n: int, seed: int) -> list[dict]:
    """'What goes with a cat?' → 'milk': learnable from the question, 4 shuffled choices (chance 25%)."""
    rng = random.Random(seed)
    animals = list(PAIRS)
    rows = []
    for i in range(n):
        animal = rng.choice(animals)
        wrong = rng.sample([v for k, v in PAIRS.items() if k != animal], 3)
        choices = [PAIRS[animal], *wrong]
        rng.shuffle(choices)
        rows.append({"id": f"s{seed}-{i}", "question": f"what goes with a {animal}?", "choices": choices,
                     "answer": PAIRS[animal]})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def synthetic_data(tmp_path) -> dict[str, Path]:
    train = synthetic_rows(160, seed=1)
    valid = synthetic_rows(48, seed=2)
    rationales = [{"id": r["id"], "rationale": f"a {r['question'].split()[-1].rstrip('?')} likes "
                   f"{r['answer']}, so the answer is {r['answer']}."} for r in train]
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", train),
        "valid": write_jsonl(tmp_path / "valid.jsonl", valid),
        "rationales": write_jsonl(tmp_path / "teacher.jsonl", rationales),
    }


def run_config(model_dir: Path, data: dict[str, Path], out: Path, **overrides) -> dict:
    """A small run config as a plain dict (the shape of a YAML file)."""
    cfg = {
        "name": "t", "output_dir": str(out), "seed": 0, "method": "tinyllm",
        "data": {"train": {"path": str(data["train"])}, "valid": {"path": str(data["valid"])}},
        "student": {"model": str(model_dir), "max_input_length": 64, "max_answer_length": 8,
                    "max_rationale_length": 24, "answer_target": "text"},
        "teachers": [{"name": "synth", "kind": "imported", "path": str(data["rationales"]),
                      "alpha_rationale": 0.5}],
        "train": {"epochs": 4, "batch_size": 16, "lr": 3e-3, "mixed_precision": "no", "warmup_ratio": 0.0},
        "eval": {"modes": ["rank", "generate"], "batch_size": 64, "max_new_tokens": 6},
    }
    for key, value in overrides.items():
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return cfg


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The TinyLLM benchmark folder that ships beside the repo (../shared/data/tinyllm)."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here.parent / "shared" / "data" / "tinyllm", here / "shared" / "data" / "tinyllm"):
        if candidate.is_dir():
            return candidate
    pytest.skip("shared TinyLLM data not found beside the repo")
