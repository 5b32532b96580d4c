"""Open-answer tasks (TriviaQA style, question → short text): exact match and token F1, SQuAD-normalised."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from ..data import Example
from ..students import Student
from .evaluate import EvalResult, generate_answers

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles (a, an, the), single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after normalisation (both empty → 1)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_answers(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) against the best-matching accepted answer, as in SQuAD/TriviaQA evaluation."""
    if not answers:
        return 0.0, 0.0
    return max(exact_match(prediction, a) for a in answers), max(token_f1(prediction, a) for a in answers)


def open_metrics(predictions: Sequence[str], examples: Sequence[Example]) -> dict[str, float]:
    scored = [best_over_answers(p, ex.answers) for p, ex in zip(predictions, examples, strict=True) if ex.answers]
    n = max(len(scored), 1)
    return {"exact_match": sum(e for e, _ in scored) / n, "token_f1": sum(f for _, f in scored) / n}


def evaluate_open(student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
                  max_new_tokens: int = 32, batch_size: int = 32, progress: bool = False,
                  prefix_side: str = "encoder") -> EvalResult:
    """Greedy-generate each answer; report exact match and token F1 over the accepted answers."""
    was_training = student.model.training
    student.model.eval()
    texts = generate_answers(student, examples, prefix=prefix, max_input_length=max_input_length,
                             max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
                             prefix_side=prefix_side)
    student.model.train(was_training)
    metrics: dict = {"n": len(examples), "majority_baseline": None, **open_metrics(texts, examples)}
    rows = []
    for ex, text in zip(examples, texts, strict=True):
        em, f1 = best_over_answers(text, ex.answers)
        rows.append({"id": ex.id, "gold": list(ex.answers), "prediction_text": text, "exact_match": em,
                     "token_f1": round(f1, 4), "correct": bool(em)})
    return EvalResult(metrics, rows)
