"""The run configuration's schema (pydantic): every section and field a YAML config or ``--set`` may name.

Reading a YAML file, applying overrides and turning validation errors into one-line messages live in
:mod:`tinydistill.config.loader`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..files import check_encoding
from .teachers import ImportedTeacherSpec, TeacherSpec

MINILM_ALIAS = "minilm"



class ColumnsConfig(BaseModel):
    """Your column names for the example fields (JSON, JSON Lines, CSV, hub datasets); the config's
    ``data.<split>.columns``."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    id: str = "id"
    """column holding the row id"""
    question: str = "question"
    """column holding the question"""
    choices: str | tuple[str, ...] = "choices"
    """column holding the choices (a list; in CSV a JSON list or a|b|c), or one column per choice
    (``[A, B, C, D]``; an empty cell drops that choice from its row)"""
    answer: str = "answer"
    """column holding the gold answer: choice text, letter or index"""
    domain: str | None = "domain"
    """optional column naming the row's domain (error analysis groups by it)"""

    @field_validator("choices")
    @classmethod
    def _two_or_more(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, tuple) and len(value) < 2:
            raise ValueError("one column per choice needs at least two columns, e.g. [A, B, C, D]")
        return value


class _Strict(BaseModel):
    # allow_inf_nan=False: YAML reads `.inf` / `.nan` as floats; no setting means them (an lr of .inf trains a
    # collapsed student without an error)
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


class DataSourceConfig(_Strict):
    path: str = Field(description="file, TinyLLM folder, or hub name with format: hf")
    format: Literal["auto", "tinyllm", "json", "jsonl", "csv", "hf"] = "auto"
    """auto: a folder is TinyLLM layout, a file is read by content or extension"""
    split: str | None = Field(None, description="split name; default: the role (train/valid/test)")
    subset: str | None = Field(None, description="hub dataset configuration name")
    columns: ColumnsConfig = ColumnsConfig()
    """map your column names onto the example fields"""
    limit: int | None = Field(None, ge=1, description="keep a seeded random subset of this many rows")
    on_invalid: Literal["error", "skip"] = Field("error", description="stop at a bad row, or skip it (logged)")
    answer_base: Literal[0, 1] | None = Field(
        None, description="numeric answers count choices from 0 or 1; None: 0 unless no answer is 0 and one "
                          "equals its row's number of choices (then 1, with a warning)")
    encoding: str | None = Field(
        None, description="text encoding of the file(s), e.g. cp1252 (Windows-1252) or latin-1; None: UTF-8 "
                          "(or UTF-16/32 with a byte-order mark); never guessed")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None:
            check_encoding(value)
        return value


class DataConfig(_Strict):
    """Where the rows come from: train, the selection set (valid or carved from train), an optional test."""

    task: Literal["mcqa", "open"] = Field("mcqa", description="multiple choice, or open answer (question → text)")
    train: DataSourceConfig
    """the training data"""
    valid: DataSourceConfig | None = Field(None, description="the selection set; or carve it with valid_from_train")
    valid_from_train: int | None = Field(
        None, ge=1, description="hold out this many train rows (fixed split, same for every seed) as the selection "
                                "set, before train.limit applies; for data whose only labelled eval split is test")
    test: DataSourceConfig | None = Field(None, description="never read during training; scored once at the end")

    @field_validator("train", "valid", "test", mode="before")
    @classmethod
    def _path_shorthand(cls, value: Any) -> Any:
        """``train: data.jsonl`` is ``train: {path: data.jsonl}``."""
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_valid(self) -> DataConfig:
        if (self.valid is None) == (self.valid_from_train is None):
            raise ValueError("give exactly one of data.valid or data.valid_from_train")
        return self


