"""Does a trained supernet rank architectures well enough to search on? The quality verdict.

A fixed set of random architectures of the trained space is scored through the supernet as
evolution scores them. Three questions, each a test the verdict names when it fails:

- **learned**: their mean accuracy is above chance + ``quality_margin`` of the way to 100%
  (a supernet at chance ranks nothing);
- **consistent** (split-half): the architectures are scored on two disjoint halves of the
  validation split, each half after its own BN recalibration (other training batches);
  the Spearman correlation of the two halves' scores is at least ``rank_consistency``. When
  evaluation noise is as large as the differences between architectures, the two halves
  disagree and so would any two scorings of evolution's candidates;
- **stable**: the Spearman correlation between these scores and those of the previous check
  (``check_every`` steps earlier) is at least ``rank_stability``: a supernet whose ranking
  still moves as it trains has not settled on one.

The learned test alone called a supernet at 28.7% (chance 10%, trained alone 90-94%) reliable
(issue 23); the other two measure the ranking itself. ``RankMonitor`` runs the checks while
the supernet trains (``supernet.check_every``) and, with ``supernet.until_reliable``, ends the
training at the first check that passes them all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hurricane.data.datasets import Data
from hurricane.nets.arch import Arch, SearchSpace
from hurricane.nets.supernet import Supernet, recalibrate_bn
from hurricane.spec import SearchSpec

QUALITY_SEED = 104_729  # the quality architectures: random.Random(spec.seed + QUALITY_SEED)
BN_SEED = 7919  # SupernetScorer's BN batches: spec.seed + BN_SEED; the second set + 1


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); 0 when either side is constant."""
    def ranks(v: Sequence[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        out = [0.0] * len(v)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(a), ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return 0.0 if va == 0 or vb == 0 else cov / (va * vb) ** 0.5


def quality_archs(space: SearchSpace, spec: SearchSpec) -> list[Arch]:
    """The ``supernet.quality_archs`` random architectures every check scores (distinct where
    the space allows)."""
    rng = random.Random(spec.seed + QUALITY_SEED)
    n = min(spec.supernet.quality_archs, space.size)
    out: list[Arch] = []
    for _ in range(100 * n):
        a = space.sample(rng)
        if a not in out:
            out.append(a)
        if len(out) == n:
            break
    return out


class SplitScorer:
    """Each architecture's per-image correctness on the validation split under two BN
    recalibrations (``bn_batches`` training batches each, two disjoint draws), on the device of
    the supernet's parameters. ``scores`` gives the full-split accuracy under the first (what
    evolution's ``SupernetScorer`` gives) and the two halves' (even images under the first,
    odd images under the second)."""

    def __init__(self, net: nn.Module, data: Data, spec: SearchSpec) -> None:
        ev = spec.evolution
        self.net, self.val, self.limit = net, data.val, ev.eval_batches
        self.bn = [[data.train.train_batch(i, ev.bn_batch_size, seed=spec.seed + BN_SEED + j)[0]
                    for i in range(ev.bn_batches)] for j in (0, 1)]

    def _correct(self, arch: Arch, recal: int) -> torch.Tensor:
        net = self.net
        dev = next(net.parameters()).device
        recalibrate_bn(net, [x.to(dev) for x in self.bn[recal]], arch=arch)
        net.eval()
        out = []
        with torch.no_grad():
            for x, y in self.val.eval_batches(256, self.limit):
                out.append((net(x.to(dev), arch).argmax(1).cpu() == y).float())
        return torch.cat(out)

    def scores(self, arch: Arch) -> tuple[float, float, float]:
        """(full split under recalibration 1, even images under 1, odd images under 2)."""
        first, second = self._correct(arch, 0), self._correct(arch, 1)
        return (float(first.mean()), float(first[0::2].mean()), float(second[1::2].mean()))


def verdict(full: Sequence[float], half_a: Sequence[float], half_b: Sequence[float],
            previous: Sequence[float] | None, *, num_classes: int, spec: SearchSpec,
            iterations: int | None = None, since: int | None = None) -> dict[str, Any]:
    """The quality verdict from one check's scores (module docstring); ``previous``: the same
    architectures' full-split scores at the check before, if any."""
    s = spec.supernet
    chance = 1.0 / num_classes
    floor = chance + s.quality_margin * (1.0 - chance)
    n = len(full)
    mean = sum(full) / n
    std = (sum((a - mean) ** 2 for a in full) / max(1, n - 1)) ** 0.5
    consistency = spearman(half_a, half_b)
    stability = spearman(previous, full) if previous is not None else None
    tests = {"learned": mean >= floor,
             **({"consistent": consistency >= s.rank_consistency} if n >= 3 else {}),
             **({"stable": stability >= s.rank_stability}
                if stability is not None and n >= 3 else {})}
    out: dict[str, Any] = {
        "archs": n, "accuracy_mean": round(mean, 4), "accuracy_std": round(std, 4),
        "accuracy_min": round(min(full), 4), "accuracy_max": round(max(full), 4),
        "chance": round(chance, 4), "floor": round(floor, 4),
        "split_half_rho": round(consistency, 3), "consistency_needed": s.rank_consistency,
        "stability_rho": None if stability is None else round(stability, 3),
        "stability_needed": s.rank_stability, "stability_since": since, "tests": tests,
        "reliable": all(tests.values())}
    if not out["reliable"]:
        out["warning"] = _warning(out, n, iterations, spec)
    return out


def _warning(v: dict[str, Any], n: int, iterations: int | None, spec: SearchSpec) -> str:
    """What failed, in words, and what to change."""
    t, s = v["tests"], spec.supernet
    trained = f"after {iterations} iterations" if iterations else "as trained"
    why, fix = [], []
    if not t["learned"]:
        why.append(f"it did not learn: {n} random architectures score {v['accuracy_mean']:.1%} "
                   f"mean validation accuracy through it ({v['accuracy_min']:.1%}-"
                   f"{v['accuracy_max']:.1%}; chance is {v['chance']:.1%}, reliable from "
                   f"{v['floor']:.1%})")
        fix.append(f"train longer (supernet.iterations, {s.iterations} now)"
                   + ("" if s.recipe == "shrink" else
                      f" or with the default recipe (supernet.recipe: shrink, {s.recipe} now)"))
    if t.get("consistent") is False:
        why.append(f"its scores do not agree with themselves: two halves of the validation "
                   f"split, each after its own BN recalibration, rank {n} random architectures "
                   f"with Spearman {v['split_half_rho']:.2f} (needed: "
                   f"{v['consistency_needed']:.2f}), so evaluation noise is as large as the "
                   "differences it ranks by")
        fix.append("score on more images (dataset.eval_copies for cluttered-digits, a larger "
                   "dataset.val_fraction, evolution.eval_batches unset) and recalibrate BN on "
                   "more batches (evolution.bn_batches)")
    if t.get("stable") is False:
        since = v.get("stability_since") or s.check_every
        gap = f"{since} iterations earlier" if since else "before"
        why.append(f"its ranking still moves: Spearman {v['stability_rho']:.2f} against the "
                   f"check {gap} (needed: "
                   f"{v['stability_needed']:.2f})")
        fix.append("train longer (supernet.iterations) or let it train until the ranking "
                   "settles (supernet.until_reliable with a higher cap)")
    return (f"the supernet's ranking is unreliable {trained}: " + "; ".join(why)
            + ". The search's winner may be no better than a random pick among feasible "
            "architectures. To change: " + "; ".join(dict.fromkeys(fix)))


class MultiScorer:
    """An architecture's mean validation accuracy over ``recalibrations`` BN recalibrations,
    each on its own draw of ``bn_batches`` training batches (the first is evolution's own), on
    the whole validation split: evolution's final pick among its best candidates is made
    with this steadier estimate (``evolution.rescore``)."""

    def __init__(self, net: nn.Module, data: Data, spec: SearchSpec, recalibrations: int) -> None:
        ev = spec.evolution
        self.net, self.val = net, data.val
        self.bn = [[data.train.train_batch(i, ev.bn_batch_size, seed=spec.seed + BN_SEED + j)[0]
                    for i in range(ev.bn_batches)] for j in range(recalibrations)]

    def __call__(self, arch: Arch) -> list[float]:
        net = self.net
        out = []
        for batches in self.bn:
            recalibrate_bn(net, batches, arch=arch)
            net.eval()
            correct = total = 0
            with torch.no_grad():
                for x, y in self.val.eval_batches(256):
                    correct += int((net(x, arch).argmax(1) == y).sum())
                    total += len(y)
            out.append(correct / max(1, total))
        return out


class RankMonitor:
    """The quality check while a supernet trains: every ``supernet.check_every`` steps from
    ``supernet.min_iterations`` and at the end (without check_every: after three quarters of
    the iterations and at the end), the quality architectures are scored and the verdict taken
    against the previous check. ``stop(step, model)`` says whether training may
    end there (``until_reliable`` and a passing verdict). Its checks travel in the training's
    checkpoints (``state_dict``), so a resumed training judges as a straight one."""

    def __init__(self, space: SearchSpace, data: Data, spec: SearchSpec,
                 iterations: int | None = None) -> None:
        s = spec.supernet
        self.spec, self.data = spec, data
        self.archs = quality_archs(space, spec) if space.size > 1 else []
        self.until_reliable = s.until_reliable
        end = iterations or s.iterations
        if s.check_every is not None:
            steps = set(range(s.check_every, end + 1, s.check_every))
            self.steps = {t for t in steps if t >= s.min_iterations} | {end}
        else:  # the last quarter's change, and the end
            self.steps = {end - end // 4, end} if end >= 4 else {end}
        self.checks: list[dict[str, Any]] = []

    @property
    def enabled(self) -> bool:
        return bool(self.archs)

    def due(self, step: int) -> bool:
        return (self.enabled and step in self.steps
                and not any(c["step"] == step for c in self.checks))

    def check(self, step: int, model: nn.Module) -> dict[str, Any]:
        """Scores the architectures at ``step`` and records the verdict (the model's mode and
        BN statistics of the scored paths are what scoring leaves; training re-estimates)."""
        was = model.training
        scorer = SplitScorer(model, self.data, self.spec)
        scored = [scorer.scores(a) for a in self.archs]
        model.train(was)
        full = [s[0] for s in scored]
        prev = self.checks[-1]["scores"] if self.checks else None
        since = step - self.checks[-1]["step"] if self.checks else None
        v = verdict(full, [s[1] for s in scored], [s[2] for s in scored], prev,
                    num_classes=self.data.num_classes, spec=self.spec, iterations=step,
                    since=since)
        self.checks.append({"step": step, "scores": [round(x, 4) for x in full],
                            "verdict": v})
        return v

    def stop(self, step: int, model: nn.Module) -> bool:
        """Checks at ``step`` when one is due; True when training may end there."""
        if not self.due(step):
            return False
        v = self.check(step, model)
        return self.until_reliable and v["reliable"] and "stable" in v["tests"]

    def result(self) -> dict[str, Any] | None:
        """The last check's verdict with the architectures' accuracies and every check's
        summary (step, mean accuracy, split-half and stability rho, verdict)."""
        if not self.checks:
            return None
        last = self.checks[-1]
        out = dict(last["verdict"])
        out["accuracies"] = {str(a): x for a, x in zip(self.archs, last["scores"], strict=True)}
        out["checks"] = [{"step": c["step"], "accuracy_mean": c["verdict"]["accuracy_mean"],
                          "split_half_rho": c["verdict"]["split_half_rho"],
                          "stability_rho": c["verdict"]["stability_rho"],
                          "reliable": c["verdict"]["reliable"]} for c in self.checks]
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"checks": self.checks}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.checks = list(state.get("checks", []))


def supernet_quality(net: Supernet, space: SearchSpace, data: Data, spec: SearchSpec,
                     monitor: RankMonitor | None = None, *,
                     iterations: int | None = None) -> dict[str, Any] | None:
    """The verdict of a trained supernet: ``monitor``'s last check when it checked at the end,
    else one check now (without a stability test unless ``monitor`` checked before). None when
    not asked for (``quality_archs`` 0) or the space has one architecture."""
    monitor = monitor or RankMonitor(space, data, spec)
    if not monitor.enabled:
        return None
    if not monitor.checks or (iterations is not None and monitor.checks[-1]["step"] != iterations):
        monitor.check(iterations or 0, net)
    return monitor.result()
