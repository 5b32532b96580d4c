"""``tinydistill serve MODEL``: the flags of the OpenAI-compatible server (:mod:`tinydistill.serve.server`)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

from ..serve import API_KEY_ENV, Limits

HELP = "serve a local model over an OpenAI-compatible HTTP API"


def _positive(kind: type) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def configure(p: argparse.ArgumentParser) -> None:
    d = Limits()
    pos_int, pos_float = _positive(int), _positive(float)
    p.add_argument("model", help="HF model name or local folder (seq2seq, encoder-decoder or causal); a "
                                 "multiple-choice student, its run folder or its ONNX export gets the scoring routes")
    p.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default loopback only; 0.0.0.0 exposes it, with a warning)")
    p.add_argument("--api-key", default=None,
                   help=f"require 'Authorization: Bearer KEY' on every route (default: ${API_KEY_ENV}, if set)")
    p.add_argument("--name", default=None, help="model id reported by /v1/models (default: MODEL)")
    p.add_argument("--revision", default=None, help="model revision (branch, tag or commit) of a hub MODEL")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="weights' dtype (auto: the checkpoint's)")
    g = p.add_argument_group("limits (a request over one gets an OpenAI-shaped 4xx)")
    g.add_argument("--max-tokens-limit", type=pos_int, default=d.max_tokens,
                   help="most max_tokens a request may ask for (also capped by the model's positions)")
    g.add_argument("--max-prompt-tokens", type=pos_int, default=d.max_prompt_tokens,
                   help="longer prompts are refused (400)")
    g.add_argument("--max-input-tokens", type=pos_int, default=None,
                   help="prompts are cut from the left to this (default: the model's positions)")
    g.add_argument("--max-n", type=pos_int, default=d.max_n, help="most choices (n) per request")
    g.add_argument("--max-body-mb", type=pos_float, default=d.max_body_bytes / 2**20,
                   help="larger request bodies get 413")
    g.add_argument("--request-timeout", type=pos_float, default=d.request_timeout_s,
                   help="seconds a request may generate; then it returns what it has (finish_reason length)")
    g.add_argument("--stall-s", type=pos_float, default=d.stall_s,
                   help="/health answers 503 after this many seconds without a generation step while work waits")
    g = p.add_argument_group("scheduling")
    g.add_argument("--max-batch", type=pos_int, default=16, help="requests arriving together are prefilled as one")
    g.add_argument("--max-active", type=pos_int, default=64,
                   help="rows one request may generate at once (a quarter more are kept for other requests); "
                        "more wait in a queue, started one request at a time in turn")
    g.add_argument("--max-queue", type=pos_int, default=1024, help="rows waiting; beyond it requests get 429")
    g = p.add_argument_group("fault injection (to test clients)")
    g.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered 429/500/slow")
    g.add_argument("--fault-seed", type=int, default=0, help="seed of which requests get an injected fault")
    g.add_argument("--slow-s", type=float, default=0.5, help="delay of a 'slow' injected fault")


def handle(args: argparse.Namespace) -> int:
    """Load MODEL and serve it with uvicorn until interrupted."""
    from ..serve import serve
    limits = Limits(
        max_tokens=args.max_tokens_limit,
        max_prompt_tokens=args.max_prompt_tokens,
        max_input_tokens=args.max_input_tokens,
        max_n=args.max_n,
        max_body_bytes=int(args.max_body_mb * 2**20),
        request_timeout_s=args.request_timeout,
        stall_s=args.stall_s,
    )
    serve(args.model, host=args.host, port=args.port, api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
          name=args.name, revision=args.revision, dtype=args.dtype, limits=limits, fault_rate=args.fault_rate,
          fault_seed=args.fault_seed, slow_s=args.slow_s, max_batch=args.max_batch, max_active=args.max_active,
          max_queue=args.max_queue)
    return 0
