"""Start a server: load the model, warn when it is reachable beyond loopback, run uvicorn (flags: ``cli/serve.py``)."""

from __future__ import annotations

import ipaddress
import sys

from ..teachers import load_model
from .limits import API_KEY_ENV, Limits


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name, or "" (every interface)


def bind_warning(host: str, port: int, api_key: str | None) -> str | None:
    """The warning printed when the server is reachable from other machines, else None."""
    if is_loopback(host):
        return None
    open_to = "anyone who can reach it" if not api_key else "other machines (API key required)"
    hint = "" if api_key else f"; set --api-key or {API_KEY_ENV} to require a key"
    return f"warning: serving on {host or '*'}:{port}, reachable by {open_to}{hint}"


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
          name: str | None = None, revision: str | None = None, dtype: str = "auto", limits: Limits | None = None,
          fault_rate: float = 0.0, fault_seed: int = 0, slow_s: float = 0.5, max_batch: int = 16,
          max_active: int = 64, max_queue: int = 1024) -> None:
    """Load ``model`` and serve it with uvicorn until interrupted (warning first if reachable beyond loopback)."""
    import uvicorn  # the server's own dependencies (fastapi, uvicorn) load only when a server starts

    from .app import create_app

    model_obj, tokenizer = load_model(model, revision=revision, dtype=dtype)
    name = name or model
    app = create_app(
        model_obj,
        tokenizer,
        model_name=name,
        limits=limits or Limits(),
        api_key=api_key,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        slow_s=slow_s,
        max_batch=max_batch,
        max_active=max_active,
        max_queue=max_queue,
    )
    if (warning := bind_warning(host, port, api_key)) is not None:
        print(warning, file=sys.stderr)
    key = "required" if api_key else "none"
    print(f"serving {name} on http://{host}:{port}/v1 (API key: {key})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
