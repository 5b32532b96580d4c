"""``tinydistill search``: hyperparameter search with optuna, each trial an ordinary run.

A search space (YAML) maps dotted config keys to distributions::

    train.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}
    train.batch_size: {type: categorical, choices: [8, 16]}
    teachers.0.alpha_rationale: {type: uniform, low: 0.1, high: 1.0}
    train.epochs: {type: int, low: 1, high: 4}

Trial ``n`` is the run ``<study-dir>/trial_<n>/`` (the config with the sampled values as overrides); its
objective is the selected student's valid ``train.select_metric``, and each in-training valid evaluation is
reported to the pruner. The study lives in ``<study-dir>/study.db`` (SQLite): running the same command again
continues it — ``--trials`` is the total of finished trials — and a trial cut off mid-run resumes from its
checkpoint with the same parameters. Outputs: ``best_config.yaml``, ``trials.md``, ``trials.json``,
``history.png``. One search process per study.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import RunConfig, apply_overrides, config_from_dict, dump_config, load_config, read_yaml, yaml_key_lines
from ..errors import ConfigError, TinyDistillError
from ..files import read_jsonl, write_json_atomic
from ..run import run

# optuna and matplotlib are imported inside the functions that use them: heavy imports that only a search
# (and its plot) pays, not every `tinydistill` command

DIST_TYPES = ("uniform", "loguniform", "int", "categorical")
_FIELDS = {"uniform": {"low", "high"}, "loguniform": {"low", "high"}, "int": {"low", "high", "step", "log"},
           "categorical": {"choices"}}


def _bound(value: float | None) -> float:
    """A numeric distribution's bound (``_FIELDS`` makes both present before a ``Dist`` is built)."""
    assert value is not None
    return value


@dataclass(frozen=True)
class Dist:
    """One key's distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    step: int = 1
    log: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        if self.type == "uniform":
            return trial.suggest_float(self.key, self.low, self.high)
        if self.type == "loguniform":
            return trial.suggest_float(self.key, self.low, self.high, log=True)
        if self.type == "int":
            low, high = int(_bound(self.low)), int(_bound(self.high))
            return trial.suggest_int(self.key, low, high, step=self.step, log=self.log)
        return trial.suggest_categorical(self.key, list(self.choices))

    def example(self) -> Any:
        """A value inside the space (used to check the key against the config before any trial)."""
        if self.type == "categorical":
            return self.choices[0]
        return int(_bound(self.low)) if self.type == "int" else self.low


# -------------------------------------------------------------------------------------------------- space
def _dist(key: str, spec: Any, fail: Callable[[str], ConfigError]) -> Dist:
    if not isinstance(spec, dict) or "type" not in spec:
        raise fail("expected a mapping with 'type' (uniform | loguniform | int | categorical)")
    kind = spec["type"]
    if kind not in DIST_TYPES:
        raise fail(f"unknown type {kind!r}; expected one of {', '.join(DIST_TYPES)}")
    extra = set(spec) - _FIELDS[kind] - {"type"}
    if extra:
        raise fail(f"unknown field(s) {sorted(extra)} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise fail("categorical needs a non-empty list 'choices'")
        if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            raise fail("choices must be numbers, strings, booleans or null")
        return Dist(key, kind, choices=tuple(choices))
    for f in ("low", "high"):
        v = spec.get(f)
        if isinstance(v, str):  # YAML reads 1e-5 (no dot) as a string
            try:
                spec = {**spec, f: float(v)}
            except ValueError:
                raise fail(f"'{f}' must be a number, got {v!r}") from None
        elif not isinstance(v, int | float) or isinstance(v, bool):
            raise fail(f"'{f}' must be a number")
    low, high = float(spec["low"]), float(spec["high"])
    if not low < high:
        raise fail(f"low ({spec['low']}) must be below high ({spec['high']})")
    if kind == "loguniform" and low <= 0:
        raise fail("loguniform needs low > 0")
    if kind == "int":
        if low != int(low) or high != int(high):
            raise fail("int bounds must be integers")
        step = spec.get("step", 1)
        if not isinstance(step, int) or step < 1:
            raise fail("'step' must be a positive integer")
        return Dist(key, kind, low, high, step=step, log=bool(spec.get("log", False)))
    return Dist(key, kind, low, high)


def load_space(path: str | Path) -> list[Dist]:
    """Read a search space; every error names the file, the line and the key."""
    path = Path(path)
    raw, text = read_yaml(path, "search space")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of dotted config keys to distributions")
    lines = yaml_key_lines(text)
    out = []
    for key, spec in raw.items():
        line = lines.get((str(key),))

        def fail(msg: str, key: str = str(key), line: int | None = line) -> ConfigError:
            return ConfigError(f"{path}{f':{line}' if line else ''}: {key}: {msg}")

        out.append(_dist(str(key), spec, fail))
    return out


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def trial_config(raw: Mapping[str, Any], params: Mapping[str, Any], *, study_dir: Path, name: str,
                 source: str = "<search>") -> RunConfig:
    """The run config of one trial: ``raw`` with ``params`` set, named ``name`` under ``study_dir``."""
    over = [_override(k, v) for k, v in params.items()]
    over += [_override("output_dir", str(study_dir)), _override("name", name)]
    return config_from_dict(apply_overrides(dict(raw), over), source)


def check_space(raw: Mapping[str, Any], space: Sequence[Dist], space_path: str | Path, study_dir: Path) -> None:
    """Fail before any trial if a key does not exist or a value of its space is refused by the config."""
    lines = yaml_key_lines(Path(space_path).read_text(encoding="utf-8"))
    for d in space:
        values = list(d.choices) if d.type == "categorical" else [d.example(), int(_bound(d.high)) if d.type == "int"
                                                                   else d.high]
        for v in values:
            try:
                trial_config(raw, {d.key: v}, study_dir=study_dir, name="check")
            except ConfigError as e:
                line = lines.get((d.key,))
                msg = str(e).removeprefix("<search>: ")
                raise ConfigError(f"{space_path}{f':{line}' if line else ''}: {d.key}: value {v!r} is refused: "
                                  f"{msg}") from None


# ------------------------------------------------------------------------------------------------- study
def _metric_value(cfg: RunConfig, outcome: Any) -> float:
    """The selected student's valid value of ``select_metric`` (else the best in-training evaluation)."""
    key = cfg.train.select_metric
    value = outcome.valid.metrics.get(key)
    if value is None:

        evals = [m[key] for m in read_jsonl(cfg.run_dir / "metrics.jsonl") if m.get("split") == "valid" and key
                 in m]
        if not evals:
            raise ConfigError(f"{cfg.run_dir}: no valid {key} was measured; choose another train.select_metric")
        value = min(evals) if key == "valid_loss" else max(evals)
    return float(value)


