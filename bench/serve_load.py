"""Load on ``tinydistill serve`` over loopback: success rate and p50/p95 latency, steady and beside a huge request.

A real uvicorn server (in this process, on 127.0.0.1) over a random 2-layer GPT-2 (width 64, 1,024 positions, EOS
disabled so every request does the work it asks for), driven by concurrent ``httpx`` clients. Scenarios:

- ``steady``: N completions (``--max-tokens`` each) from C concurrent clients.
- ``stream``: the same with ``"stream": true``; latency to the first event and to the end.
- ``beside huge``: one request with ``max_tokens`` 1,000 starts first; then small requests (8 tokens) from a few
  clients. Their latency is the point: the server gives every running request one token per step, so they
  should take about what they take alone (``alone``), not wait for the huge one to finish.

- ``hostile`` (issue 40; ``--hostile``): beside normal clients sending 4-token requests, a hostile client sends
  (a) one maximal legitimate request, 64 prompts × 80 tokens, and (b) four 1.9 MB prompts (under the body cap, over
  the token cap). Run with the fair admission (``fair``) and first come, first served (``fifo``, the engine before
  issue 40) over a model slowed to ``--step-ms`` per forward pass (a stand-in for a larger model). The short
  requests' p95 is the point; the target is under 2 s.

Each scenario runs twice: ``interleaved`` (the server's defaults) and ``one at a time`` (``max_active=1``: one
row generates at a time, as a run-to-completion server would) - the naive baseline. Prints a table; writes
JSON with ``--json``, whose top-level ``ratio`` is the small requests' p95 beside the huge one, one at a time
over interleaved. Every request has a timeout, so the run is bounded.

    python bench/serve_load.py [--quick] [--json PATH] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
from bench_io import write_results
from teach_throughput import tiny_model

from tinydistill.serve import create_app

PROMPTS = [f"Question {i}: which of these is a metal, iron, wood or glass? Think step by step." for i in range(64)]
TIMEOUT_S = 120.0
MODES = ("interleaved", "one at a time")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(model: Any, tok: Any, **kw: Any):
    """A uvicorn server on a free loopback port; yields (base URL, app)."""
    import uvicorn

    app = create_app(model, tok, model_name="tiny", **kw)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(500):
        if srv.started:
            break
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        srv.should_exit = True
        thread.join(timeout=30)


async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """One request: ok, seconds to the end, seconds to the first streamed event."""
    t0 = time.perf_counter()
    first = None
    try:
        if body.get("stream"):
            async with client.stream("POST", "/v1/completions", json=body) as r:
                ok = r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: ") and first is None:
                        first = time.perf_counter() - t0
                    ok = ok and '"error"' not in line
        else:
            r = await client.post("/v1/completions", json=body)
            ok = r.status_code == 200 and r.json()["usage"]["completion_tokens"] == body["max_tokens"]
    except httpx.HTTPError:
        ok = False
    return {"ok": ok, "s": time.perf_counter() - t0, "first_s": first}


async def load(url: str, bodies: list[dict[str, Any]], clients: int) -> tuple[list[dict[str, Any]], float]:
    """Send ``bodies`` from ``clients`` concurrent clients; the results and the wall time."""
    sem = asyncio.Semaphore(clients)
    limits = httpx.Limits(max_connections=clients + 2)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:

        async def bounded(body: dict[str, Any]) -> dict[str, Any]:
            async with sem:
                return await one(client, body)

        t0 = time.perf_counter()
        out = await asyncio.gather(*(bounded(b) for b in bodies))
        return list(out), time.perf_counter() - t0


async def beside_huge(url: str, app: Any, small: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Small requests sent once a huge one is generating; their results and the huge one's."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        huge = asyncio.create_task(one(client, {"prompt": PROMPTS[0], "max_tokens": 1000, "temperature": 0}))
        while app.state.engine.status()["active"] == 0:  # bounded by the huge request's own timeout
            await asyncio.sleep(0.005)
            if huge.done():
                break
        results, wall = await load(url, small, clients)
        return {"small": results, "wall": wall, "huge": await huge}


def summary(results: list[dict[str, Any]], wall: float | None = None) -> dict[str, Any]:
    secs = sorted(r["s"] for r in results if r["ok"])
    firsts = sorted(r["first_s"] for r in results if r["ok"] and r["first_s"] is not None)

    def pct(xs: list[float], q: int) -> float | None:
        if not xs:
            return None
        return xs[0] if len(xs) == 1 else statistics.quantiles(xs, n=100, method="inclusive")[q - 1]

    return {
        "requests": len(results),
        "success_rate": sum(r["ok"] for r in results) / max(1, len(results)),
        "p50_s": pct(secs, 50),
        "p95_s": pct(secs, 95),
        "first_event_p50_s": pct(firsts, 50),
        "requests_per_s": None if wall is None else len(results) / wall,
    }


def run_mode(model: Any, tok: Any, mode: str, n: int, clients: int, max_tokens: int, small_n: int) -> dict:
    kw = {"max_active": 1} if mode == "one at a time" else {}
    plain = [{"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": max_tokens, "temperature": 0} for i in range(n)]
    small = [{"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 8, "temperature": 0} for i in range(small_n)]
    out: dict[str, Any] = {}
    with server(model, tok, **kw) as (url, app):
        asyncio.run(load(url, plain[:4], 4))  # warm-up
        results, wall = asyncio.run(load(url, plain, clients))
        out["steady"] = summary(results, wall)
        results, wall = asyncio.run(load(url, [{**b, "stream": True} for b in plain], clients))
        out["stream"] = summary(results, wall)
        results, wall = asyncio.run(load(url, small, 4))
        out["alone"] = summary(results, wall)
        both = asyncio.run(beside_huge(url, app, small, 4))
        out["beside huge"] = summary(both["small"], both["wall"])
        out["beside huge"]["huge_s"] = both["huge"]["s"]
        out["beside huge"]["huge_ok"] = both["huge"]["ok"]
    return out


HOSTILE_PROMPT = "word " * 380_000  # 1.9 MB, 380,000 tokens: under the 2 MiB body cap, over 32,768 tokens


async def beside_hostile(url: str, app: Any, hostile: list[dict[str, Any]], short_n: int,
                         clients: int) -> dict[str, Any]:
    """Short requests from ``clients`` normal clients, sent once the hostile requests are in; their results."""
    short = [{"prompt": PROMPTS[i % len(PROMPTS)], "max_tokens": 4, "temperature": 0} for i in range(short_n)]
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:

        async def send(body: dict[str, Any]) -> dict[str, Any]:
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/completions", json=body)
                status = r.status_code
            except httpx.HTTPError:
                status = 0
            return {"status": status, "s": time.perf_counter() - t0}

        bad = [asyncio.create_task(send(b)) for b in hostile]
        await asyncio.sleep(0.3)  # the hostile requests are being tokenised or generated
        results, wall = await load(url, short, clients)
        return {"short": results, "wall": wall, "hostile": await asyncio.gather(*bad)}


def run_hostile(model: Any, tok: Any, step_ms: float, short_n: int) -> dict[str, Any]:
    maximal = [{"prompt": [f"{PROMPTS[i]} {i}" for i in range(64)], "max_tokens": 80, "temperature": 0}]
    huge = [{"prompt": HOSTILE_PROMPT, "max_tokens": 4}] * 4
    out: dict[str, Any] = {}
    handle = model.register_forward_pre_hook(lambda module, args: time.sleep(step_ms / 1000))
    try:
        for mode in ("fair", "fifo"):
            with server(model, tok, fair=mode == "fair") as (url, app):
                asyncio.run(load(url, [{"prompt": "warm", "max_tokens": 2}] * 2, 2))
                for name, hostile in (("maximal request", maximal), ("1.9 MB prompts", huge)):
                    if mode == "fifo" and name == "1.9 MB prompts":
                        continue  # tokenising has no fifo switch: the figure (11.6 s) is the before
                    both = asyncio.run(beside_hostile(url, app, hostile, short_n, 4))
                    s = summary(both["short"], both["wall"])
                    s["hostile_status"] = sorted({h["status"] for h in both["hostile"]})
                    s["hostile_max_s"] = max(h["s"] for h in both["hostile"])
                    out[f"{name} / {mode}"] = s
    finally:
        handle.remove()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer requests (for CI)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 is fastest for tiny models)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--hostile", action="store_true", help="only the hostile-client scenarios (issue 40)")
    ap.add_argument("--step-ms", type=float, default=20.0, help="hostile: added time per forward pass")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, small_n = (48, 8) if args.quick else (192, 24)
    model, tok = tiny_model("2000", PROMPTS)
    if args.hostile:
        return hostile_main(args, model, tok, small_n)
    modes = {m: run_mode(model, tok, m, n, args.clients, args.max_tokens, small_n) for m in MODES}

    def f(x: float | None, unit: str = "") -> str:
        return "-" if x is None else f"{x:.3f}{unit}"

    print(f"{'scenario':<14}{'mode':<15}{'requests':>9}{'ok':>7}{'p50 s':>9}{'p95 s':>9}{'first p50':>11}"
          f"{'req/s':>8}{'huge s':>8}")
    for mode, scen in modes.items():
        for name, s in scen.items():
            rps = "-" if s["requests_per_s"] is None else f"{s['requests_per_s']:.1f}"
            print(f"{name:<14}{mode:<15}{s['requests']:>9}{s['success_rate']:>7.0%}{f(s['p50_s']):>9}"
                  f"{f(s['p95_s']):>9}{f(s['first_event_p50_s']):>11}{rps:>8}{f(s.get('huge_s')):>8}")
    inter, naive = modes["interleaved"]["beside huge"], modes["one at a time"]["beside huge"]
    print(f"small requests beside a 1,000-token one: p95 {f(inter['p95_s'], ' s')} interleaved vs "
          f"{f(naive['p95_s'], ' s')} one at a time (alone: {f(modes['interleaved']['alone']['p95_s'], ' s')})")
    ratio = naive["p95_s"] / inter["p95_s"] if naive["p95_s"] and inter["p95_s"] else None
    write_results(args.json, {"ratio": ratio, "requests": n, "clients": args.clients, "max_tokens": args.max_tokens,
                              "threads": args.threads, "modes": modes})
    return 0


def hostile_main(args: argparse.Namespace, model: Any, tok: Any, short_n: int) -> int:
    res = run_hostile(model, tok, args.step_ms, short_n)
    print(f"{'hostile client / admission':<30}{'short reqs':>11}{'ok':>6}{'p50 s':>8}{'p95 s':>8}"
          f"{'hostile status':>16}{'hostile s':>11}")
    for name, s in res.items():
        p50 = "-" if s["p50_s"] is None else f"{s['p50_s']:.2f}"
        p95 = "-" if s["p95_s"] is None else f"{s['p95_s']:.2f}"
        print(f"{name:<30}{s['requests']:>11}{s['success_rate']:>6.0%}{p50:>8}{p95:>8}"
              f"{','.join(map(str, s['hostile_status'])):>16}{s['hostile_max_s']:>11.2f}")
    fair, fifo = res["maximal request / fair"]["p95_s"], res["maximal request / fifo"]["p95_s"]
    ratio = fifo / fair if fair and fifo else None
    print(f"short requests beside a maximal one: p95 {fair:.2f} s fair vs {fifo:.2f} s fifo; target < 2 s")
    write_results(args.json, {"ratio": ratio, "step_ms": args.step_ms, "short_requests": short_n,
                              "threads": args.threads, "target_p95_s": 2.0, "scenarios": res})
    return 0


if __name__ == "__main__":
    sys.exit(main())
