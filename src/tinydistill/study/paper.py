"""The TinyLLM paper's datasets, method labels and published numbers (Table 1 and its teachers)."""

from __future__ import annotations

DATASETS = ("obqa", "arc", "piqa", "riddle", "pubmedqa", "bioasq")


PAPER_NAMES = {"obqa": "OBQA", "arc": "ARC", "piqa": "PIQA", "riddle": "Riddle", "pubmedqa": "PQA",
               "bioasq": "BioASQ"}


TABLE1_METHODS = ("inference", "pinto", "lora", "finetune", "kd", "step_by_step", "tinyllm")


METHOD_LABELS = {"inference": "Inference", "pinto": "PINTO", "lora": "LoRA", "finetune": "Full fine-tuning",
                 "kd": "Standard KD", "step_by_step": "Distill-step-by-step", "tinyllm": "TinyLLM"}


#: TinyLLM paper, Table 1 (test accuracy, FLAN-T5 students), by student size → method → dataset.
PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    "80M": {
        "inference": dict(obqa=16.60, arc=19.31, piqa=20.78, riddle=13.33, pubmedqa=38.00, bioasq=47.97),
        "pinto": dict(obqa=46.40, arc=26.87, piqa=48.10, riddle=25.29, pubmedqa=60.00, bioasq=80.49),
        "lora": dict(obqa=37.80, arc=27.12, piqa=39.93, riddle=39.80, pubmedqa=53.75, bioasq=78.05),
        "finetune": dict(obqa=41.60, arc=27.47, piqa=42.33, riddle=42.75, pubmedqa=56.25, bioasq=78.86),
        "kd": dict(obqa=45.80, arc=29.53, piqa=49.29, riddle=36.27, pubmedqa=58.00, bioasq=81.30),
        "step_by_step": dict(obqa=46.40, arc=30.47, piqa=50.38, riddle=36.67, pubmedqa=59.00, bioasq=81.30),
        "tinyllm": dict(obqa=49.40, arc=33.05, piqa=53.65, riddle=51.18, pubmedqa=62.00, bioasq=85.37),
    },
    "250M": {
        "finetune": dict(obqa=56.60, arc=38.88, piqa=47.55, riddle=52.55, pubmedqa=64.75, bioasq=89.43),
        "step_by_step": dict(obqa=56.80, arc=43.86, piqa=56.37, riddle=45.69, pubmedqa=64.75, bioasq=86.18),
        "tinyllm": dict(obqa=64.20, arc=48.50, piqa=60.17, riddle=60.78, pubmedqa=66.25, bioasq=90.24),
    },
}


PAPER_TEACHERS = {"FLAN-T5 xlarge (3B)": dict(obqa=69.20, arc=68.24, piqa=58.43, riddle=53.73, pubmedqa=71.50,
                                              bioasq=65.85),
                  "LLaMA 2 (7B)": dict(obqa=58.60, arc=45.90, piqa=78.80, riddle=47.65, pubmedqa=54.50,
                                       bioasq=73.75)}