class StudentConfig(_Strict):
    """The student model: checkpoint, kind, token budgets, size and attention."""

    model: str = Field(MINILM_ALIAS, description="HF name or path; 'minilm' = the offline all-MiniLM-L6-v2")
    architecture: Literal["auto", "seq2seq", "causal", "bert2bert", "multiple_choice"] = "auto"
    """student kind; auto: chosen from the checkpoint's config"""
    max_input_length: int = Field(256, ge=8)
    """input tokens; longer inputs lose tokens from their start (counted and logged)"""
    max_answer_length: int = Field(32, ge=2)
    """answer target tokens"""
    max_rationale_length: int = Field(64, ge=2)
    """rationale target tokens"""
    rationale_head: Literal["mlm", "decoder"] = Field(
        "mlm", description="multiple_choice students: how the shared encoder learns a teacher's rationale; "
        "'mlm' = masked rationale tokens predicted from (prefix + question + choices, rationale) through the "
        "tied word embeddings (training-only head), 'decoder' = a cross-attending rationale decoder")
    rationale_mask_ratio: float = Field(
        0.3, gt=0, lt=1, description="rationale_head mlm: share of each rationale's tokens masked (fixed per row)")
    attn_implementation: Literal["auto", "sdpa", "eager"] = Field(
        "auto", description="auto = the library default (SDPA); eager is faster on CPU for short inputs")
    prefix_side: Literal["auto", "encoder", "decoder"] = Field(
        "auto", description="seq2seq: task prefix before the question (paper) or first on the decoder side, "
        "so one encoder pass serves every task of a row; auto = decoder for seq2seq students, else encoder")
    answer_target: Literal["letter_text", "text", "letter"] = Field(
        "letter_text", description="answer target: '(b) iron', 'iron' or '(b)'"
    )
    layers: tuple[int, ...] | None = Field(
        None, description="keep these layers of the loaded model (e.g. [0, 2, 4]), initialised from it")
    num_layers: int | None = Field(None, ge=1, description="keep this many evenly spaced layers (6 → 3: 0, 2, 4)")
    config_overrides: dict[str, int | float | str] = Field(
        default_factory=dict, description="a narrower model: these config fields changed, weights random")
    attention_dropout: float | None = Field(
        None, ge=0.0, lt=1.0, description="dropout on attention probabilities (None: the checkpoint's); 0 lets "
        "SDPA use its fused kernel in training too")

    @model_validator(mode="after")
    def _check_size(self) -> StudentConfig:
        if self.layers is not None and self.num_layers is not None:
            raise ValueError("give student.layers or student.num_layers, not both")
        if self.layers is not None and (not self.layers or list(self.layers) != sorted(set(self.layers))
                                        or self.layers[0] < 0):
            raise ValueError("student.layers must be distinct, increasing, non-negative layer indices")
        return self


class TrainConfig(_Strict):
    """The training loop: schedule, optimiser, precision, evaluation, checkpoints, trackers."""

    epochs: float = Field(1.0, gt=0)
    """passes over the training set (fractions allowed); max_steps overrides"""
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    batch_size: int = Field(8, ge=1)
    """rows per micro-batch; the global batch under several processes"""
    grad_accum_steps: int = Field(1, ge=1)
    """micro-batches per optimizer step"""
    lr: float = Field(3e-4, gt=0)
    """peak AdamW learning rate"""
    new_params_lr_scale: float = Field(1.0, gt=0, description="lr multiplier for randomly initialised weights")
    weight_decay: float = Field(0.01, ge=0)
    """AdamW weight decay (none on biases and norms)"""
    warmup_ratio: float = Field(0.06, ge=0, le=1)
    """share of the steps spent warming the learning rate up"""
    schedule: Literal["linear", "cosine", "constant"] = "linear"
    """learning-rate decay after warm-up"""
    max_grad_norm: float = Field(1.0, gt=0)
    """gradient clipping norm (all trained weights)"""
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="auto = bf16 autocast on a GPU or CPU that computes bf16 natively (CUDA bf16, "
        "AVX512-BF16, AMX), fp32 elsewhere, where bf16 autocast trains slower")
    eval_every: int = Field(0, ge=0, description="optimizer steps between valid evaluations; 0 = per epoch")
    checkpoint_every: int = Field(0, ge=0, description="optimizer steps between checkpoints; 0 = at evals")
    keep_checkpoints: int = Field(1, ge=1)
    """newest checkpoints kept in checkpoints/"""
    early_stopping_patience: int = Field(0, ge=0, description="evaluations without improvement; 0 = off")
    rationale_stage_epochs: float | None = Field(
        None, ge=0, description="epochs of rationale-only training before the answer stage (TinyLLM, "
        "step_by_step); None = 1 for a multiple-choice student's mlm rationale head, 0 (the papers' joint "
        "objective) otherwise")
    rationale_stage_lr: float | None = Field(
        None, gt=0, description="peak learning rate of the rationale stage (its schedule is lr's); None = lr")
    select_metric: Literal["rank_accuracy", "generate_accuracy", "exact_match", "token_f1"] = "rank_accuracy"
    """valid metric that selects the best checkpoint (open tasks: exact_match or token_f1)"""
    num_workers: int = Field(0, ge=0)
    """not read by the training loop: batches are built in the training process"""
    group_by_length: bool = Field(
        True, description="batch rows of similar length (sorted within 50-batch windows, batches shuffled)")
    reuse_host_memory: bool = Field(
        True, description="CPU: keep freed large blocks for the next step instead of returning them to the OS")
    shard_optimizer_state: bool = Field(
        False, description="several processes: split AdamW's moments across them (ZeRO stage 1)")
    report_to: tuple[Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive",
                             "swanlab"], ...] = Field(
        (), description="experiment trackers (accelerate's) that receive the config and every logged record")

    @field_validator("select_metric", mode="before")
    @classmethod
    def _no_valid_loss(cls, value: Any) -> Any:
        """Selection scores valid by accuracy; a loss on valid is not computed, so it cannot select."""
        if value == "valid_loss":
            raise ValueError("valid_loss is not computed (selection evaluates valid by rank or generate "
                             "accuracy): use rank_accuracy or generate_accuracy (open tasks: exact_match, token_f1)")
        return value

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        """YAML reads a bare ``no`` as false; ``mixed_precision: no`` means "no"."""
        return "no" if value is False else value


