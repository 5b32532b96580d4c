"""``tinydistill serve`` over a multiple-choice student: the scoring routes (vLLM /score and /rerank, TEI /rerank,
/v1/choose) on a real uvicorn server over loopback, the OpenAI-shaped 400 on the generation routes, the API key
and a burst of concurrent clients."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import torch
from transformers import AutoModelForMultipleChoice, AutoTokenizer

from tests.serve_helpers import assert_error, client
from tests.teacher_helpers import one_thread, serve_in_thread
from tinydistill.config import StudentConfig
from tinydistill.serve.choice_app import create_choice_app
from tinydistill.serve.server import load_choice_student
from tinydistill.students import ChoiceStudent, load_student

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

QUESTION = "Which of these conducts electricity?"
CHOICES = ["iron", "wood", "a glass marble", "rubber"]


@pytest.fixture(scope="module")
def choice_dir(tmp_path_factory, tiny_bert_dir) -> Path:
    """A saved multiple-choice student (tiny BERT + a seeded choice head), as ``best/`` holds one."""
    torch.manual_seed(1)
    out = tmp_path_factory.mktemp("choice")
    model = AutoModelForMultipleChoice.from_pretrained(tiny_bert_dir)
    with torch.no_grad():
        model.bert.pooler.dense.weight.normal_(0, 1.0)  # a head whose choices score apart (a trained one's do)
        model.classifier.weight.normal_(0, 2.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def student(choice_dir) -> ChoiceStudent:
    s = load_student(StudentConfig(model=str(choice_dir)))
    s.model.eval()
    return s


def _direct(student: ChoiceStudent, firsts: list[str], seconds: list[str]) -> list[float]:
    """The student's own scores of (``answer: `` + first, second) pairs, one pair per row."""
    enc = student.tokenizer(["answer: " + f for f in firsts], seconds, padding=True, return_token_type_ids=True,
                            return_tensors="pt")
    batch = {k: enc[k][:, None] for k in ("input_ids", "attention_mask", "token_type_ids")}
    batch["choice_mask"] = torch.ones((len(firsts), 1), dtype=torch.bool)
    with torch.inference_mode():
        return student.choice_scores(batch)[:, 0].tolist()


def test_scoring_routes_answer_in_the_ecosystems_shapes(student):
    want = _direct(student, [QUESTION] * 4, CHOICES)
    with serve_in_thread(create_choice_app(student, model_name="mc")) as url, httpx.Client(timeout=60) as http:
        base = url.removesuffix("/v1")
        score = http.post(f"{url}/score", json={"model": "mc", "text_1": QUESTION, "text_2": CHOICES}).json()
        assert score["object"] == "list" and score["model"] == "mc" and score["usage"]["prompt_tokens"] > 0
        assert [d["index"] for d in score["data"]] == [0, 1, 2, 3]
        assert [d["score"] for d in score["data"]] == pytest.approx(want, abs=1e-4)
        pairwise = http.post(f"{base}/score", json={"text_1": [QUESTION] * 2, "text_2": CHOICES[:2]}).json()
        assert [d["score"] for d in pairwise["data"]] == pytest.approx(want[:2], abs=1e-4)

        rerank = http.post(f"{url}/rerank", json={"query": QUESTION, "documents": CHOICES, "top_n": 3}).json()
        ranked = sorted(range(4), key=lambda i: -want[i])[:3]
        assert [r["index"] for r in rerank["results"]] == ranked
        assert [r["document"]["text"] for r in rerank["results"]] == [CHOICES[i] for i in ranked]
        shares = torch.softmax(torch.tensor(want), 0).tolist()
        assert [r["relevance_score"] for r in rerank["results"]] == pytest.approx([shares[i] for i in ranked])

        tei = http.post(f"{base}/rerank", json={"query": QUESTION, "texts": CHOICES, "raw_scores": True,
                                                "return_text": True}).json()
        assert isinstance(tei, list) and [t["index"] for t in tei] == sorted(range(4), key=lambda i: -want[i])
        assert tei[0]["score"] == pytest.approx(max(want), abs=1e-4) and tei[0]["text"] == CHOICES[tei[0]["index"]]

        chosen = http.post(f"{url}/choose", json={"question": QUESTION, "choices": CHOICES}).json()
        best = max(range(4), key=lambda i: want[i])
        assert chosen["index"] == best and chosen["text"] == CHOICES[best]
        assert chosen["probabilities"] == pytest.approx(shares) and sum(chosen["probabilities"]) == pytest.approx(1)


