"""``tinydistill data check PATH | CONFIG.yaml``: validate data (a file, a folder, or a run config's data)."""

from __future__ import annotations

import argparse

from .help import HelpFormatter

HELP = "inspect and validate data"
FORMATS = ["auto", "tinyllm", "json", "jsonl", "csv", "hf"]


def configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_command", metavar="COMMAND")
    check = sub.add_parser("check", help="validate a data file or folder, or a run config's data, and print its "
                                         "counts", description="validate a data file or folder, or a run config's "
                                         "data (read as training reads it), and print its counts",
                           formatter_class=HelpFormatter)
    check.add_argument("path", help="data file, TinyLLM folder, hub name (--format hf), or a run config "
                                    "(.yaml/.yml: its data.train/valid/test with their columns, answer_base, "
                                    "encoding and limit)")
    check.add_argument("--split", default=None, help="split(s) for folders, comma separated (default: all)")
    check.add_argument("--format", default="auto", choices=FORMATS, help="how to read PATH")
    check.add_argument("--columns", default=None, metavar="FIELD=COLUMN,...",
                       help="your column names, e.g. question=prompt,answer=label, or choices=A|B|C|D for one "
                            "column per choice (as data.*.columns)")
    check.add_argument("--answer-base", type=int, choices=[0, 1], default=None,
                       help="numeric answers count choices from 0 or 1 (default: detected, with a warning)")
    check.add_argument("--encoding", default=None, help="text encoding, e.g. cp1252 or latin-1 (default: UTF-8, "
                                                        "or what a byte-order mark names)")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="with a config: dotted override, e.g. data.train.encoding=cp1252 (repeatable)")
    p.set_defaults(print_data_help=p.print_help)


def _columns(text: str | None):
    from ..config import ColumnsConfig
    from ..errors import ConfigError
    if not text:
        return ColumnsConfig()
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ConfigError(f"--columns {text!r}: expected FIELD=COLUMN pairs, e.g. question=prompt,answer=label")
    fields = {k.strip(): v.strip() for k, v in pairs}
    unknown = sorted(set(fields) - set(ColumnsConfig.model_fields))
    if unknown:
        raise ConfigError(f"--columns: unknown field {unknown[0]!r} (one of: "
                          f"{', '.join(ColumnsConfig.model_fields)})")
    if "|" in fields.get("choices", ""):  # one column per choice: choices=A|B|C|D
        return ColumnsConfig(**{**fields, "choices": tuple(c.strip() for c in fields["choices"].split("|"))})
    return ColumnsConfig(**fields)


def handle(args: argparse.Namespace) -> int:
    if args.data_command is None:  # `tinydistill data` alone: what it can do
        args.print_data_help()
        return 0
    from ..config import check_paths, load_config
    from ..data import check_config_data, check_data
    from ..errors import ConfigError
    if args.path.lower().endswith((".yaml", ".yml")):
        if args.columns or args.answer_base is not None or args.encoding or args.split:
            raise ConfigError("data check CONFIG: --columns, --answer-base, --encoding and --split are the "
                              "config's (data.*); change them there or with --set")
        cfg = load_config(args.path, args.overrides)
        check_paths(cfg, args.path, data_only=True)
        check_config_data(cfg, f"{args.path} (data as training reads it)")
        return 0
    if args.overrides:
        raise ConfigError("data check: --set needs a run config (CONFIG.yaml) as PATH")
    check_data(args.path, split=args.split, fmt=args.format, columns=_columns(args.columns),
               answer_base=args.answer_base, encoding=args.encoding)
    return 0
