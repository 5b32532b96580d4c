"""``tinydistill export``: a trained multiple-choice student as an ONNX graph (optionally int8) with its tokenizer
and a model card (:mod:`.exporter`); the graph and the quantiser (:mod:`.graph`); what the card measures
(:mod:`.measure`, also used by ``bench/inference_latency.py``)."""

from .exporter import QUANTIZE, export_student, resolve_source
from .measure import Latency, accuracy, encoded_batches, latency, size_on_disk

__all__ = ["QUANTIZE", "Latency", "accuracy", "encoded_batches", "export_student", "latency", "resolve_source",
           "size_on_disk"]