def test_generation_routes_are_a_400_naming_the_scoring_routes(student):
    with serve_in_thread(create_choice_app(student, model_name="mc")) as url:
        oa = client(url)
        with pytest.raises(openai.BadRequestError) as e:
            oa.chat.completions.create(model="mc", messages=[{"role": "user", "content": "hi"}])
        assert e.value.status_code == 400
        message = e.value.body["message"]
        assert all(route in message for route in ("/v1/score", "/v1/rerank", "/v1/choose")), message
        with pytest.raises(openai.BadRequestError):
            oa.completions.create(model="mc", prompt="hi")
        assert [m.id for m in oa.models.list().data] == ["mc"]


def test_bad_requests_are_openai_shaped_4xx(student):
    with serve_in_thread(create_choice_app(student, model_name="mc")) as url, httpx.Client(timeout=60) as http:
        surrogate = '{"question": "why \\ud800?", "choices": ["a", "b"]}'  # JSON allows it, UTF-8 does not
        r = http.post(f"{url}/choose", content=surrogate, headers={"content-type": "application/json"})
        assert "surrogate" in assert_error(r, 400, param="question")["message"]
        assert_error(http.post(f"{url}/rerank", json={"query": "q", "documents": []}), 400, param="documents")
        assert_error(http.post(f"{url}/score", json={"text_1": ["a", "b"], "text_2": ["c"] * 3}), 400,
                     param="text_2")
        assert_error(http.post(f"{url}/choose", json={"question": "q", "choices": ["a"] * 65}), 400,
                     param="choices")
        assert_error(http.post(f"{url}/score", json={"model": "other", "text_1": "a", "text_2": "b"}), 404,
                     param="model")
        assert_error(http.post(f"{url}/rerank", json={"documents": ["a"]}), 422)


def test_api_key_and_health_as_the_generation_app(student):
    app = create_choice_app(student, model_name="mc", api_key="sekret")
    with serve_in_thread(app) as url, httpx.Client(timeout=60) as http:
        base = url.removesuffix("/v1")
        for path in (f"{url}/score", f"{url}/rerank", f"{url}/choose", f"{url}/chat/completions"):
            assert_error(http.post(path, json={}), 401, code="invalid_api_key")
        assert_error(http.get(f"{base}/health"), 401)
        auth = {"authorization": "Bearer sekret"}
        health = http.get(f"{base}/ready", headers=auth).json()
        assert health["status"] == "ok" and health["alive"] is True
        ok = http.post(f"{url}/choose", headers=auth, json={"question": "q", "choices": ["a", "b"]})
        assert ok.status_code == 200


def test_a_hundred_concurrent_requests_from_sixteen_clients(student):
    want = _direct(student, [QUESTION] * 4, CHOICES)
    assert max(want) - min(want) > 1e-3, want  # the choices score apart: a mixed-up order would show
    with serve_in_thread(create_choice_app(student, model_name="mc")) as url:
        clients = [httpx.Client(timeout=120) for _ in range(16)]

        def one(i: int) -> list[float]:
            r = clients[i % 16].post(f"{url}/score", json={"text_1": QUESTION, "text_2": CHOICES})
            assert r.status_code == 200, r.text
            return [d["score"] for d in r.json()["data"]]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(100)))
        for c in clients:
            c.close()
    assert len(results) == 100
    for scores in results:  # batched with other requests' pairs (other padding), still the same scores
        assert scores == pytest.approx(want, abs=1e-4)


def test_serve_finds_a_choice_student_in_a_run_folder_and_reads_its_prefix(tmp_path, choice_dir):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    for f in choice_dir.iterdir():
        (run / "best" / f.name).write_bytes(f.read_bytes())
    data = {"train": {"path": "x.jsonl"}, "valid": {"path": "x.jsonl"}}
    (run / "config.yaml").write_text(json.dumps({"answer_prefix": "Q: ", "data": data}))
    for where in (run, run / "best"):
        student, prefix, max_length = load_choice_student(str(where))
        assert isinstance(student, ChoiceStudent) and prefix == "Q: " and max_length == 256
    assert load_choice_student(str(tmp_path)) is None  # not a model folder: the generation path decides
