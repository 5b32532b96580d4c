"""The ONNX graph of a multiple-choice student (``torch.onnx``'s dynamo exporter) and its int8 quantisation
(ONNX Runtime's dynamic quantiser).

Why ``torch.onnx`` and not optimum: optimum's ONNX exporter now lives in ``optimum-onnx``, whose releases pin
``transformers<4.58``; installing it would downgrade this project's transformers 5.x. ``torch.onnx.export(...,
dynamo=True)`` exports the transformers 5.x encoder as it is, and its scores equal PyTorch's (tests); the older
TorchScript exporter (``dynamo=False``) gave scores 0.02 off on padded batches, so it is not used.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import TinyDistillError
from ..students import INPUT_NAMES, OUTPUT_NAME

OPSET = 18


class PairScorer(nn.Module):
    """(pairs, tokens) input ids, attention mask and token types → (pairs,) scores of an
    ``AutoModelForMultipleChoice``: every pair is scored as a one-choice row, as the choice head does per choice."""

    def __init__(self, scorer: nn.Module) -> None:
        super().__init__()
        self.scorer = scorer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> torch.Tensor:
        out = self.scorer(input_ids=input_ids[:, None], attention_mask=attention_mask[:, None],
                          token_type_ids=token_type_ids[:, None])
        return out.logits[:, 0]


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise TinyDistillError(f'{module} is not installed: pip install "tinydistill[export]" '
                               "(onnx, onnxscript and onnxruntime)") from None


def export_onnx(scorer: nn.Module, example: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``scorer`` (an ``AutoModelForMultipleChoice`` in eval mode) as one ONNX file at ``path``, with the
    number of pairs and of tokens dynamic; ``example``: (pairs, tokens) tensors to trace with."""
    for module in ("onnx", "onnxscript"):
        _require(module)
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)  # "no torchvision"
    pairs, tokens = torch.export.Dim("pairs"), torch.export.Dim("tokens")
    args = tuple(example[name] for name in INPUT_NAMES)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on renamed axes and deprecated defaults
        program = torch.onnx.export(
            PairScorer(scorer).eval(), args, input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_shapes={name: {0: pairs, 1: tokens} for name in INPUT_NAMES}, opset_version=OPSET,
            dynamo=True, verbose=False, report=False,
        )
    assert program is not None  # the dynamo exporter returns its program
    program.save(str(path), external_data=False)  # one file (< 2 GB): weights inside, nothing beside it


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of ``src`` into ``dst``: weights int8, activations quantised at run time
    (``onnxruntime.quantization.quantize_dynamic``)."""
    _require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process: symbolic shape inference fails on this graph
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
