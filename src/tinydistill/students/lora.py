"""LoRA students (peft): wrap, save merged (a plain transformers folder) or as an adapter, reload."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..config import LoraConfig, StudentConfig
from .registry import Student, load_student, save_student, saved_student_config

# peft is imported inside the functions that use it: a heavy import that only LoRA runs (and reloading a LoRA
# adapter) pay

#: bert2bert's randomly initialised cross-attention must train fully; LoRA skips it and peft saves it whole.
_NEW_MODULES = ("crossattention",)


def _default_targets(student: Student) -> list[str]:
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as MAPPING

    cfg = student.model.config
    model_type = cfg.encoder.model_type if getattr(cfg, "encoder", None) is not None else cfg.model_type
    targets = MAPPING.get(model_type)
    return list(targets) if targets else ["query", "value", "q", "v", "q_proj", "v_proj", "c_attn"]


def apply_lora(student: Student, cfg: LoraConfig) -> Student:
    """Freeze the student and add LoRA adapters (in place); only adapter (and new) weights train."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    targets = list(cfg.target_modules) if cfg.target_modules else _default_targets(student)
    # the module the kind adapts (a choice student: its scorer) and what trains fully beside the adapters
    modules_to_save = list(student.lora_trains_fully) or None
    target: list[str] | str = targets
    if modules_to_save is None and student.new_param_names:
        alternatives = "|".join(targets)
        target = rf"^(?!.*(?:{'|'.join(_NEW_MODULES)})).*\.({alternatives})$"
        modules_to_save = list(_NEW_MODULES)
    # peft annotates lora_alpha as int; it scales by any number
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,  # type: ignore[arg-type]
                              target_modules=target,
                              modules_to_save=modules_to_save)
    student.lora_host = get_peft_model(student.lora_host, peft_cfg)
    student.new_param_names = frozenset()
    return student


def save_lora_student(student: Student, folder: str | Path, mode: str) -> None:
    """``merged``: adapters folded into the weights, loadable by plain transformers; ``adapter``: peft folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = student.model
    if mode == "adapter":
        model.save_pretrained(folder)
        student.tokenizer.save_pretrained(folder)
        return
    merged: Any = type(student)(copy.deepcopy(model), student.tokenizer)  # a Student of the same kind
    merged.lora_host = merged.lora_host.merge_and_unload()
    save_student(merged, folder)


def load_lora_student(base: StudentConfig, folder: str | Path) -> Student:
    """Reload a saved LoRA student: a merged folder loads as is; an adapter goes onto a fresh base."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        return load_student(saved_student_config(base, folder))
    student = load_student(base)
    student.model = PeftModel.from_pretrained(student.model, str(folder))
    student.new_param_names = frozenset()
    return student