class EvalConfig(_Strict):
    """How the student is scored on valid (selection) and test."""

    modes: tuple[Literal["rank", "generate"], ...] = Field(("rank", "generate"), min_length=1)
    """rank the choices by likelihood or head score; generate and parse the answer (at least one)"""
    batch_size: int = Field(32, ge=1)
    """rows per evaluation batch"""
    rank_reduction: Literal["sum", "mean"] = "sum"
    """sum or mean of a choice's token log-probabilities"""
    max_new_tokens: int = Field(32, ge=1)
    """generation budget when eval generates"""
    valid_limit: int | None = Field(None, ge=1, description="rows of valid used for selection evals")


MethodName = Literal["tinyllm", "finetune", "inference", "lora", "kd", "step_by_step", "pinto", "whitebox"]


class LoraConfig(_Strict):
    """peft LoRA on the student (``method: lora``)."""

    r: int = Field(8, ge=1)
    """LoRA rank"""
    alpha: float = Field(16.0, gt=0)
    """LoRA scaling alpha"""
    dropout: float = Field(0.05, ge=0, lt=1)
    """dropout on the LoRA path"""
    target_modules: tuple[str, ...] | None = Field(
        None, description="module names to adapt; None: peft's default for the architecture")
    save: Literal["merged", "adapter"] = Field(
        "merged", description="merged: a plain transformers folder; adapter: a peft adapter folder")


class LayerPair(_Strict):
    """One hidden-state pair for the MSE: hidden_states index on each side (0 = embeddings, -1 = last)."""

    side: Literal["encoder", "decoder"] = Field("decoder", description="decoder = a causal model's one stack")
    teacher: int = -1
    """teacher hidden_states index"""
    student: int = -1
    """student hidden_states index"""