def _sampler(name: str, seed: int) -> Any:
    import optuna

    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    raise ConfigError(f"--sampler {name!r}: expected random or tpe")


def _pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"--pruner {name!r}: expected median or none")


def _resume_interrupted(study: Any) -> int:
    """Trials left RUNNING by a dead process or FAILed by Ctrl-C: mark failed, enqueue the same parameters so
    the next trial resumes their run folder. Returns how many were enqueued."""
    from optuna.trial import TrialState

    done = set(study.user_attrs.get("requeued", []))
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.FAIL)):
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not t.user_attrs.get("interrupted"):
            continue  # a failed trial (bad combination) is not retried
        if t.number in done:
            continue
        folder = t.user_attrs.get("run_name", f"trial_{t.number}")
        study.enqueue_trial(t.params, user_attrs={"run_name": folder}, skip_if_exists=False)
        done.add(t.number)
        n += 1
    if n:
        study.set_user_attr("requeued", sorted(done))
    return n


def run_search(config: str | Path, space_path: str | Path, *, trials: int, sampler: str = "random",
               pruner: str = "median", study_dir: str | Path | None = None, overrides: Sequence[str] = (),
               progress: bool = False, log: Callable[[str], None] = print) -> dict:
    """Run (or continue) a study until it holds ``trials`` finished (complete or pruned) trials and write the
    outputs. Returns ``trials.json``'s content plus ``study_dir``."""
    import optuna
    from optuna.trial import TrialState


    if trials < 1:
        raise ConfigError(f"--trials {trials}: must be at least 1")
    base = load_config(config, list(overrides))
    raw = apply_overrides(read_yaml(config)[0], list(overrides))
    space = load_space(space_path)
    study_dir = Path(study_dir) if study_dir is not None else default_study_dir(base)
    check_space(raw, space, space_path, study_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction: Literal["minimize", "maximize"] = "minimize" if base.train.select_metric == "valid_loss" else "maximize"
    storage = optuna.storages.RDBStorage(f"sqlite:///{study_dir.resolve() / 'study.db'}")
    try:
        study = optuna.create_study(study_name=base.name, storage=storage, load_if_exists=True, direction=direction,
                                    sampler=_sampler(sampler, base.seed), pruner=_pruner(pruner))
    except ValueError as e:
        raise ConfigError(f"{study_dir}/study.db: {e}") from None
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    requeued = _resume_interrupted(study)
    n_done = len(study.get_trials(deepcopy=False, states=finished))
    # a resumed study draws new values: the sampler's seed moves on with the number of trials so far
    study.sampler = _sampler(sampler, base.seed + len(study.trials))
    if requeued:
        log(f"[search] {requeued} interrupted trial(s) will resume with their parameters")

    def objective(trial: Any) -> float:
        params = {d.key: d.suggest(trial) for d in space}
        name = trial.user_attrs.get("run_name") or f"trial_{trial.number}"
        trial.set_user_attr("run_name", name)
        cfg = trial_config(raw, params, study_dir=study_dir, name=name, source=str(config))
        log(f"[search] trial {trial.number} ({name}): " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()))

        def on_valid(step: int, record: dict) -> None:
            value = record.get(cfg.train.select_metric)
            if value is None:
                return
            trial.report(float(value), step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} ({cfg.train.select_metric} {value:.4f})")

        try:
            outcome = run(cfg, progress=progress, log=lambda *_: None, on_valid=on_valid)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        value = _metric_value(cfg, outcome)
        log(f"[search] trial {trial.number}: {cfg.train.select_metric} {value:.4f}")
        return value

    remaining = trials - n_done
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(TinyDistillError,),
                       callbacks=[optuna.study.MaxTrialsCallback(trials, states=finished)])
    else:
        log(f"[search] the study already holds {n_done} finished trials (--trials {trials})")
    return {**write_search_outputs(study, raw, study_dir, base), "study_dir": str(study_dir)}


