"""The teacher cache: atomic writes, kill -9 resume without repeated calls, two processes sharing one file."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.teacher_helpers import ScriptedBackend, make_examples
from tinydistill.teachers.cache import CachedOutput, TeacherCache, make_key
from tinydistill.teachers.live import LiveTeacher

ROOT = Path(__file__).resolve().parents[1]

# A writer process: a slow scripted teacher over N rows; writes its rationales to OUT when done.
WRITER = """
import json, sys
sys.path.insert(0, {root!r})
from tests.teacher_helpers import ScriptedBackend, make_examples
from tinydistill.teachers.cache import TeacherCache
from tinydistill.teachers.live import LiveTeacher
cache_path, log, out, n, delay = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
t = LiveTeacher("t", ScriptedBackend(log, delay_s=delay), TeacherCache(cache_path), chunk_size=4, poll_s=0.05)
rats = t.rationales(make_examples(n))
json.dump({{"rationales": rats, "calls": t.stats.calls, "hits": t.stats.hits}}, open(out, "w"))
"""


def _writer(tmp: Path, tag: str, n: int, delay: float) -> subprocess.Popen:
    script = tmp / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    args = [
        sys.executable,
        str(script),
        str(tmp / "cache.sqlite"),
        str(tmp / f"calls.{tag}.log"),
        str(tmp / f"out.{tag}.json"),
        str(n),
        str(delay),
    ]
    return subprocess.Popen(args, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _stored_prompts(path: Path) -> set[str]:
    """Prompts stored so far; none while the writer has created the file but not yet its table."""
    with sqlite3.connect(path) as db:
        try:
            return {row[0] for row in db.execute("SELECT prompt FROM outputs")}
        except sqlite3.OperationalError:
            return set()


def _calls(log: Path) -> list[str]:
    return [json.loads(line)[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_put_get_and_stats(tmp_path: Path) -> None:
    with TeacherCache(tmp_path / "runs" / "new" / "c.sqlite") as nested:  # its folders are created
        assert re.fullmatch(r"[^:]+:\d+:[0-9a-f]{8}", nested.owner)  # host:pid:random, read by _lease_dead
    with TeacherCache(tmp_path / "c.sqlite") as cache:
        key = make_key("t", "m", None, "prompt", {"max_new_tokens": 8}, 0)
        # keys are stable across versions and dict orders: an existing cache file is reused, never re-asked
        assert key == "ee2b15c487481ec20e506900404c3e731c9e63fd7814e24ce55dbfa4cd17be43"
        assert make_key("t", "m", None, "Quelle réponse ?", {"max_new_tokens": 8, "stop": ["\n"]}, 0) == \
            "d9e674ee26e5ad8ba0a23444ee4dc2ecf47c21a9f243e01345a05f16a82b5e19"
        assert make_key("t", "m", None, "p", {"a": 1, "b": 2}, 0) == make_key("t", "m", None, "p", {"b": 2, "a": 1}, 0)
        assert key != make_key("t", "m", None, "prompt", {"max_new_tokens": 9}, 0)
        assert key != make_key("t", "m", "rev2", "prompt", {"max_new_tokens": 8}, 0)
        assert key != make_key("t", "m", None, "prompt", {"max_new_tokens": 8}, 1)
        assert cache.get_many([key]) == {}
        assert cache.put(
            key,
            teacher="t",
            model="m",
            revision=None,
            params={},
            prompt="prompt",
            sample=0,
            text="hi",
            prompt_tokens=3,
            completion_tokens=1,
        )
        assert not cache.put(
            key, teacher="t", model="m", revision=None, params={}, prompt="prompt", sample=0, text="other"
        )
        assert cache.get_many([key])[key].text == "hi"
        assert cache.stats.as_dict() == {"calls": 1, "hits": 1, "prompt_tokens": 3, "completion_tokens": 1}
        other = make_key("t", "m", None, "other", {}, 0)  # no token counts, no finish reason given
        assert cache.put(other, teacher="t", model="m", revision=None, params={"b": 1, "a": 2}, prompt="other",
                         sample=0, text="x")
        assert cache.get_many([key, other]) == {key: CachedOutput("hi", 3, 1, "stop"),
                                                other: CachedOutput("x", 0, 0, "stop")}
        assert cache.stats.as_dict() == {"calls": 2, "hits": 3, "prompt_tokens": 3, "completion_tokens": 1}
        params = cache._db.execute("SELECT params FROM outputs WHERE key = ?", (other,)).fetchone()[0]
        assert params == '{"a": 2, "b": 1}'  # canonical: sorted keys
        # a failure inside the write's transaction is rolled back and raised as it is; the cache stays usable
        with pytest.raises(TypeError, match="is not JSON serializable"):
            cache.put("bad", teacher="t", model="m", revision=None, params={"f": object()}, prompt="p", sample=0,
                      text="y")
        assert cache.put("good", teacher="t", model="m", revision=None, params={}, prompt="p", sample=0, text="z")
        assert len(cache) == 3 and cache.get_many(["bad"]) == {}
        with ThreadPoolExecutor(1) as pool:  # one connection shared by threads (a teacher's worker pool)
            assert pool.submit(len, cache).result() == 3
    with TeacherCache(tmp_path / "c.sqlite") as again:  # persisted
        assert len(again) == 3 and again.totals() == {"outputs": 3, "prompt_tokens": 3, "completion_tokens": 1}
        mode = again._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_leases_exclude_live_owner_and_release(tmp_path: Path) -> None:
    a, b = TeacherCache(tmp_path / "c.sqlite"), TeacherCache(tmp_path / "c.sqlite")
    b.owner = f"{b.owner.split(':')[0]}:1:other"  # pid 1 is alive: its lease must be respected
    assert b.claim(["k1", "k2"]) == ["k1", "k2"]
    assert a.claim(["k1", "k2", "k3"]) == ["k3"]
    b.release(["k2"])
    assert a.claim(["k2"]) == ["k2"]

    def cut_short():  # the keys' source fails after one key was leased
        yield "k4"
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="^source failed$"):
        a.claim(cut_short())
    assert b.claim(["k4"]) == ["k4"]  # the half-done claim was rolled back: k4 was never a's
    a.close()
    b.close()


def test_live_teacher_rerun_makes_no_calls(tmp_path: Path) -> None:
    rows = make_examples(6)
    first = LiveTeacher("t", ScriptedBackend(), TeacherCache(tmp_path / "c.sqlite"))
    out = first.rationales(rows)
    assert first.stats.calls == 6
    backend = ScriptedBackend()
    second = LiveTeacher("t", backend, TeacherCache(tmp_path / "c.sqlite"))
    assert second.rationales(rows) == out
    assert backend.calls == [] and second.stats.calls == 0 and second.stats.hits == 6
    other = LiveTeacher("t2", ScriptedBackend(), TeacherCache(tmp_path / "c.sqlite"))  # teacher name in key
    other.rationales(rows[:2])
    assert other.stats.calls == 2


@pytest.mark.slow
def test_kill_9_mid_run_resumes_without_repeating(tmp_path: Path) -> None:
    n = 40
    proc = _writer(tmp_path, "a", n, delay=0.05)
    db = tmp_path / "cache.sqlite"
    for _ in range(600):  # bounded wait (~30 s) until some but not all rows are stored
        if db.exists() and len(_stored_prompts(db)) >= 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    stored = _stored_prompts(db)
    assert 0 < len(stored) < n
    first_calls = _calls(tmp_path / "calls.a.log")
    assert stored <= set(first_calls)  # every stored row was really called once
    assert len(first_calls) - len(stored) <= 4  # at most the claimed, in-flight chunk was lost

    proc = _writer(tmp_path, "b", n, delay=0.0)
    assert proc.wait(timeout=60) == 0
    rerun_calls = _calls(tmp_path / "calls.b.log")
    assert not stored & set(rerun_calls)  # nothing stored was asked again
    assert len(rerun_calls) == len(set(rerun_calls)) == n - len(stored)
    assert len(_stored_prompts(db)) == n
    result = json.loads((tmp_path / "out.b.json").read_text())
    assert result["calls"] == n - len(stored) and all(result["rationales"])


@pytest.mark.slow
def test_two_processes_share_one_cache(tmp_path: Path) -> None:
    n = 30
    procs = [_writer(tmp_path, tag, n, delay=0.02) for tag in ("a", "b")]
    assert [p.wait(timeout=90) for p in procs] == [0, 0]
    calls = _calls(tmp_path / "calls.a.log") + _calls(tmp_path / "calls.b.log")
    assert len(calls) == len(set(calls)) == n  # the two processes split the work; no row called twice
    outs = [json.loads((tmp_path / f"out.{t}.json").read_text()) for t in ("a", "b")]
    assert outs[0]["rationales"] == outs[1]["rationales"]
    assert outs[0]["calls"] + outs[1]["calls"] == n
    assert len(_stored_prompts(tmp_path / "cache.sqlite")) == n


def _open_cache_at_barrier(path: str, barrier: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    with TeacherCache(path) as cache:
        assert len(cache) == 0


@pytest.mark.slow
def test_many_processes_opening_a_new_cache_at_once_all_succeed(tmp_path: Path) -> None:
    """Processes that create one file together race to switch it to WAL; none may fail."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    failures = 0
    for trial in range(10):
        path = str(tmp_path / f"race{trial}" / "cache.sqlite")
        Path(path).parent.mkdir()
        barrier = ctx.Barrier(6)
        procs = [ctx.Process(target=_open_cache_at_barrier, args=(path, barrier)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        failures += sum(p.exitcode != 0 for p in procs)
    assert failures == 0


def test_stored_outputs_read_back_whole_in_chunks_and_totals_count_every_process(tmp_path: Path) -> None:
    keys = [make_key("t", "m", None, f"p{i}", {}, 0) for i in range(1201)]  # more than one 500-key chunk
    with TeacherCache(tmp_path / "c.sqlite") as cache:
        for i, key in enumerate(keys):
            assert cache.put(key, teacher="t", model="m", revision=None, params={"n": 1}, prompt=f"p{i}", sample=0,
                             text=f"out{i}", prompt_tokens=i, completion_tokens=2, finish_reason="length"
                             if i == 7 else "stop")
        got = cache.get_many(keys + ["missing"])
        assert len(got) == 1201 and cache.stats.hits == 1201
        assert got[keys[7]] == CachedOutput("out7", 7, 2, "length") and got[keys[1200]].text == "out1200"
        assert cache.totals() == {"outputs": 1201, "prompt_tokens": sum(range(1201)), "completion_tokens": 2402}
        assert cache.stats.as_dict() == {"calls": 1201, "hits": 1201, "prompt_tokens": sum(range(1201)),
                                         "completion_tokens": 2402}
        row = cache._db.execute("SELECT teacher, model, params, prompt, sample FROM outputs WHERE key = ?",
                                (keys[3],)).fetchone()
        assert row == ("t", "m", '{"n": 1}', "p3", 0)
        assert cache.claim([keys[0], "new"]) == ["new"]  # stored keys are never leased


def test_expired_and_dead_owners_leases_are_taken_over_live_ones_and_others_are_not_released(tmp_path: Path,
                                                                                              monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    host = TeacherCache(tmp_path / "c.sqlite").owner.split(":")[0]
    mine = TeacherCache(tmp_path / "c.sqlite")
    gone = TeacherCache(tmp_path / "c.sqlite")
    gone.owner = f"{host}:{dead.pid}:gone"
    elsewhere = TeacherCache(tmp_path / "c.sqlite")
    elsewhere.owner = f"other-host:{dead.pid}:x"  # a pid on another machine cannot be checked: respected
    expired = TeacherCache(tmp_path / "c.sqlite", lease_s=-1.0)
    expired.owner = "other-host:1:old"
    assert gone.claim(["g"]) == ["g"] and elsewhere.claim(["e"]) == ["e"] and expired.claim(["x"]) == ["x"]
    assert mine.claim(["g", "e", "x"]) == ["g", "x"]
    mine.release(["e"])  # not ours: stays leased
    assert mine.claim(["e"]) == []
    assert mine.claim(["g"]) == ["g"]  # our own lease: ours again
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    default = TeacherCache(tmp_path / "c.sqlite")
    assert default.claim(["d"]) == ["d"]
    assert default._db.execute("SELECT expires FROM leases WHERE key = 'd'").fetchone()[0] == 1000.0 + 3600
    soon = TeacherCache(tmp_path / "c.sqlite", lease_s=10.0)
    soon.owner = "other-host:1:soon"
    assert soon.claim(["s"]) == ["s"]  # leased until 1010
    now[0] = 1010.0
    assert mine.claim(["s"]) == []  # held up to its expiry time
    now[0] = 1010.5
    assert mine.claim(["s"]) == ["s"]  # then taken over


def test_busy_database_is_retried_with_a_deadline_other_errors_at_once(monkeypatch) -> None:
    from tinydistill.files import pid_alive
    from tinydistill.teachers.cache import _retry_while_busy

    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert _retry_while_busy(locked_twice) == "done" and len(calls) == 3

    def broken():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: outputs")

    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        _retry_while_busy(broken)
    assert len(calls) == 1

    def always_locked():
        calls.append(1)
        raise sqlite3.OperationalError("database is locked")

    # the pauses on a clock of our own: doubling from 5 ms, capped at 0.25 s, until 60 s have passed
    clock, pauses = [0.0], []

    def sleep(s: float) -> None:
        pauses.append(s)
        clock[0] += s

    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(time, "sleep", sleep)
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="^database is locked$"):
        _retry_while_busy(always_locked)
    assert pauses[:8] == [0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.25, 0.25] and set(pauses[6:]) == {0.25}
    assert sum(pauses[:-1]) <= 60.0 < sum(pauses) and len(calls) == len(pauses) + 1
    assert pid_alive(os.getpid())
