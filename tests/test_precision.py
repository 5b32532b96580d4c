"""train.mixed_precision: ``auto`` (the default) resolves per device; the model card names what was used."""

from __future__ import annotations

import pytest
import torch

from tinydistill.config.precision import autocast_dtype, effective_precision
from tinydistill.config.schema import TrainConfig
from tinydistill.evaluation.model_card import _precision


def _cuda(monkeypatch, available: bool, bf16: bool, cpu_bf16: bool = False) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: cpu_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)


def test_auto_is_the_default_and_yaml_no_still_means_fp32():
    assert TrainConfig().mixed_precision == "auto"
    assert TrainConfig(mixed_precision=False).mixed_precision == "no"
    with pytest.raises(ValueError):
        TrainConfig(mixed_precision="fp8")


@pytest.mark.parametrize(("available", "bf16", "asked", "used"), [
    (False, False, "auto", "no"),  # a CPU that emulates bf16: fp32 (faster than bf16 autocast there)
    (False, True, "auto", "bf16"),  # a CPU with AVX512-BF16
    (True, True, "auto", "bf16"),
    (True, False, "auto", "no"),  # fp16 only when asked for
    (False, False, "bf16", "bf16"),
    (False, False, "fp16", "bf16"),  # no CUDA: fp16 falls back to bf16
    (True, True, "fp16", "fp16"),
    (True, True, "no", "no"),
])
def test_effective_precision(monkeypatch, available, bf16, asked, used):
    _cuda(monkeypatch, available, bf16 and available, cpu_bf16=bf16 and not available)
    assert effective_precision(asked) == used
    assert autocast_dtype(asked) == {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[used]


def test_model_card_names_the_precision_used():
    assert _precision({"mixed_precision": "auto"}, {"precision": "no"}) == "fp32 (auto)"
    assert _precision({"mixed_precision": "auto"}, {"precision": "bf16"}) == "bf16 autocast (auto)"
    assert _precision({"mixed_precision": "bf16"}, {"precision": "bf16"}) == "bf16"
    assert _precision({"mixed_precision": "no"}, {}) == "no"  # an older summary without the field


@pytest.mark.parametrize("cpu_bf16", [True, False])
def test_a_cell_finished_under_the_old_defaults_counts_where_auto_runs_the_same(tmp_path, monkeypatch, cpu_bf16):
    """reproduce: a cell whose config.yaml holds ``mixed_precision: bf16`` / ``prefix_side: encoder`` (the defaults
    before ``auto``) is the same protocol where ``auto`` resolves to those values, and only there."""
    import yaml

    from tinydistill.config.loader import config_from_dict, dump_config
    from tinydistill.errors import ConfigError
    from tinydistill.study.configs import check_same_protocol
    from tinydistill.study.suites import Cell, table1_variants

    _cuda(monkeypatch, False, False, cpu_bf16=cpu_bf16)
    data = {"train": {"path": str(tmp_path)}, "valid": {"path": str(tmp_path)}}
    cfg = config_from_dict({"data": data, "student": {"architecture": "multiple_choice"}})
    assert (cfg.train.mixed_precision, cfg.student.prefix_side) == ("auto", "auto")
    cell = Cell("table1", "toy", table1_variants(["finetune"])[0], 0, tmp_path / "cell")
    cell.run_dir.mkdir()
    older = yaml.safe_load(dump_config(cfg))
    older["student"]["prefix_side"] = "encoder"
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    check_same_protocol(cell, cfg)  # a choice student reads the prefix in its input either way
    older["train"]["mixed_precision"] = "bf16"
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    if cpu_bf16:
        check_same_protocol(cell, cfg)
    else:  # auto trains in fp32 here: not what the cell did
        with pytest.raises(ConfigError, match="different settings"):
            check_same_protocol(cell, cfg)
    seq2seq = config_from_dict({"data": data, "student": {"architecture": "seq2seq"}})
    older["student"]["architecture"], older["train"]["mixed_precision"] = "seq2seq", "auto"
    (cell.run_dir / "config.yaml").write_text(yaml.safe_dump(older))
    with pytest.raises(ConfigError, match="different settings"):  # auto puts a seq2seq student's on the decoder
        check_same_protocol(cell, seq2seq)
