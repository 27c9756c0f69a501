"""Supernet: single-path forward, gradients only on the path, extraction, BN recalibration."""

from __future__ import annotations

import random

import pytest
import torch

from hurricane.nets.arch import SearchSpace
from hurricane.nets.backbone import Layout
from hurricane.nets.supernet import SHARING, Network, SlicedConv, Supernet, recalibrate_bn
from hurricane.spec import BackboneSpec

OPS = ("SEP_3", "MB_3_3_SE", "Choice_5", "ChoiceX")
WIDE = ("SEP_3", "SEP_5_SE", "MB_3_1", "MB_3_3", "MB_7_6_SE", "Choice_3", "Choice_7_SE",
        "ChoiceX", "ChoiceX_SE")


def _layout(shortcut: bool = True) -> Layout:
    return Layout.from_spec(BackboneSpec(input_size=32, num_classes=5, layers_per_stage=(1, 2),
                                         stage_channels=(16, 32), stem_channels=8,
                                         head_channels=32, downsample_shortcut=shortcut))


def _net(sharing: str = "none", ops: tuple[str, ...] = OPS,
         shortcut: bool = True) -> tuple[Supernet, SearchSpace]:
    layout = _layout(shortcut)
    space = SearchSpace.uniform(ops, layout.num_layers)
    torch.manual_seed(0)
    return Supernet(layout, space, sharing=sharing), space


@pytest.mark.parametrize("sharing", SHARING)
def test_only_the_sampled_path_gets_gradients(sharing: str) -> None:
    net, space = _net(sharing, WIDE)
    arch = space.sample(random.Random(0))
    net(torch.randn(4, 3, 32, 32), arch).sum().backward()
    on_path = {id(p) for p in net.path_parameters(arch)}
    for p in net.parameters():
        assert (p.grad is not None) == (id(p) in on_path)


@pytest.mark.parametrize("sharing", SHARING)
def test_unsampled_paths_are_untouched_by_sgd(sharing: str) -> None:
    net, space = _net(sharing, WIDE)
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


@pytest.mark.parametrize(("sharing", "shortcut"), [(s, True) for s in SHARING] + [("layer", False)])
def test_extracted_network_matches_the_supernet_path(sharing: str, shortcut: bool) -> None:
    net, space = _net(sharing, WIDE, shortcut)
    x = torch.randn(8, 3, 32, 32)
    for seed in range(4):
        arch = space.sample(random.Random(seed))
        recalibrate_bn(net, [torch.randn(16, 3, 32, 32) for _ in range(2)], arch=arch)
        net.eval()
        child = net.extract(arch).eval()
        assert isinstance(child, Network) and child.arch == arch
        torch.testing.assert_close(child(x), net(x, arch), rtol=0, atol=1e-5)
        n_child = sum(p.numel() for p in child.parameters())
        if sharing == "none":
            assert n_child == sum(p.numel() for p in net.path_parameters(arch))
        else:  # the path uses slices of the shared banks: never more than the banks hold
            assert n_child <= sum(p.numel() for p in net.path_parameters(arch))
        assert not any(isinstance(m, SlicedConv) for m in child.modules())


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


def test_family_sharing_ties_kernels_and_channels_within_a_family() -> None:
    net, _ = _net("family", ("MB_3_3", "MB_7_6_SE", "SEP_3"))
    layer = net.layers[0]
    small, big = layer["MB_3_3"].op.body, layer["MB_7_6_SE"].op.body
    dw_small, dw_big = small[3], big[3]
    assert isinstance(dw_small, SlicedConv) and dw_small.bank[0] is dw_big.bank[0]
    bank = dw_big.bank[0]
    with torch.no_grad():
        bank.normal_()
    # MB_3_3 uses the first cin*3 channels and the centre 3x3 of MB_7_6's 7x7 kernel
    torch.testing.assert_close(dw_small.weight(), bank[:dw_small.out, :, 2:5, 2:5])
    # another family keeps its own weights; the shortcut is one for the whole layer
    sep = layer["SEP_3"].op.body[0]
    assert sep.bank[0] is not bank
    assert layer["SEP_3"].short[1].bank[0] is layer["MB_3_3"].short[1].bank[0]


def test_layer_sharing_gives_every_family_one_output_projection() -> None:
    net, space = _net("layer", ("SEP_3", "MB_3_3", "Choice_5", "ChoiceX"))
    layer = net.layers[0]  # stride 2: 8 -> 16 channels
    outs = {op: [m for m in layer[op].op.modules() if isinstance(m, SlicedConv)
                 and m.bank[0] is net.banks[0]["out"]] for op in space.choices[0]}
    assert all(outs.values())
    # Choice blocks write their two halves through rows 0..cin and cin..cout of the projection
    assert sorted((m.row, m.out) for m in outs["Choice_5"]) == [(0, 8), (8, 8)]
    assert [(m.row, m.out) for m in outs["MB_3_3"]] == [(0, 16)]
    # training the MB path moves the weights the SEP path writes its output with
    arch = next(a for a in (space.sample(random.Random(i)) for i in range(50))
                if a[0] == "MB_3_3")
    before = outs["SEP_3"][0].weight().detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(torch.randn(4, 3, 32, 32), arch).sum().backward()
    opt.step()
    assert not torch.equal(before, outs["SEP_3"][0].weight().detach())


def test_a_stage_inherits_shared_banks_of_another_size_by_their_overlap() -> None:
    wide, space = _net("layer", WIDE)
    narrow = Supernet(_layout(), space.fix(space.sample(random.Random(3)), [0]),
                      sharing="layer")
    n = narrow.load_overlapping(wide.state_dict())
    assert n > 0
    x = torch.randn(4, 3, 32, 32)
    for seed in range(3):  # every path of the narrow supernet computes as in the wide one
        arch = narrow.space.sample(random.Random(seed))
        recalibrate_bn(wide, [x], arch=arch)
        recalibrate_bn(narrow, [x], arch=arch)
        wide.eval()
        narrow.eval()
        torch.testing.assert_close(narrow(x, arch), wide(x, arch), rtol=0, atol=1e-5)


def test_unknown_sharing_is_refused() -> None:
    with pytest.raises(ValueError, match="sharing must be one of none, family, layer"):
        _net("all")
