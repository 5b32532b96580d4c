"""A multiple-choice student exported to ONNX (``tinydistill export``), run by ONNX Runtime.

The exported graph is the choice head over *flat* (question, choice) pairs: inputs ``input_ids``,
``attention_mask``, ``token_type_ids`` of shape (pairs, tokens), output ``scores`` (pairs,). :class:`OnnxScorer`
stands in for the PyTorch scorer (it takes the (B, K, L) tensors a :class:`~.choice.ChoiceModel` passes and
returns ``.logits`` (B, K)), so the same :class:`~.choice.ChoiceStudent` scores, evaluates and serves either.
An export folder holds ``model.onnx``, the tokenizer, ``config.json``, a model card and ``export.json`` (written
last: a folder without it is not a complete export).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer

from ..errors import TinyDistillError
from .choice import ChoiceModel, ChoiceStudent

ONNX_FILE = "model.onnx"
EXPORT_META = "export.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "scores"
INSTALL_HINT = 'ONNX Runtime is not installed: pip install "tinydistill[export]" (or: pip install onnxruntime)'


def import_onnxruntime() -> Any:
    """``onnxruntime``, or a one-line error saying what to install."""
    try:
        import onnxruntime
    except ImportError:
        raise TinyDistillError(INSTALL_HINT) from None
    return onnxruntime


def is_onnx_export(folder: str | Path) -> bool:
    """Whether ``folder`` looks like an export (holds ``model.onnx`` or ``export.json``), complete or not."""
    folder = Path(folder)
    return (folder / ONNX_FILE).is_file() or (folder / EXPORT_META).is_file()


def read_export_meta(folder: str | Path) -> dict[str, Any]:
    """The export's ``export.json``; a folder without it (a half-written export) is a one-line error."""
    folder = Path(folder)
    meta = folder / EXPORT_META
    if not meta.is_file() or not (folder / ONNX_FILE).is_file():
        raise TinyDistillError(f"{folder}: not a complete export (no {EXPORT_META} or {ONNX_FILE}; an export that "
                               "was stopped part-way): delete it and run tinydistill export again")
    try:
        return json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TinyDistillError(f"{meta}: unreadable ({e}); run tinydistill export again") from None


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU (``threads``: intra-op threads; default: torch's count)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxScorer:
    """Runs the exported graph; called like ``AutoModelForMultipleChoice`` with (B, K, L) tensors."""

    def __init__(self, sess: Any, config: Any) -> None:
        self.session, self.config = sess, config
        self._inputs = {i.name for i in sess.get_inputs()}

    def __call__(self, *, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> SimpleNamespace:
        b, k, length = input_ids.shape
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed = {name: t.reshape(b * k, length).to(torch.int64).cpu().numpy() for name, t in given.items()
                if name in self._inputs}
        scores = self.session.run([OUTPUT_NAME], feed)[0]
        return SimpleNamespace(logits=torch.from_numpy(scores).reshape(b, k))


class OnnxChoiceModel(ChoiceModel):
    """A :class:`ChoiceModel` whose scorer is an :class:`OnnxScorer` (no PyTorch weights; on the CPU)."""

    def __init__(self, scorer: OnnxScorer) -> None:
        torch.nn.Module.__init__(self)
        self.scorer = scorer  # a plain attribute, not a submodule
        self.decoder = None
        self.mlm_head = None
        self.config = scorer.config

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")


def onnx_student(path: str | Path, config: Any, tokenizer: Any, threads: int | None = None) -> ChoiceStudent:
    """A :class:`ChoiceStudent` over the ONNX graph at ``path`` (``config``: the exported model's HF config)."""
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None
    return ChoiceStudent(OnnxChoiceModel(OnnxScorer(session(path, threads), config)), tokenizer)


def load_onnx_student(folder: str | Path, threads: int | None = None) -> ChoiceStudent:
    """The exported student in ``folder`` as a :class:`ChoiceStudent` run by ONNX Runtime."""
    folder = Path(folder)
    read_export_meta(folder)
    import_onnxruntime()
    return onnx_student(folder / ONNX_FILE, AutoConfig.from_pretrained(folder), AutoTokenizer.from_pretrained(folder),
                        threads)