class WhiteboxConfig(_Strict):
    """A local white-box teacher for ``kd`` (soft labels) and ``whitebox`` (soft labels + hidden MSE)."""

    teacher_model: str | None = Field(None, description="local HF folder or name; same tokenizer as the student")
    kd_temperature: float = Field(2.0, gt=0)
    """softmax temperature T of the soft labels"""
    alpha_kd: float = Field(0.5, ge=0, le=1, description="L = (1-α)·CE + α·T²·KL")
    hidden_mse_weight: float = Field(1.0, ge=0, description="whitebox only: weight of the hidden-state MSE")
    layer_map: tuple[LayerPair, ...] = Field(
        (), description="hidden-state pairs; empty: the last layer of each side the student has (a "
        "multiple_choice student: every layer, student layer i to teacher layer i·L_teacher/L_student, PKD skip)")
    project: Literal["student", "teacher"] = Field(
        "student", description="which side the learned linear map projects into the other's width")
    signals: Literal["online", "cached"] = Field(
        "online", description="run the teacher every batch, or once into run_dir/teacher_signals/")
    top_k: int = Field(0, ge=0, description="keep the teacher's top-k logits per token; 0 = full vocabulary")
    hidden_positions: Literal["all", "cls"] = Field(
        "all", description="multiple_choice whitebox: hidden MSE over every token of each (question, choice) pair, "
        "or over its first ([CLS]) token only")
    attention_kl_weight: float = Field(
        0.0, ge=0, description="multiple_choice whitebox: weight of KL(teacher ‖ student) between the last layers' "
        "self-attention distributions (MiniLM; needs as many heads on both sides); 0 = off")
    rationale_stage: bool = Field(
        False, description="multiple_choice whitebox: first learn the `teachers`' rationales (TinyLLM's stage, "
        "train.rationale_stage_epochs), then distil white-box")


class RationaleMethodConfig(_Strict):
    """``step_by_step`` and ``pinto``: which rationale teacher (default: the first) and the mixing weight."""

    teacher: str | None = Field(None, description="name of one of `teachers`; None: the first")
    alpha_label: float = Field(0.5, ge=0, le=1, description="step_by_step: α·L_label + (1-α)·L_rationale")
    rationale_prefix: str = Field("rationale: ", description="pinto: put before the rationale in the input")
    strip_stated_answer: bool = Field(
        True, description="pinto: cut the rationale where it states its answer ('Thus, the answer is ...')")


class StageConfig(_Strict):
    """One stage of a multi-stage run: its own data and method; anything else by dotted ``set`` overrides."""

    label: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    """stage name; its run folder is stage-<k>-<label>/"""
    method: MethodName | None = None
    """this stage's method; None: the base config's"""
    data: DataConfig | None = None
    """this stage's data; None: the base config's"""
    set: dict[str, Any] = Field(default_factory=dict, description="dotted overrides, e.g. train.epochs: 3")


