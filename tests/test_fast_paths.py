"""The CPU's fast paths keep their library's behaviour: the networks' dropout
(16-bit masks) keeps nn.Dropout's rate, scale, gradient and evaluation
behaviour and follows the seed; the fused optimizer takes torch's default's
steps, and a setting the config chose is kept."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moa_lit.models.heads import Dropout
from moa_lit.training.module import new_optimizer


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
def test_cpu_dropout_keeps_nn_dropouts_rate_scale_and_gradient(p):
    torch.manual_seed(0)
    x = (torch.rand(301, 1001) + 0.5).requires_grad_()  # odd size: the last 16-bit half unused
    layer = Dropout(p).train()
    out = layer(x)
    kept = out != 0
    n = x.numel()
    assert abs(1 - kept.float().mean().item() - p) < 5 * (p * (1 - p) / n) ** 0.5
    torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    out.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / (1 - p))
    # Neighbouring values are dropped independently (the two halves of one draw).
    flat = kept.flatten().float()
    both = (flat[0 : n - 1 : 2] * flat[1:n:2]).mean().item()
    assert abs(both - (1 - p) ** 2) < 0.01


def test_cpu_dropout_follows_the_seed_and_mode():
    x = torch.randn(64, 128, 3)  # any shape, as nn.Dropout
    layer = Dropout(0.3).train()
    torch.manual_seed(5)
    first = layer(x)
    torch.manual_seed(5)
    assert torch.equal(layer(x), first)
    assert not torch.equal(layer(x), first)  # the generator moved on
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert isinstance(layer, nn.Dropout) and str(layer) == "Dropout(p=0.3, inplace=False)"


@pytest.mark.parametrize("target", ["torch.optim.Adam", "torch.optim.AdamW", "torch.optim.SGD"])
def test_optimizer_is_fused_where_torch_can_and_takes_the_same_steps(target):
    config = {"_target_": target, "lr": 1e-2, "weight_decay": 1e-4}
    torch.manual_seed(0)
    start = [torch.randn(33, 17), torch.randn(17)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    trajectories = []
    for chosen in ({}, {"fused": False}):
        params = [torch.nn.Parameter(p.clone()) for p in start]
        optimizer = new_optimizer({**config, **chosen}, params)
        assert optimizer.defaults["fused"] is (not chosen)  # the config's own choice is kept
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            optimizer.step()
        trajectories.append([p.detach() for p in params])
    for fused, default in zip(*trajectories):
        torch.testing.assert_close(fused, default, rtol=1e-5, atol=1e-6)
    assert not new_optimizer({**config, "foreach": True}, [torch.nn.Parameter(start[0].clone())]).defaults["fused"]
