"""A Hugging Face-style model card (``best/README.md``) for a run's saved student, from its config and summary."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from safetensors import safe_open

from ..config import MINILM_ALIAS, precision_label
from ..students import student_class

MINILM_HUB = "sentence-transformers/all-MiniLM-L6-v2"


def _precision(train: Mapping, summary: Mapping) -> str:
    """The precision the run trained in (summary.json records it; ``auto`` resolves per device)."""
    asked = train.get("mixed_precision")
    used = summary.get("precision")
    if used is None or used == asked:
        return str(asked)
    return f"{precision_label(used)} ({asked})"


def _prefix_note(student: Mapping, kind: str) -> str:
    """How to prompt a student trained with the task prefix on the decoder side (``prefix_side``)."""
    return student_class(kind).card_prefix_note(student.get("prefix_side", "encoder"))


def _pct(x: Any) -> str:
    return f"{100 * x:.1f}" if isinstance(x, int | float) and x == x else "–"


def _base_model(model: str) -> str | None:
    """The hub id the student started from (``None`` for a local folder)."""
    if model == MINILM_ALIAS:
        return MINILM_HUB
    return None if Path(model).exists() or model.startswith((".", "/", "~")) else model


def _dataset_names(data: Mapping) -> list[str]:
    names = []
    for role in ("train", "valid", "test"):
        src = data.get(role)
        if src:
            path = str(src["path"]).rstrip("/")
            name = path if src.get("format") == "hf" else Path(path).stem
            if name not in names:
                names.append(name)
    return names


def _student_kind(best: Path, architecture: str) -> str:
    """multiple_choice | seq2seq | causal, from the saved config.json's architectures."""
    cfg = json.loads((best / "config.json").read_text()) if (best / "config.json").is_file() else {}
    arch = " ".join(cfg.get("architectures") or [])
    if "MultipleChoice" in arch or architecture == "multiple_choice":
        return "multiple_choice"
    if cfg.get("is_encoder_decoder") or "ConditionalGeneration" in arch or "EncoderDecoder" in arch:
        return "seq2seq"
    return "causal"


def _saved_parameters(best: Path) -> int | None:
    """Parameters in ``best/*.safetensors`` (the deployed model; a choice student's decoder is saved apart)."""
    files = sorted(best.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())  # noqa: SIM118
    return total


def _results_table(summary: Mapping) -> list[str]:
    lines = ["| split | model | accuracy (ranked choices) | accuracy (generated / stated) | top prediction share | "
             "majority baseline | rows |", "|---|---|---:|---:|---:|---:|---:|"]
    for split, teachers_key in (("valid", "teachers"), ("test", "test_teachers")):
        m = summary.get(split)
        if not m:
            continue
        lines.append(f"| {split} | this student | {_pct(m.get('rank_accuracy', m.get('exact_match')))} | "
                     f"{_pct(m.get('generate_accuracy'))} | {_pct(m.get('rank_top_share'))} | "
                     f"{_pct(m.get('majority_baseline'))} | {m.get('n', '–')} |")
        for name, t in (summary.get(teachers_key) or {}).items():
            lines.append(f"| {split} | teacher {name} | – | {_pct(t.get('accuracy'))} | {_pct(t.get('top_share'))} "
                         f"| – | – |")
    return lines


def model_card(run_dir: str | Path) -> str:
    """The card's text: YAML front matter, then method, teachers, training, results, collapse, limits, usage."""
    run_dir = Path(run_dir)
    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    best = run_dir / "best"
    student, tr = raw.get("student", {}), raw.get("train", {})
    adapter = (best / "adapter_config.json").is_file()
    n_saved = _saved_parameters(best) if best.is_dir() else None
    kind = _student_kind(best, student.get("architecture", "auto"))
    base = _base_model(str(student.get("model")))
    front: dict[str, Any] = {"library_name": "peft" if adapter else "transformers",
                             "tags": ["distillation", "tinydistill", raw.get("method")]}
    if base:
        front["base_model"] = base
    front["datasets"] = _dataset_names(raw.get("data", {}))
    front["metrics"] = ["accuracy"]
    teachers = raw.get("teachers") or []
    t_lines = [f"- `{t['name']}` ({t.get('kind')}{', ' + str(t['model']) if t.get('model') else ''}): "
               f"α = {t.get('alpha_rationale')}, task prefix `{t.get('prefix') or 'explain ' + t['name'] + ': '}`"
               for t in teachers] or ["- none"]
    valid = summary.get("valid", {})
    collapse = [f"- {mode}: top prediction share {_pct(valid.get(f'{mode}_top_share'))}%, prediction entropy "
                f"{valid.get(f'{mode}_entropy_bits', float('nan')):.2f} bits, distribution "
                f"`{valid.get(f'{mode}_distribution')}`" for mode in ("rank", "generate")
                if f"{mode}_top_share" in valid] or ["- not measured"]
    loader = student_class(kind).hf_auto_class
    if adapter:
        load = f'from peft import AutoPeftModel\n\nmodel = AutoPeftModel.from_pretrained("{best}")'
    else:
        load = (f'from transformers import AutoTokenizer, {loader}\n\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{best}")\nmodel = {loader}.from_pretrained("{best}")')
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {raw.get('name')}: a distilled `{raw.get('method')}` student", "",
        f"Distilled with tinydistill, method `{raw.get('method')}`, from "
        f"`{student.get('model')}` ({(n_saved or summary.get('n_params', 0)) / 1e6:.1f}M parameters, "
        f"{summary.get('n_train', '–')} training rows). Answer format: task prefix `{raw.get('answer_prefix')!r}`, "
        f"target style `{student.get('answer_target')}`.{_prefix_note(student, kind)}", "",
        "## Teachers", "", *t_lines, "",
        "## Training", "",
        f"- epochs {tr.get('epochs')}, max_steps {tr.get('max_steps')}, batch {tr.get('batch_size')} × "
        f"accumulation {tr.get('grad_accum_steps')}, lr {tr.get('lr')} ({tr.get('schedule')}, warm-up "
        f"{tr.get('warmup_ratio')}), weight decay {tr.get('weight_decay')}, precision {_precision(tr, summary)}",
        f"- selected on valid by `{tr.get('select_metric')}`; seed {raw.get('seed')}; max input length "
        f"{student.get('max_input_length')}", "",
        "## Results", "", *_results_table(summary), "",
        "Teacher accuracy is the answer each teacher's rationale states; rationales written with the gold answer in "
        "the prompt state it by construction.", "",
        "## Collapse metrics (valid)", "", *collapse, "",
        "## Limitations", "",
        "- Evaluated only on the splits above; a small student distilled for one task does not generalise beyond it.",
        "- Accuracy on a few hundred rows carries a standard error of several points; one seed is a hint, not a "
        "result.",
        "- Rationales it may write inherit its teachers' errors and biases.", "",
        "## How to load", "", "```python", load, "```", "",
    ]
    if student_class(kind).card_usage_note:
        lines += [student_class(kind).card_usage_note, ""]
    return "\n".join(lines)


def write_model_card(run_dir: str | Path) -> Path | None:
    """Write ``best/README.md``; ``None`` if the run has no saved student."""
    best = Path(run_dir) / "best"
    if not best.is_dir():
        return None
    path = best / "README.md"
    path.write_text(model_card(run_dir), encoding="utf-8")
    return path
