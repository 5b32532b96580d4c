"""Multi-stage runs: each stage has its own data and method and starts from the previous stage's best student.

Stage ``k`` of run ``name`` lives in ``runs/<name>/stage-<k>-<label>/`` (a complete run folder of its own).
Scaling Down's commonsense pipeline is the example: stage 1 fine-tunes on Winograd (pronoun resolution),
stage 2 distils from a white-box teacher on SocialIQA, starting from stage 1's best checkpoint.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .config import RunConfig, dump_config
from .files import write_json_atomic

if TYPE_CHECKING:
    from .run import RunOutcome

BEST_DIR = "best"


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ValueError(f"set: {key}: {p!r} is not a section")
    node[parts[-1]] = value


def stage_configs(cfg: RunConfig) -> list[RunConfig]:
    """One complete :class:`RunConfig` per stage: the base config with the stage's data, method and ``set``."""
    base = cfg.model_dump(mode="json")
    base.pop("stages")
    out: list[RunConfig] = []
    for k, stage in enumerate(cfg.stages, start=1):
        raw = copy.deepcopy(base)
        raw["name"], raw["output_dir"] = f"stage-{k}-{stage.label}", str(cfg.run_dir)
        if stage.method is not None:
            raw["method"] = stage.method
        if stage.data is not None:
            raw["data"] = stage.data.model_dump(mode="json")
        for key, value in stage.set.items():
            if key.split(".")[0] in ("stages", "name", "output_dir"):
                raise ValueError(f"stages.{k - 1}.set: {key!r} cannot be set per stage")
            _set_dotted(raw, key, value)
        if out:  # start from the previous stage's best student, already cut to size
            prev = out[-1]
            if prev.method == "lora" and prev.lora.save == "adapter":
                raise ValueError(f"stages.{k - 1}: the stage before it saves a LoRA adapter; "
                                 f"set lora.save: merged so the next stage can start from it")
            raw["student"].update(model=str(prev.run_dir / BEST_DIR), architecture="auto", layers=None,
                                  num_layers=None, config_overrides={})
        try:
            out.append(RunConfig.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"stages.{k - 1} ({stage.label}): {loc}: {err['msg']}") from None
    return out


def run_stages(cfg: RunConfig, *, progress: bool = True, stop_after_steps: int | None = None,
               log=print) -> list[RunOutcome]:
    """Run every stage in order (each resumes on its own); write ``runs/<name>/stages.json``."""
    from .run import run

    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    (cfg.run_dir / "config.yaml").write_text(dump_config(cfg))
    outcomes, summary = [], []
    for k, stage_cfg in enumerate(stage_configs(cfg), start=1):
        log(f"[{cfg.name}] stage {k}/{len(cfg.stages)}: {stage_cfg.name} (method {stage_cfg.method}, "
            f"from {stage_cfg.student.model})")
        outcome = run(stage_cfg, progress=progress, stop_after_steps=stop_after_steps, log=log)
        outcomes.append(outcome)
        summary.append({"stage": stage_cfg.name, "method": stage_cfg.method, "student": stage_cfg.student.model,
                        "valid": {k2: v for k2, v in outcome.valid.metrics.items() if isinstance(v, int | float)}})
        write_json_atomic(cfg.run_dir / "stages.json", summary)
    return outcomes
