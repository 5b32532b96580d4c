"""Students: one class per kind (seq2seq, causal, multiple-choice) over the abstract :class:`Student`;
loading and saving (:mod:`.registry`), cut and narrowed students (:mod:`.sizes`), LoRA, task items and collation."""

from .base import Forward, Student
from .choice import ChoiceStudent, encode_choices, encoder_inputs, pad_choices
from .collate import MultiTaskCollator, place_prefix, rationale_task, tokenize_tasks
from .lora import apply_lora, load_lora_student, save_lora_student
from .onnx import (
    EXPORT_META,
    INPUT_NAMES,
    ONNX_FILE,
    OUTPUT_NAME,
    import_onnxruntime,
    is_onnx_export,
    load_onnx_student,
    onnx_student,
    read_export_meta,
)
from .registry import load_student, save_student, saved_student_config, student_class
from .task_items import ANSWER_TASK, TaskItem, TaskSpec

__all__ = ["ANSWER_TASK", "EXPORT_META", "INPUT_NAMES", "ONNX_FILE", "OUTPUT_NAME", "ChoiceStudent", "Forward",
           "MultiTaskCollator", "Student", "TaskItem", "TaskSpec", "apply_lora", "encode_choices", "encoder_inputs",
           "import_onnxruntime", "is_onnx_export", "load_lora_student", "load_onnx_student", "load_student",
           "onnx_student", "pad_choices", "place_prefix", "rationale_task", "read_export_meta", "save_lora_student",
           "save_student", "saved_student_config", "student_class", "tokenize_tasks"]
