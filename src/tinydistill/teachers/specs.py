"""Typed teacher configuration: a tagged union on ``kind`` (imported | hf | http)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _TeacherBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        pattern=r"^[A-Za-z0-9_.-]+$", description="short name; used in prefixes, logs and cache"
    )
    alpha_rationale: float = Field(1.0, ge=0.0, description="weight α_m of this teacher's rationale loss")
    prefix: str | None = Field(None, description="student task prefix; default 'explain <name>: '")

    @property
    def student_prefix(self) -> str:
        return self.prefix if self.prefix is not None else f"explain {self.name}: "


class ImportedTeacherSpec(_TeacherBase):
    """Rationales produced elsewhere: from the data source (TinyLLM layout) or a JSONL ``{id, rationale}``."""

    kind: Literal["imported"] = "imported"
    path: str | None = Field(
        None, description="JSONL of {id, rationale}; None: rationales in the data source"
    )


class GenerationSpec(BaseModel):
    """How a live teacher writes rationales."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: Literal["teacher_forcing", "cot"] = "teacher_forcing"
    prompt_template: str | None = Field(
        None, description="custom prompt; placeholders {question} {choices} {answer} {examples}"
    )
    system_prompt: str | None = Field(None, description="system message (chat models); None: none")
    max_new_tokens: int = Field(128, ge=1)
    gen_temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    num_samples: int = Field(1, ge=1, description="rationales per row (diverse-samples ablation)")
    batch_size: int = Field(8, ge=1)
    seed: int = Field(0, description="base sampling seed; sample k uses seed + k where the backend allows")
    stop: tuple[str, ...] = Field((), description="stop strings (HTTP backends)")

    @model_validator(mode="after")
    def _check(self) -> GenerationSpec:
        if self.num_samples > 1 and self.gen_temperature == 0:
            raise ValueError("num_samples > 1 needs gen_temperature > 0 (greedy samples are identical)")
        return self


class ICLSpec(BaseModel):
    """In-context examples: a pool the teacher writes once (cached), then k of them per prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(0, ge=0, description="exemplars per prompt; 0 = none (the 'w/o in-context' ablation)")
    pool_size: int = Field(8, ge=1, description="exemplars the teacher writes (zero-shot, cached)")
    selection: Literal["random", "nearest"] = "random"
    mode: Literal["rationalize", "synthesize"] = Field(
        "rationalize",
        description="rationalize: rationales for seed train questions; synthesize: new questions",
    )
    embedder: str = Field(
        "minilm", description="sentence-transformers model for 'nearest'; 'minilm' = offline"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ICLSpec:
        if self.k > self.pool_size:
            raise ValueError(f"icl.k ({self.k}) must not exceed icl.pool_size ({self.pool_size})")
        return self


class QualitySpec(BaseModel):
    """What to do with rationales that contradict gold or were cut off. Empty ones are always dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    on_contradict: Literal["keep", "drop", "downweight"] = "downweight"
    on_truncated: Literal["keep", "drop", "downweight"] = "keep"
    downweight: float = Field(0.5, ge=0.0, le=1.0, description="weight factor per downweighted issue")


class HFTeacherSpec(_TeacherBase):
    """A local transformers model (seq2seq or causal)."""

    kind: Literal["hf"] = "hf"
    model: str
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat_template: bool | None = Field(
        None, description="use the tokenizer's chat template; None: if it has one"
    )
    max_input_tokens: int = Field(1024, ge=8, description="prompts are truncated from the left to this")
    generation: GenerationSpec = GenerationSpec()
    icl: ICLSpec = ICLSpec()
    quality: QualitySpec = QualitySpec()


class HTTPTeacherSpec(_TeacherBase):
    """An OpenAI-compatible endpoint (vLLM, TGI, llama.cpp server, hosted APIs)."""

    kind: Literal["http"] = "http"
    base_url: str | tuple[str, ...] = Field(
        description="endpoint, or a list of endpoints serving the same model (requests go round-robin)"
    )
    model: str
    api: Literal["chat", "completions"] = "chat"
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")
    concurrency: int = Field(4, ge=1)
    max_retries: int = Field(5, ge=0)
    timeout_s: float = Field(60.0, gt=0)
    retry_backoff_s: float = Field(
        0.5, gt=0, description="first retry delay; doubles per attempt, with jitter"
    )
    generation: GenerationSpec = GenerationSpec()
    icl: ICLSpec = ICLSpec()
    quality: QualitySpec = QualitySpec()


LiveTeacherSpec = HFTeacherSpec | HTTPTeacherSpec

TeacherSpec = Annotated[ImportedTeacherSpec | HFTeacherSpec | HTTPTeacherSpec, Field(discriminator="kind")]
