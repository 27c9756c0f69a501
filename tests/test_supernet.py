"""Supernet: single-path forward, gradients only on the path, extraction, BN recalibration."""

from __future__ import annotations

import random

import torch

from hurricane.arch import SearchSpace
from hurricane.backbone import Layout
from hurricane.spec import BackboneSpec
from hurricane.supernet import Network, Supernet, recalibrate_bn

OPS = ("SEP_3", "MB_3_3_SE", "Choice_5", "ChoiceX")


def _net() -> tuple[Supernet, SearchSpace]:
    layout = Layout.from_spec(BackboneSpec(input_size=32, num_classes=5, layers_per_stage=(1, 2),
                                           stage_channels=(16, 32), stem_channels=8,
                                           head_channels=32))
    space = SearchSpace.uniform(OPS, layout.num_layers)
    torch.manual_seed(0)
    return Supernet(layout, space), space


def test_only_the_sampled_path_gets_gradients() -> None:
    net, space = _net()
    arch = space.sample(random.Random(0))
    net(torch.randn(4, 3, 32, 32), arch).sum().backward()
    on_path = {id(p) for p in net.path_parameters(arch)}
    for p in net.parameters():
        assert (p.grad is not None) == (id(p) in on_path)


def test_unsampled_paths_are_untouched_by_sgd() -> None:
    net, space = _net()
    arch = space.sample(random.Random(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(2):
        opt.zero_grad(set_to_none=True)
        net(torch.randn(4, 3, 32, 32), arch).sum().backward()
        opt.step()
    on_path = {id(p) for p in net.path_parameters(arch)}
    path = {n for n, p in net.named_parameters() if id(p) in on_path}
    for name, p in net.named_parameters():
        changed = not torch.equal(before[name], p.detach())
        assert changed == (name in path), name


def test_extracted_network_matches_the_supernet_path() -> None:
    net, space = _net()
    x = torch.randn(8, 3, 32, 32)
    for seed in range(3):
        arch = space.sample(random.Random(seed))
        recalibrate_bn(net, [torch.randn(16, 3, 32, 32) for _ in range(2)], arch=arch)
        net.eval()
        child = net.extract(arch).eval()
        assert isinstance(child, Network) and child.arch == arch
        torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)
        n_child = sum(p.numel() for p in child.parameters())
        assert n_child == sum(p.numel() for p in net.path_parameters(arch))


def test_bn_recalibration_sets_exact_batch_statistics() -> None:
    net, space = _net()
    arch = space.sample(random.Random(0))
    batches = [torch.randn(16, 3, 32, 32) * 3 + 1 for _ in range(3)]
    recalibrate_bn(net, batches, arch=arch)
    stem_bn = net.stem[1]
    with torch.no_grad():
        feats = torch.cat([net.stem[0](b) for b in batches])
    torch.testing.assert_close(stem_bn.running_mean, feats.mean((0, 2, 3)), rtol=1e-4, atol=1e-4)
    assert stem_bn.momentum == 0.1  # restored
    other = next(op for op in OPS if op != arch[0])
    untouched = [m for m in net.layers[0][other].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(int(m.num_batches_tracked) == 0 for m in untouched)
