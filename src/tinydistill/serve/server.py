"""Start a server: load the model, warn when it is reachable beyond loopback, run uvicorn (flags: ``cli/serve.py``)."""

from __future__ import annotations

import errno
import ipaddress
import json
import socket
import sys
from pathlib import Path
from typing import Any

from ..config import RunConfig, StudentConfig, load_config
from ..errors import TinyDistillError
from ..students import is_onnx_export, load_onnx_student, load_student, read_export_meta, saved_student_config
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
    """Load ``model`` and serve it with uvicorn until interrupted (warning first if reachable beyond loopback).
    A multiple-choice student (saved, in a run folder, or exported to ONNX) gets the scoring app. The address is
    bound first: a port in use is one line before a model loads for minutes."""
    name = name or model
    sock = bind_socket(host, port)
    try:
        app, what = _load_app(model, name, revision=revision, dtype=dtype, limits=limits or Limits(),
                              api_key=api_key, max_queue=max_queue,
                              generation={"fault_rate": fault_rate, "fault_seed": fault_seed, "slow_s": slow_s,
                                          "max_batch": max_batch, "max_active": max_active})
    except BaseException:
        sock.close()
        raise
    _run(app, sock, host, port, api_key, what)


def _load_app(model: str, name: str, *, revision: str | None, dtype: str, limits: Limits, api_key: str | None,
              max_queue: int, generation: dict[str, Any]) -> tuple[Any, str]:
    """The app for ``model`` and the line that announces it: the scoring app for a multiple-choice student, else
    the generation app (``generation``: its engine's settings)."""
    choice = load_choice_student(model)
    if choice is not None:
        from .choice_app import create_choice_app

        student, prefix, max_length = choice
        app = create_choice_app(student, model_name=name, prefix=prefix, max_length=max_length, limits=limits,
                                api_key=api_key, max_queue=max_queue)
        return app, f"serving {name} (multiple-choice: /v1/score, /v1/rerank, /v1/choose)"
    from .app import create_app

    model_obj, tokenizer = load_model(model, revision=revision, dtype=dtype)
    app = create_app(model_obj, tokenizer, model_name=name, limits=limits, api_key=api_key, max_queue=max_queue,
                     **generation)
    return app, f"serving {name}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not yet listening; uvicorn listens on it). A port out of range, an
    address that does not resolve or is not this machine's, or a port in use is one line (exit code 2)."""
    if not 0 <= port <= 65535:
        raise TinyDistillError(f"--port {port}: not a TCP port (0 to 65535)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise TinyDistillError(f"--host {host}: not an address of this machine ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = ("another server listens there: stop it or choose another --port" if e.errno == errno.EADDRINUSE
                else "check --host and --port")
        raise TinyDistillError(f"{host}:{port}: cannot listen there ({e.strerror}); {hint}") from None
    sock.set_inheritable(True)
    return sock


def _run(app: Any, sock: socket.socket, host: str, port: int, api_key: str | None, what: str) -> None:
    import uvicorn  # the server's own dependencies (fastapi, uvicorn) load only when a server starts

    if (warning := bind_warning(host, port, api_key)) is not None:
        print(warning, file=sys.stderr)
    key = "required" if api_key else "none"
    print(f"{what} on http://{host}:{port}/v1 (API key: {key})", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        raise TinyDistillError(f"{host}:{port}: the server did not start (see the lines above)")


def load_choice_student(path: str) -> tuple[Any, str, int] | None:
    """A multiple-choice student to serve from ``path`` (an ONNX export, a saved student, or a run folder's
    ``best/``) with its task prefix and input length (from the export or the run's config), else None."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    if is_onnx_export(folder):
        meta = read_export_meta(folder)
        return load_onnx_student(folder), meta.get("answer_prefix", "answer: "), int(meta.get("max_input_length", 256))
    cfg = None
    if (folder / "config.yaml").is_file():  # a run folder: its best student
        cfg, folder = load_config(folder / "config.yaml"), folder / "best"
        if not (folder / "config.json").is_file():
            raise TinyDistillError(f"{path}: no 'best/' student in this run folder yet; train the run first")
    elif (folder.parent / "config.yaml").is_file():
        cfg = load_config(folder.parent / "config.yaml")
    if not (folder / "config.json").is_file():
        return None
    archs = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("architectures") or []
    if not any("MultipleChoice" in a for a in archs):
        return None
    student_cfg = saved_student_config(cfg.student if cfg else StudentConfig(model=str(folder)), folder)
    student = load_student(student_cfg)
    student.model.eval()
    prefix = cfg.answer_prefix if cfg else RunConfig.model_fields["answer_prefix"].default
    return student, prefix, student_cfg.max_input_length
