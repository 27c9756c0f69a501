"""report.json and report.md: what a search found, what it cost, where the artifacts are."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hurricane.runs.records import result_key
from hurricane.runs.steps.results import (
    device_artifacts,
    device_winners,
    step_of,
    winner_step,
    winner_steps,
)
from hurricane.runs.strategies import STRATEGIES
from hurricane.spec import SearchSpec
from hurricane.storage.store import ArtifactStore, search_key


def supernet_runs(plan: Sequence[str],
                  results: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per step of ``plan`` that trains supernets (the ``supernets`` trait): its trainings by
    label (one Stage 2 training per distinct Stage 1 winner; one ProxylessNAS run per device)."""
    out = {}
    for s in plan:
        runs = step_of(s).supernet_runs(results[s]) if s in results else {}
        if runs:
            out[s] = runs
    return out


def supernet_iterations(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    """Training iterations per training step, summed over its trainings."""
    return {s: sum(r["iterations"] for r in by_label.values()) for s, by_label in runs.items()}


def _predictor_summary(m: dict[str, Any]) -> dict[str, Any]:
    """The device's latency model: the configuration its samples chose (leave-one-out MAPE)
    and its held-out error."""
    if m.get("few_shot"):
        fs = m["few_shot"]
        return {"few_shot": True, "samples": fs["samples"], "known_devices": fs["known_devices"],
                "weights": fs["weights"][:5],
                "loo_mape": m["predictor"]["mape"], "loo_srcc": m["predictor"]["srcc"]}
    chosen = m.get("chosen") or {}
    return {"log_target": chosen.get("log_target"), "pair_scale": chosen.get("pair_scale"),
            "table_offset": chosen.get("table_offset"), "loo_mape": chosen.get("loo_mape"),
            "dropped_samples": len(chosen.get("dropped") or []),
            "holdout_mape": m["predictor"]["mape"], "table_sum_mape": m["table_sum"]["mape"]}


def supernet_summary(runs: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per supernet training: its loss curve and how random architectures score through it,
    as the training steps' results hold them."""
    return {label: {"loss_curve": t.get("loss_curve", []), "final_loss": t.get("final_loss"),
                    "iterations": t.get("iterations"), "quality": t.get("quality")}
            for by_label in runs.values() for label, t in by_label.items()}


def build_report(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    strategy = STRATEGIES.get(spec.strategy)
    steps = strategy.plan(spec)
    results = {s: store.get_json(result_key(search_id, s)) for s in steps}
    timings = {s: r["_meta"]["seconds"] for s, r in results.items()}
    search_step = winner_step(spec)
    found = device_winners(steps, results.get)
    devices = {}
    for d in spec.devices:
        n = d.name
        win = found[n][1]
        exp = results["export"]["devices"][n]
        measured = exp["measured_latency_ms"]
        devices[n] = {
            "arch": win["winner"],
            "top1": results["retrain"]["devices"][n]["test_top1"],
            "supernet_top1": win["supernet_accuracy"],
            **({"finetuned_top1": win["finetuned_accuracy"], "supernet_rank": win["supernet_rank"],
                "finalists": win["finalists"]} if "finetuned_accuracy" in win else {}),
            "budget_ms": win["budget_ms"],
            "predicted_latency_ms": exp["predicted_latency_ms"],
            "measured_latency_ms": measured,
            "table_latency_ms": exp["table_latency_ms"],
            "meets_budget": exp["predicted_latency_ms"] <= win["budget_ms"],
            "measured_meets_budget": None if measured is None else measured <= win["budget_ms"],
            # the final check: within, over or inconclusive (its interval straddles the budget)
            "latency_check": exp.get("latency_check"),
            **({"budget_check": win["budget_check"]} if win.get("budget_check") else {}),
            "onnx_max_abs_diff": exp["onnx_max_abs_diff"],
            "stages": {s: results[s]["devices"][n]["winner"] for s in winner_steps(steps)
                       if n in results[s].get("devices", {})},
            **({"proxy": d.proxy, "transfer": win["method"], "proxy_srcc": win["srcc"]}
               if d.proxy else {}),
            **({"predictor": _predictor_summary(results["predictor"]["devices"][n])}
               if n in results.get("predictor", {}).get("devices", {}) else {}),
            "artifacts": {
                **{name: store.uri(search_key(search_id, rel))
                   for name, rel in device_artifacts(steps, n, reported=True).items()},
                **({"pareto.json": store.uri(win["pareto"])} if win.get("pareto") else {}),
            },
        }
    runs = supernet_runs(steps, results)
    iters = supernet_iterations(runs)
    supernets = supernet_summary(runs)
    warnings = [w for r in results.values() for w in r.get("warnings") or ()]
    return {
        "search_id": search_id,
        "name": spec.name,
        "strategy": spec.strategy,
        "dataset": spec.dataset.name,
        "space_kind": spec.space.kind,
        "space_size": results["space"]["size"],
        "a_win0": next((r["a_win0"] for r in results.values() if r.get("a_win0")), None),
        "supernet_iterations": sum(iters.values()),
        "iterations_per_stage": iters,
        "architectures_evaluated": {n: results[search_step]["devices"].get(n, {}).get("evaluated")
                                    for n in devices},
        "devices": devices,
        "supernets": supernets,
        "warnings": warnings,
        "timings_s": timings,
        "total_s": round(sum(timings.values()), 3),
    }


def verdict_words(q: dict[str, Any]) -> str:
    """A quality verdict in a few words: reliable, or which of its tests failed."""
    if q.get("reliable"):
        return "reliable"
    failed = [t for t, ok in (q.get("tests") or {"learned": False}).items() if not ok]
    words = {"learned": "did not learn", "consistent": "inconsistent scores",
             "stable": "ranking still moving"}
    return "**unreliable**: " + ", ".join(words.get(t, t) for t in failed)


def _ranking(q: dict[str, Any]) -> str:
    rho = q.get("split_half_rho")
    if rho is None:
        return ""
    stab = q.get("stability_rho")
    return f"; ρ {rho:.2f}" + ("" if stab is None else f", {stab:.2f}")


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def render_markdown(report: dict[str, Any]) -> str:
    per_stage = ", ".join(f"{k} {v}" for k, v in report["iterations_per_stage"].items())
    lines = [f"# Search {report['search_id']}", "",
             f"- strategy: {report['strategy']}; dataset: {report['dataset']}; "
             f"space: {report['space_kind']}, {report['space_size']:.3g} architectures",
             f"- supernet iterations: {report['supernet_iterations']}"
             + (f" ({per_stage})" if per_stage else "")]
    if report.get("a_win0"):
        lines.append(f"- a_win0 (Stage 1's fixed early layers from it): `{report['a_win0']}`")
    for w in report.get("warnings") or ():
        lines += ["", f"> **WARNING** {w}"]
    if report.get("supernets"):
        lines += ["", "| supernet | iterations | training loss (step: loss) | random architectures "
                  "through it (split-half ρ, ρ to the check before) | verdict |",
                  "|---|---|---|---|---|"]
        for label, t in report["supernets"].items():
            curve = " → ".join(f"{int(st)}: {loss:.2f}" for st, loss in t["loss_curve"])
            q = t.get("quality")
            scored = ("not measured" if not q else
                      f"{q['accuracy_mean']:.1%} ± {q['accuracy_std']:.1%} over {q['archs']} "
                      f"({q['accuracy_min']:.1%}-{q['accuracy_max']:.1%}; chance "
                      f"{q['chance']:.1%}){_ranking(q)}")
            verdict = "" if not q else verdict_words(q)
            lines.append(f"| {label} | {t['iterations']} | {curve} | {scored} | {verdict} |")
    lines += ["",
              "| device | top-1 | budget ms | predicted ms | measured ms | within budget | "
              "architecture |",
              "|---|---|---|---|---|---|---|"]
    for n, d in report["devices"].items():
        measured = d["measured_latency_ms"]
        ok = "yes" if d["meets_budget"] else "NO"
        chk = d.get("latency_check")
        if chk:
            ok += (f" / measured {chk['verdict'].upper() if chk['verdict'] != 'within' else 'yes'}"
                   f" ({chk['low_ms']:.3f}-{chk['high_ms']:.3f} ms, {chk['confidence']:.0%}, "
                   f"{len(chk['rounds_ms'])} rounds)")
        elif d["measured_meets_budget"] is not None:
            ok += " / measured " + ("yes" if d["measured_meets_budget"] else "no")
        lines.append(f"| {n} | {d['top1']:.2%} | {d['budget_ms']:.3f} | "
                     f"{d['predicted_latency_ms']:.3f} | "
                     f"{'n/a (table)' if measured is None else f'{measured:.3f}'} | {ok} | "
                     f"`{d['arch']}` |")
    for n, d in report["devices"].items():
        bc = d.get("budget_check")
        if bc:
            conf = bc["interval_confidence"]
            lines.append(
                f"\n{n}: {bc['near_edge']} of the {bc['priced']} architectures evolution priced "
                f"were near the {d['budget_ms']:.3f} ms budget (their {conf:.0%} interval from "
                f"the predictor's {bc['held_out']} held-out architectures holds it), "
                f"{bc['top_near_edge']} of its top"
                + (f"; evolution required {bc['confidence']:.0%} confidence (predicted <= "
                   f"{bc['effective_budget_ms']:.3f} ms)" if bc.get("confidence") else "")
                + ".")
    for n, d in report["devices"].items():
        if d.get("finalists"):
            lines.append(f"\n{n}: evolution's top {d['finalists']} fine-tuned from the supernet; "
                         f"the winner was {_ordinal(d['supernet_rank'])} through the supernet "
                         f"({d['supernet_top1']:.1%}) and first fine-tuned "
                         f"({d['finetuned_top1']:.1%} validation).")
    for n, d in report["devices"].items():
        p = d.get("predictor")
        if p and p.get("few_shot"):
            shown = ", ".join(f"{dev} {w:.0%}" for dev, w in p["weights"])
            lines.append(f"\n{n} latency predictor: few-shot, {p['samples']} architectures "
                         f"timed on it, prior of {len(p['known_devices'])} known devices; the "
                         f"ones it follows most: {shown}; leave-one-out MAPE "
                         f"{p['loo_mape']:.2f}%, SRCC {p['loo_srcc']:.3f}.")
        elif p:
            lines.append(f"\n{n} latency predictor: {'log' if p['log_target'] else 'raw'} target, "
                         f"interactions {p['pair_scale']}, table "
                         f"{'offset' if p['table_offset'] else 'feature'}; leave-one-out MAPE "
                         f"{p['loo_mape']:.2f}%, held out {p['holdout_mape']:.2f}% (table sum "
                         f"{p['table_sum_mape']:.2f}%), {p['dropped_samples']} outlier(s) dropped.")
    for n, d in report["devices"].items():
        if d.get("proxy"):
            rho = "n/a" if d["proxy_srcc"] is None else f"{d['proxy_srcc']:.3f}"
            lines.append(f"\n{n} is served by proxy device {d['proxy']}: SRCC {rho}, "
                         f"{d['transfer']}.")
    stages = [(n, s, a) for n, d in report["devices"].items() for s, a in d["stages"].items()]
    if len({s for _, s, _ in stages}) > 1:
        lines += ["", "| device | step | winner |", "|---|---|---|"]
        lines += [f"| {n} | {s} | `{a}` |" for n, s, a in stages]
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {s} | {t:.1f} |" for s, t in report["timings_s"].items()]
    lines += [f"| total | {report['total_s']:.1f} |", ""]
    return "\n".join(lines)


def write_report(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    report = build_report(spec, search_id, store)
    store.put_json(search_key(search_id, "report.json"), report)
    store.put_bytes(search_key(search_id, "report.md"), render_markdown(report).encode())
    return report
