"""The generator on its own: the same tokens as ``generate``, however requests are grouped, merged or cut short."""

from __future__ import annotations

import threading

import pytest

from tests.serve_helpers import slowed, wait_until
from tests.teacher_helpers import minilm_tokenizer, one_thread, tiny_gpt2, tiny_t5
from tinydistill.serve.engine import CANCELLED, LENGTH, Engine, Job
from tinydistill.teachers.hf import HFBackend

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PROMPTS = [
    "a much longer prompt about the sky and why it is blue today",
    "x",
    "which of these is a metal: iron, wood or glass?",
    "the sky is blue because of scattering",
]


def _engine(model):
    backend = HFBackend(model, minilm_tokenizer(), name="m")
    return backend, Engine(model, pad_id=backend.pad_id, eos_ids=backend.eos_ids)


def _jobs(backend: HFBackend, prompts: list[str], max_new: int, done: threading.Semaphore, **kw) -> list[Job]:
    def on_event(kind: str, value) -> None:
        if kind != "token":
            done.release()

    return [Job(ids, max_new, on_event=on_event, **kw) for ids in backend.encode(prompts)]


@pytest.mark.parametrize("make", [lambda: tiny_gpt2(seed=1), tiny_t5], ids=["gpt2", "t5"])
def test_late_requests_join_and_every_row_equals_generate_alone(make) -> None:
    model = make()
    backend, engine = _engine(model)
    expected = [dict(backend.generate_texts([p], max_new_tokens=12))[0] for p in PROMPTS]  # one at a time
    done = threading.Semaphore(0)
    with slowed(model, 0.01):  # 10 ms a step: the late requests surely arrive mid-generation
        try:
            first = _jobs(backend, PROMPTS[:2], 12, done)
            engine.submit(first)
            wait_until(lambda: len(first[0].tokens) >= 3)  # the first group is mid-generation
            late = _jobs(backend, PROMPTS[2:], 12, done)
            engine.submit(late)
            for _ in PROMPTS:
                assert done.acquire(timeout=30)
            status = engine.status()
        finally:
            engine.close()
    tok = minilm_tokenizer()
    got = [tok.decode(j.tokens, skip_special_tokens=True).strip() for j in first + late]
    assert got == [e.text for e in expected]
    assert [len(j.tokens) for j in first + late] == [e.completion_tokens for e in expected]
    assert status["batches"] == 2
    if not model.config.is_encoder_decoder:  # causal groups of similar length become one batch
        assert status["merges"] == 1


def test_seeded_sampling_does_not_depend_on_the_batch() -> None:
    backend, engine = _engine(tiny_gpt2(seed=1))
    done = threading.Semaphore(0)
    try:
        alone = _jobs(backend, PROMPTS[:1], 8, done, temperature=1.0, top_p=0.9, seed=7)
        engine.submit(alone)
        assert done.acquire(timeout=30)
        together = _jobs(backend, PROMPTS, 8, done, temperature=1.0, top_p=0.9, seed=7)
        engine.submit(together)
        for _ in PROMPTS:
            assert done.acquire(timeout=30)
    finally:
        engine.close()
    assert alone[0].tokens == together[0].tokens and len(alone[0].tokens) >= 2


def test_cancelled_rows_leave_their_group_and_the_rest_finish() -> None:
    backend, engine = _engine(tiny_t5())
    reasons: dict[int, str] = {}
    finished = threading.Semaphore(0)

    def on_event(i: int):
        def record(kind: str, value) -> None:
            if kind == "done":
                reasons[i] = value
                finished.release()

        return record

    jobs = [Job(ids, 200, on_event=on_event(i)) for i, ids in enumerate(backend.encode(PROMPTS[:3]))]
    try:
        engine.submit(jobs)
        wait_until(lambda: len(jobs[1].tokens) >= 2)
        jobs[1].cancel()
        for _ in jobs:
            assert finished.acquire(timeout=60)
    finally:
        engine.close()
    assert reasons == {0: LENGTH, 1: CANCELLED, 2: LENGTH}
    assert len(jobs[1].tokens) < 50 and len(jobs[0].tokens) == len(jobs[2].tokens) == 200


def test_a_failed_merge_keeps_the_groups_apart(monkeypatch) -> None:
    from tinydistill.serve import engine as engine_module

    def broken(self, other) -> None:
        raise RuntimeError("unforeseen cache layout")

    monkeypatch.setattr(engine_module._Group, "absorb", broken)
    model = tiny_gpt2(seed=1)
    backend, engine = _engine(model)
    expected = [dict(backend.generate_texts([p], max_new_tokens=8))[0].completion_tokens for p in PROMPTS]
    done = threading.Semaphore(0)
    with slowed(model, 0.01):
        try:
            first = _jobs(backend, PROMPTS[:2], 8, done)
            engine.submit(first)
            wait_until(lambda: len(first[0].tokens) >= 2)
            late = _jobs(backend, PROMPTS[2:], 8, done)
            engine.submit(late)
            for _ in PROMPTS:
                assert done.acquire(timeout=30)
            assert not engine.merging and engine.status()["alive"]
        finally:
            engine.close()
    assert [len(j.tokens) for j in first + late] == expected
