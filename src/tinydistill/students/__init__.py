"""Students: one class per kind (seq2seq, causal, multiple-choice) over the abstract :class:`Student`;
loading and saving (:mod:`.registry`), cut and narrowed students (:mod:`.sizes`), LoRA, task items and collation."""

from .base import Forward, Student
from .choice import encode_choices, pad_choices
from .collate import MultiTaskCollator, place_prefix, rationale_task, tokenize_tasks
from .lora import apply_lora, load_lora_student, save_lora_student
from .registry import load_student, save_student, saved_student_config, student_class
from .task_items import ANSWER_TASK, TaskItem, TaskSpec

__all__ = ["ANSWER_TASK", "Forward", "MultiTaskCollator", "Student", "TaskItem", "TaskSpec", "apply_lora",
           "encode_choices", "load_lora_student", "load_student", "pad_choices", "place_prefix", "rationale_task",
           "save_lora_student", "save_student", "saved_student_config", "student_class", "tokenize_tasks"]
