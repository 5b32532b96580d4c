"""The strategy interface: which strategy a launch gets, and what the single-process one does with a batch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from tinydistill.config.schema import TrainConfig
from tinydistill.errors import ConfigError
from tinydistill.training.parallel import FSDP, Local, strategy_for
from tinydistill.training.parallel.base import Strategy
from tinydistill.training.trainer import make_accelerator


def test_one_process_gets_the_local_strategy_which_takes_every_row_and_reduces_nothing() -> None:
    accelerator = make_accelerator("no")
    strategy = strategy_for(accelerator, TrainConfig(), {"answer"}, "no")
    assert type(strategy) is Local and isinstance(strategy, Strategy)
    rows = [{"answer": f"item{i}"} for i in range(5)]
    share = strategy.share([3, 0, 4], rows)
    assert share.items == [rows[3], rows[0], rows[4]] and share.rows == 3 and not share.borrowed
    assert strategy.sum_values({"loss": 2.0}) == {"loss": 2.0}
    assert strategy.main_only(lambda x: x + 1)(1) == 2

    model = torch.nn.Linear(3, 1)
    student = SimpleNamespace(model=model, new_param_names=set())
    objective = SimpleNamespace(parameters=lambda: [], checkpoint_module=None,
                                terms=lambda s, batch: {"answer": (1.0, s.model(batch["answer"]["x"]).pow(2).mean())})
    strategy.prepare(student, objective, total_steps=4)  # type: ignore[arg-type]
    assert strategy.describe() == {"optimizer_state_share": 1.0, "data_parallel": "none", "parameter_share": 1.0}
    assert strategy.forward({}, share, sync=True) is None  # no rows: nothing to run
    terms = strategy.forward({"answer": {"x": torch.ones(2, 3)}}, share, sync=True)
    assert terms is not None and set(terms) == {"answer"}
    before = model.weight.detach().clone()
    strategy.backward(terms["answer"][1], last_micro_batch=True)
    strategy.reduce_gradients()
    strategy.clip_gradients()
    strategy.optimizer_step()
    assert not torch.equal(model.weight, before) and model.weight.grad is None


def test_fsdp_refuses_optimizer_sharding_and_fp16_it_already_covers(monkeypatch) -> None:
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    fake = SimpleNamespace(distributed_type=DistributedType.MULTI_CPU, num_processes=1)
    with pytest.raises(ConfigError, match="FSDP already shards the optimizer state"):
        strategy_for(fake, TrainConfig(shard_optimizer_state=True), {"answer"}, "no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fp16 is not supported under FSDP"):
        strategy_for(fake, TrainConfig(), {"answer"}, "fp16")  # type: ignore[arg-type]
    assert FSDP.engine_reduces and not Local.engine_reduces
