"""report.json and report.md: what a search found, what it cost, where the artifacts are."""

from __future__ import annotations

from typing import Any

from hurricane.pipeline import result_key
from hurricane.spec import SearchSpec
from hurricane.store import ArtifactStore, search_key
from hurricane.strategies import STRATEGIES


def build_report(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    steps = STRATEGIES.get(spec.strategy).steps
    results = {s: store.get_json(result_key(search_id, s)) for s in steps}
    timings = {s: r["_meta"]["seconds"] for s, r in results.items()}
    search_step = [s for s in steps if s.startswith("search")][-1]
    devices = {}
    for d in spec.devices:
        n = d.name
        win = results[search_step]["devices"][n]
        exp = results["export"]["devices"][n]
        devices[n] = {
            "arch": win["winner"],
            "top1": results["retrain"]["devices"][n]["test_top1"],
            "supernet_top1": win["supernet_accuracy"],
            "budget_ms": win["budget_ms"],
            "predicted_latency_ms": exp["predicted_latency_ms"],
            "measured_latency_ms": exp["measured_latency_ms"],
            "meets_budget": exp["predicted_latency_ms"] <= win["budget_ms"],
            "onnx_max_abs_diff": exp["onnx_max_abs_diff"],
            "artifacts": {
                "final.pt": store.uri(search_key(search_id, "retrain", n, "final.pt")),
                "arch.json": store.uri(search_key(search_id, "retrain", n, "arch.json")),
                "model.onnx": store.uri(search_key(search_id, "export", n, "model.onnx")),
            },
        }
    train_steps = [s for s in steps if s.startswith("stage")]
    return {
        "search_id": search_id,
        "name": spec.name,
        "strategy": spec.strategy,
        "dataset": spec.dataset.name,
        "space_size": results["space"]["size"],
        "supernet_iterations": sum(results[s]["iterations"] for s in train_steps),
        "architectures_evaluated": {n: results[search_step]["devices"][n]["evaluated"]
                                    for n in devices},
        "devices": devices,
        "timings_s": timings,
        "total_s": round(sum(timings.values()), 3),
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Search {report['search_id']}", "",
             f"- strategy: {report['strategy']}; dataset: {report['dataset']}; "
             f"space size: {report['space_size']:.3g}",
             f"- supernet iterations: {report['supernet_iterations']}", "",
             "| device | top-1 | budget ms | predicted ms | measured ms | architecture |",
             "|---|---|---|---|---|---|"]
    for n, d in report["devices"].items():
        measured = d["measured_latency_ms"]
        lines.append(f"| {n} | {d['top1']:.2%} | {d['budget_ms']:.3f} | "
                     f"{d['predicted_latency_ms']:.3f} | "
                     f"{'n/a (table)' if measured is None else f'{measured:.3f}'} | "
                     f"`{d['arch']}` |")
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {s} | {t:.1f} |" for s, t in report["timings_s"].items()]
    lines += [f"| total | {report['total_s']:.1f} |", ""]
    return "\n".join(lines)


def write_report(spec: SearchSpec, search_id: str, store: ArtifactStore) -> dict[str, Any]:
    report = build_report(spec, search_id, store)
    store.put_json(search_key(search_id, "report.json"), report)
    store.put_bytes(search_key(search_id, "report.md"), render_markdown(report).encode())
    return report