def default_study_dir(cfg: RunConfig) -> Path:
    return Path(cfg.output_dir) / f"{cfg.name}-search"


# ------------------------------------------------------------------------------------------------ outputs
def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def trials_table(study: Any) -> list[dict]:
    """One row per trial: number, state, value, parameters, run folder, seconds."""
    rows = []
    for t in study.trials:
        secs = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete and t.datetime_start \
            else None
        rows.append({"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                     "run": t.user_attrs.get("run_name"), "last_step": max(t.intermediate_values, default=None),
                     "seconds": round(secs, 1) if secs is not None else None})
    return rows


def trials_markdown(rows: Sequence[dict], keys: Sequence[str], metric: str, best: int | None) -> str:
    head = ["trial", "state", metric, *keys, "run", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = " ★" if r["number"] == best else ""
        value = "–" if r["value"] is None else f"{r['value']:.4f}"
        lines.append("| " + " | ".join([f"{r['number']}{mark}", r["state"], value,
                                        *[_fmt(r["params"].get(k, "–")) for k in keys], str(r["run"]),
                                        "–" if r["seconds"] is None else f"{r['seconds']:.0f}"]) + " |")
    return "\n".join(lines)


def plot_history(rows: Sequence[dict], out: Path, metric: str, minimize: bool) -> Path | None:
    """Each complete trial's value and the best so far, against the trial number."""
    done = [(r["number"], r["value"]) for r in rows if r["state"] == "complete" and r["value"] is not None]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best, running = [], math.inf if minimize else -math.inf
    for _, v in done:
        running = min(running, v) if minimize else max(running, v)
        best.append(running)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([n for n, _ in done], [v for _, v in done], "o", label="trial")
    ax.step([n for n, _ in done], best, where="post", color="k", label="best so far")
    pruned = [r["number"] for r in rows if r["state"] == "pruned"]
    if pruned:
        ax.plot(pruned, [min(v for _, v in done)] * len(pruned), "x", color="grey", label="pruned")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"valid {metric}")
    ax.set_title("optimisation history")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write_search_outputs(study: Any, raw: Mapping[str, Any], study_dir: Path, base: RunConfig) -> dict:
    """``trials.json``, ``trials.md``, ``history.png`` and (once a trial completed) ``best_config.yaml``."""
    from optuna.trial import TrialState

    rows = trials_table(study)
    keys = sorted({k for r in rows for k in r["params"]})
    metric = base.train.select_metric
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    result = {"study": study.study_name, "direction": study.direction.name.lower(), "metric": metric,
              "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                                 "run": best.user_attrs.get("run_name")},
              "trials": rows}
    write_json_atomic(study_dir / "trials.json", result)
    text = [f"# Search `{study.study_name}` ({len(rows)} trials, {metric}, {result['direction']})", ""]
    if best is not None:
        text += [f"Best: trial {best.number}, valid {metric} {best.value:.4f}, "
                 + ", ".join(f"`{k}={_fmt(v)}`" for k, v in best.params.items()) + " (`best_config.yaml`).", ""]
        cfg = trial_config(raw, best.params, study_dir=Path(base.output_dir), name=f"{base.name}-best")
        (study_dir / "best_config.yaml").write_text(dump_config(cfg))
    text += [trials_markdown(rows, keys, metric, best.number if best else None), ""]
    if plot_history(rows, study_dir / "history.png", metric, study.direction.name == "MINIMIZE"):
        text += ["![history](history.png)", ""]
    (study_dir / "trials.md").write_text("\n".join(text))
    return result


def best_line(result: Mapping[str, Any]) -> str:
    """The line ``tinydistill search`` prints for a study with a best trial."""
    best, folder = result["best"], result["study_dir"]
    return (f"{len(result['trials'])} trials; best trial {best['number']}: valid {result['metric']} "
            f"{best['value']:.4f} with " + ", ".join(f"{k}={_fmt(v)}" for k, v in best["params"].items()) +
            f"; wrote {folder}/best_config.yaml, trials.md, history.png")
