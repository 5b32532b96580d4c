"""The exported folder's model card (``README.md``): what it is, how to run it, and what it costs beside the
PyTorch model it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ROWS = (("size on disk (MB)", "size_bytes", lambda v: f"{v / 1e6:.1f}"),
         ("batch-1 latency, median (ms)", "latency_batch1_median_ms", lambda v: f"{v:.1f}"),
         ("batch-1 latency, p95 (ms)", "latency_batch1_p95_ms", lambda v: f"{v:.1f}"),
         ("batch-32 throughput (rows/s)", "rows_per_s_batch32", lambda v: f"{v:.1f}"),
         ("accuracy on valid (%)", "valid_accuracy", lambda v: "–" if v is None else f"{100 * v:.2f}"))


def card_text(meta: dict[str, Any]) -> str:
    """The card's markdown for the ``export.json`` record ``meta``."""
    quant = meta["quantization"]
    kind = "int8 (dynamic quantisation)" if quant == "int8" else "fp32"
    head = f"| | PyTorch fp32 (`{meta['source']}`) | ONNX {kind} |\n|---|---:|---:|\n"
    rows = "".join(f"| {label} | {fmt(meta['pytorch'][key])} | {fmt(meta['exported'][key])} |\n"
                   for label, key, fmt in _ROWS)
    m = meta["measured_on"]
    prefix = meta["answer_prefix"]
    return f"""# Multiple-choice student, ONNX {kind}

Exported by `tinydistill export` from `{meta['source']}` with {meta['exporter']}, opset {meta['opset']}
(ONNX Runtime {meta['onnxruntime']}). The graph is the choice head over (question, choice) pairs: one score per
pair; the highest-scoring choice of a question is its answer, and a softmax over a question's choices gives the
choice distribution. Largest score difference from the PyTorch model on a test batch:
{meta['max_abs_score_difference_vs_pytorch']:.2e}.

| file | what |
|---|---|
| `model.onnx` | the graph: `input_ids`, `attention_mask`, `token_type_ids` (int64, pairs × tokens) → `scores` |
| tokenizer files, `config.json` | the tokenizer and the encoder's config |
| `export.json` | this card's figures, machine-readable (written last: a folder without it is an unfinished export) |

## Cost and accuracy

{head}{rows}
Measured on {m['cpu']} with {m['threads']} thread(s), {m['rows']} rows of {m['data']}; batch-1 = one question
with its choices, the model only (tokenised beforehand). Timings on a shared machine are noisy: compare the
columns, measured in the same run.

## Use it

```python
import numpy as np, onnxruntime as ort
from transformers import AutoTokenizer

tok = AutoTokenizer.from_pretrained("THIS_FOLDER")
session = ort.InferenceSession("THIS_FOLDER/model.onnx", providers=["CPUExecutionProvider"])
question, choices = "Which of these conducts electricity?", ["iron", "wood", "glass", "rubber"]
enc = tok(["{prefix}" + question] * len(choices), choices, padding=True, truncation=True,
          max_length={meta['max_input_length']}, return_token_type_ids=True, return_tensors="np")
scores = session.run(["scores"], {{k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask",
                                                                        "token_type_ids")}})[0]
print(choices[int(scores.argmax())], np.exp(scores) / np.exp(scores).sum())
```

The question is read with the task prefix `{prefix!r}` it was trained with. Or with tinydistill:
`tinydistill eval THIS_FOLDER --data FILE --out DIR` (accuracy on a data file) and `tinydistill serve THIS_FOLDER`
(`/v1/score`, `/v1/rerank`, `/v1/choose`).
"""


def write_card(folder: Path, meta: dict[str, Any], name: str) -> None:
    """``README.md`` in ``folder`` (the export's temporary folder; ``name``: what the folder will be called)."""
    (folder / "README.md").write_text(card_text(meta).replace("THIS_FOLDER", name), encoding="utf-8")