class RunConfig(_Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$")
    """run name: the run folder is <output_dir>/<name>"""
    output_dir: str = "runs"
    """parent folder of run folders"""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """seed of data order, subsets, initialisation and sampling (0 to 2**32 - 1, as numpy's)"""
    method: MethodName = "tinyllm"
    """what the run optimises (see Methods)"""
    answer_prefix: str = "answer: "
    """task prefix of the answer task"""
    data: DataConfig
    student: StudentConfig = StudentConfig()
    teachers: tuple[TeacherSpec, ...] = ()
    """rationale teachers, each with its own task prefix and weight α_m"""
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    lora: LoraConfig = LoraConfig()
    whitebox: WhiteboxConfig = WhiteboxConfig()
    rationale_method: RationaleMethodConfig = RationaleMethodConfig()
    shortcut_penalty_weight: float = Field(0.0, ge=0, description="anti-shortcut penalty weight; 0 = off")
    shortcut_temperature: float = Field(1.0, gt=0, description="softmax temperature of the choice scores")
    stages: tuple[StageConfig, ...] = Field((), description="multi-stage run; each starts from the last best")

    @field_validator("student", mode="before")
    @classmethod
    def _model_shorthand(cls, value: Any) -> Any:
        """``student: minilm`` is ``student: {model: minilm}``."""
        return {"model": value} if isinstance(value, str) else value

    @field_validator("teachers", mode="before")
    @classmethod
    def _teachers_are_a_list(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            raise ValueError("a list of teachers, one mapping each, e.g. teachers: [{name: flan_t5, kind: imported}] "
                             "or [{name: t5, kind: hf, model: google/flan-t5-base}]")
        return value

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        names = [t.name for t in self.teachers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"teacher names must be unique, repeated: {sorted(dup)}")
        prefixes = [self.answer_prefix] + [t.student_prefix for t in self.teachers]
        if len(set(prefixes)) != len(prefixes):
            raise ValueError("the answer prefix and every teacher's prefix must differ")
        self._check_method()
        if self.stages:
            stage_configs(self)  # resolving validates every stage's config
        return self

    def _check_method(self) -> None:
        if self.method in ("kd", "whitebox") and not self.whitebox.teacher_model:
            raise ValueError(f"method {self.method!r} needs whitebox.teacher_model (a local HF model folder)")
        if self.method == "tinyllm" and not self.teachers and "method" in self.model_fields_set:
            raise ValueError("method 'tinyllm' needs at least one rationale teacher in `teachers` (without one "
                             "it is fine-tuning: write method: finetune)")
        if self.method in ("step_by_step", "pinto"):
            if not self.teachers:
                raise ValueError(f"method {self.method!r} needs one rationale teacher in `teachers`")
            wanted = self.rationale_method.teacher
            if wanted is not None and wanted not in {t.name for t in self.teachers}:
                raise ValueError(f"rationale_method.teacher {wanted!r} is not one of `teachers`")
        if self.data.task == "open":
            if self.shortcut_penalty_weight > 0:
                raise ValueError("shortcut_penalty_weight needs answer choices; data.task is 'open'")
            if self.train.select_metric in ("rank_accuracy", "generate_accuracy"):
                raise ValueError("data.task 'open' has no choices: set train.select_metric to exact_match "
                                 "or token_f1")

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def trains_rationales(self) -> bool:
        """Whether the student learns to write rationales (a choice student then needs its decoder)."""
        return bool(self.active_teachers()) or self.method == "step_by_step"

    def active_teachers(self) -> tuple[TeacherSpec, ...]:
        """Teachers whose rationale loss is trained (TinyLLM, or white-box with its rationale stage; α > 0)."""
        if self.method != "tinyllm" and not (self.method == "whitebox" and self.whitebox.rationale_stage):
            return ()
        return tuple(t for t in self.teachers if t.alpha_rationale > 0)


__all__ = [
    "RunConfig", "ColumnsConfig", "DataConfig", "DataSourceConfig", "StudentConfig", "TrainConfig", "EvalConfig",
    "ImportedTeacherSpec", "LoraConfig", "WhiteboxConfig", "LayerPair", "RationaleMethodConfig", "StageConfig",
    "BEST_DIR", "MINILM_ALIAS", "stage_configs",
]

#: the folder inside a run folder that holds its selected (best) student
BEST_DIR = "best"


# ------------------------------------------------------------------------------------------- multi-stage


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"set: {key}: {p!r} is not a section")
    node[parts[-1]] = value


def stage_configs(cfg: RunConfig) -> list[RunConfig]:
    """One complete :class:`RunConfig` per stage: the base config with the stage's data, method and ``set``."""
    base = cfg.model_dump(mode="json")
    base.pop("stages")
    out: list[RunConfig] = []
    for k, stage in enumerate(cfg.stages, start=1):
        raw = copy.deepcopy(base)
        raw["name"], raw["output_dir"] = f"stage-{k}-{stage.label}", str(cfg.run_dir)
        if stage.method is not None:
            raw["method"] = stage.method
        elif "method" not in cfg.model_fields_set:  # the default stays a default (checked as the base was)
            raw.pop("method")
        if stage.data is not None:
            raw["data"] = stage.data.model_dump(mode="json")
        for key, value in stage.set.items():
            if key.split(".")[0] in ("stages", "name", "output_dir"):
                raise ValueError(f"stages.{k - 1}.set: {key!r} cannot be set per stage")
            _set_dotted(raw, key, value)
        if out:  # start from the previous stage's best student, already cut to size
            prev = out[-1]
            if prev.method == "lora" and prev.lora.save == "adapter":
                raise ValueError(f"stages.{k - 1}: the stage before it saves a LoRA adapter; "
                                 f"set lora.save: merged so the next stage can start from it")
            raw["student"].update(model=str(prev.run_dir / BEST_DIR), architecture="auto", layers=None,
                                  num_layers=None, config_overrides={})
        try:
            out.append(RunConfig.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"stages.{k - 1} ({stage.label}): {loc}: {err['msg']}") from None
    return out
