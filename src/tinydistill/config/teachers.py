"""Typed teacher configuration: a tagged union on ``kind`` (imported | hf | http)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: how hosted APIs' keys begin (OpenAI, Anthropic, Groq, xAI, Google, GitHub, Perplexity)
KEY_PREFIXES = ("sk-", "gsk_", "xai-", "AIza", "ghp_", "github_pat_", "pplx-")


def looks_like_key(value: str) -> bool:
    """Whether text meant to name an environment variable is a secret instead: not a shell variable name
    (letters, digits, ``_``), a known key prefix, or a long mixed-case run with digits."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) or value.startswith(KEY_PREFIXES):
        return True
    mixed = any(c.islower() for c in value) and any(c.isupper() for c in value)
    return len(value) >= 32 and mixed and any(c.isdigit() for c in value)


class _TeacherBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

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
    """teacher kind (the tag that picks this section)"""
    path: str | None = Field(
        None, description="JSONL of {id, rationale}; None: rationales in the data source"
    )


class GenerationSpec(BaseModel):
    """How a live teacher writes rationales."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    template: Literal["teacher_forcing", "cot"] = "teacher_forcing"
    """teacher_forcing: the gold answer is in the prompt (TinyLLM); cot: it is not ('w/o teacher-forcing')"""
    prompt_template: str | None = Field(
        None, description="custom prompt; placeholders {question} {choices} {answer} {examples}"
    )
    system_prompt: str | None = Field(None, description="system message (chat models); None: none")
    max_new_tokens: int = Field(128, ge=1)
    """rationale length limit; a rationale that hits it is flagged truncated"""
    gen_temperature: float = Field(0.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """nucleus sampling (with gen_temperature > 0)"""
    num_samples: int = Field(1, ge=1, description="rationales per row (diverse-samples ablation)")
    batch_size: int = Field(8, ge=1)
    """prompts per batch (hf backend)"""
    seed: int = Field(0, description="base sampling seed; sample k uses seed + k where the backend allows")
    stop: tuple[str, ...] = Field((), description="stop strings (HTTP backends)")

    @model_validator(mode="after")
    def _check(self) -> GenerationSpec:
        if self.num_samples > 1 and self.gen_temperature == 0:
            raise ValueError("num_samples > 1 needs gen_temperature > 0 (greedy samples are identical)")
        return self


class ICLSpec(BaseModel):
    """In-context examples: a pool the teacher writes once (cached), then k of them per prompt."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    k: int = Field(0, ge=0, description="exemplars per prompt; 0 = none (the 'w/o in-context' ablation)")
    pool_size: int = Field(8, ge=1, description="exemplars the teacher writes (zero-shot, cached)")
    selection: Literal["random", "nearest"] = "random"
    """random (seeded by row id) or the nearest questions in embedding space"""
    mode: Literal["rationalize", "synthesize"] = Field(
        "rationalize",
        description="rationalize: rationales for seed train questions; synthesize: new questions",
    )
    embedder: str = Field(
        "minilm", description="sentence-transformers model for 'nearest'; 'minilm' = offline"
    )
    seed: int = 0
    """seed of the exemplar pool's questions and of random selection"""

    @model_validator(mode="after")
    def _check(self) -> ICLSpec:
        if self.k > self.pool_size:
            raise ValueError(f"icl.k ({self.k}) must not exceed icl.pool_size ({self.pool_size})")
        return self


class QualitySpec(BaseModel):
    """What to do with rationales that contradict gold or were cut off. Empty ones are always dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    on_contradict: Literal["keep", "drop", "downweight"] = "downweight"
    """rationales whose stated answer differs from gold"""
    on_truncated: Literal["keep", "drop", "downweight"] = "keep"
    """rationales that stopped at max_new_tokens"""
    downweight: float = Field(0.5, ge=0.0, le=1.0, description="weight factor per downweighted issue")


class HFTeacherSpec(_TeacherBase):
    """A local transformers model (seq2seq or causal)."""

    kind: Literal["hf"] = "hf"
    """teacher kind (the tag that picks this section)"""
    model: str
    """hub name or local folder"""
    revision: str | None = None
    """model revision (branch, tag or commit); part of the cache key"""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """weights dtype when loaded"""
    chat_template: bool | None = Field(
        None, description="use the tokenizer's chat template; None: if it has one"
    )
    max_input_tokens: int = Field(1024, ge=8, description="prompts are truncated from the left to this")
    generation: GenerationSpec = GenerationSpec()
    """how the teacher writes rationales"""
    icl: ICLSpec = ICLSpec()
    """in-context examples"""
    quality: QualitySpec = QualitySpec()
    """what to do with contradicting or truncated rationales"""


class HTTPTeacherSpec(_TeacherBase):
    """An OpenAI-compatible endpoint (vLLM, TGI, llama.cpp server, hosted APIs)."""

    kind: Literal["http"] = "http"
    """teacher kind (the tag that picks this section)"""
    base_url: str | tuple[str, ...] = Field(
        description="endpoint, or a list of endpoints serving the same model (requests go round-robin)"
    )
    model: str
    """model name the server serves (vLLM: its --served-model-name)"""
    api: Literal["chat", "completions"] = "chat"
    """chat: the server applies the model's chat template; completions: raw prompt"""
    api_key_env: str | None = Field(None, description="name of the environment variable holding the key")

    @field_validator("api_key_env")
    @classmethod
    def _a_name_not_a_key(cls, value: str | None) -> str | None:
        """A key pasted here by mistake is refused without being echoed (the message never holds the value)."""
        if value is not None and looks_like_key(value):
            raise ValueError("this looks like an API key, not the name of an environment variable: never write "
                             "the key in a config; export it (export OPENAI_API_KEY=...) and write its name here "
                             "(api_key_env: OPENAI_API_KEY)")
        return value
    concurrency: int = Field(4, ge=1)
    """requests in flight"""
    max_retries: int = Field(5, ge=0)
    """retries on 429, 5xx, timeouts, connection errors and malformed replies (backoff + jitter)"""
    timeout_s: float = Field(60.0, gt=0)
    """seconds per request"""
    retry_backoff_s: float = Field(
        0.5, gt=0, description="first retry delay; doubles per attempt, with jitter"
    )
    generation: GenerationSpec = GenerationSpec()
    """how the teacher writes rationales"""
    icl: ICLSpec = ICLSpec()
    """in-context examples"""
    quality: QualitySpec = QualitySpec()
    """what to do with contradicting or truncated rationales"""


LiveTeacherSpec = HFTeacherSpec | HTTPTeacherSpec

TeacherSpec = Annotated[ImportedTeacherSpec | HFTeacherSpec | HTTPTeacherSpec, Field(discriminator="kind")]
