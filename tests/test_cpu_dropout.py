"""The four-lane CPU dropout: PyTorch's estimator (drop rate p per element, kept ones scaled by 1/(1-p)), its
gradient, seeding, and the scoped swap of ``torch.nn.functional.dropout`` that the training forward uses."""

import torch
import torch.nn.functional as F
from torch import nn

from tinydistill.training.cpu_dropout import cpu_dropout, fast_dropout, keep_scale


def test_each_lane_drops_p_of_its_elements_and_the_mean_is_kept():
    torch.manual_seed(0)
    p = 0.1
    scale = keep_scale((1 << 20,), p, torch.float32)
    dropped_per_lane = (scale.view(-1, 4) == 0).float().mean(0)  # the four 16-bit lanes of one 64-bit draw
    assert torch.allclose(dropped_per_lane, torch.full((4,), p), atol=0.003), dropped_per_lane
    assert set(torch.unique(scale).tolist()) == {0.0, scale.max().item()}
    assert abs(scale.max().item() - 1 / (1 - p)) < 1e-4
    assert abs(scale.mean().item() - 1.0) < 0.005
    # neighbouring elements are independent: P(both dropped) = p²
    pairs = scale.view(-1, 2) == 0
    assert abs((pairs[:, 0] & pairs[:, 1]).float().mean().item() - p * p) < 0.002


def test_other_rates_odd_sizes_and_shapes():
    torch.manual_seed(1)
    out = fast_dropout(torch.ones(3, 5, 7, 1001), p=0.5)
    assert out.shape == (3, 5, 7, 1001)
    assert abs((out == 0).float().mean().item() - 0.5) < 0.01
    assert set(torch.unique(out).tolist()) == {0.0, 2.0}


def test_gradient_is_the_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    out = fast_dropout(x, p=0.2)
    out.sum().backward()
    kept = out.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.8))
    assert (x.grad[~kept] == 0).all()
    assert torch.allclose(out.detach()[kept], x.detach()[kept] / 0.8)


def test_seeded_like_torch_and_identity_when_not_training():
    x = torch.randn(10, 100)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.1)
    torch.manual_seed(3)
    b = fast_dropout(x, 0.1)
    assert torch.equal(a, b)
    assert not torch.equal(a, fast_dropout(x, 0.1))
    assert torch.equal(fast_dropout(x, 0.1, training=False), x)
    assert torch.equal(fast_dropout(x, 0.0), x)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    y = x.clone()
    assert fast_dropout(y, 0.3, inplace=True) is y and (y == 0).any()


def test_the_swap_reaches_modules_and_is_undone():
    original = F.dropout
    layer = nn.Dropout(0.25).train()
    with cpu_dropout(torch.device("cpu")):
        assert F.dropout is fast_dropout
        torch.manual_seed(4)
        inside = layer(torch.ones(4096))
        torch.manual_seed(4)
        assert torch.equal(inside, fast_dropout(torch.ones(4096), 0.25))
    assert F.dropout is original
    with cpu_dropout(torch.device("cuda")):  # GPUs keep the fused kernel
        assert F.dropout is original
    try:
        with cpu_dropout(torch.device("cpu")):
            raise KeyError
    except KeyError:
        pass
    assert F.dropout is original


def test_a_training_run_draws_its_dropout_masks_here(tmp_path, tiny_bert_dir, monkeypatch):
    """The training forward of a real run (a choice student with attention dropout) goes through the swap."""
    from tests.test_reproduce import choice_config, tinyllm_folder
    from tinydistill.config.loader import config_from_dict
    from tinydistill.run import run
    from tinydistill.training import cpu_dropout as module

    shapes: list[tuple[int, ...]] = []
    real = module.keep_scale

    def counting(shape, p, dtype):
        shapes.append(tuple(shape))
        return real(shape, p, dtype)

    monkeypatch.setattr(module, "keep_scale", counting)
    raw = choice_config(tiny_bert_dir, tinyllm_folder(tmp_path), tmp_path / "runs")
    raw["data"]["train"]["limit"] = 16
    raw["student"]["attention_dropout"] = 0.3
    raw["student"]["attn_implementation"] = "eager"  # SDPA drops inside its own kernel
    raw["train"]["epochs"] = 1
    run(config_from_dict(raw), progress=False, log=lambda _: None)
    assert shapes and all(len(s) == 4 for s in shapes)  # (batch·choices, heads, L, L): the attention masks
    assert F.dropout is module._torch_dropout  # restored after the run
