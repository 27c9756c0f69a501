// The method: supernet learning and its quality verdict, evolution progress, the
// hardware-aware space (Eq. 2 scores), each device's layer × op latency table, the latency
// predictor's fit, and the devices' rank correlations with the proxy decisions.
import { get } from "../api";
import { axis, chart, esc, palette } from "../charts";
import { clear, errorBox, h, ms, num, pct, table } from "../dom";
import type { Insights, SearchView } from "../types";

const ACTIVE = new Set(["queued", "running"]);

export async function methodTab(panel: HTMLElement, view: SearchView, signal: AbortSignal,
                                onView: ((v: SearchView) => void)[]): Promise<void> {
  const load = async () => {
    try {
      const ins = await get<Insights>(`/v1/searches/${encodeURIComponent(view.search_id)}/insights`);
      if (!signal.aborted) render(panel, ins);
    } catch (err) {
      clear(panel, errorBox(err));
    }
  };
  await load();
  // while the search runs, sections appear as their steps finish
  let last = 0;
  onView.push((v) => {
    if (Date.now() - last < 5000 && ACTIVE.has(v.state)) return;
    last = Date.now();
    void load();
  });
}

function section(title: string, id: string, ...children: (HTMLElement | null)[]): HTMLElement {
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
}

function none(text: string): HTMLElement {
  return h("p", { class: "muted" }, text);
}

function render(panel: HTMLElement, ins: Insights): void {
  clear(panel,
    supernets(ins),
    evolution(ins),
    space(ins),
    tables(ins),
    predictors(ins),
    correlation(ins));
}

function curve(c: [number, number][] | number[] | null | undefined): [number, number][] {
  if (!c) return [];
  return (c as unknown[]).map((p, i) => (Array.isArray(p) ? [p[0], p[1]] : [i + 1, p as number]));
}

function supernets(ins: Insights): HTMLElement {
  const s = ins.supernets ?? {};
  const names = Object.keys(s);
  if (!names.length) {
    return section("Supernet training", "m-supernet", none("No supernet has been trained yet."));
  }
  const p = palette();
  const loss = chart("Supernet training loss per stage", {
    tooltip: { trigger: "axis" },
    legend: { top: 0, textStyle: { color: p.fg } },
    grid: { left: 56, right: 16, top: 32, bottom: 44 },
    xAxis: axis("iteration", { type: "value" }),
    yAxis: axis("loss", { type: "value" }),
    series: names.map((n) => {
      const data = curve(s[n].loss_curve);
      return { name: n, type: "line", showSymbol: data.length < 30, data };
    }),
  });
  const verdicts = names.map((n) => {
    const q = s[n].quality;
    if (!q) return h("div", { class: "verdict" }, h("b", {}, n), ": no quality check recorded");
    const accs = Object.entries((q.accuracies ?? {}) as Record<string, number>);
    return h("div", { class: `verdict ${q.reliable ? "ok" : "bad"}` },
      h("p", {}, h("b", {}, n), ": ", q.reliable ? "reliable" : "UNRELIABLE",
        ` · random architectures ${pct(q.accuracy_mean)} ± ${pct(q.accuracy_std)} through it`,
        ` (chance ${pct(q.chance)})`,
        q.split_half_rho != null ? ` · split-half rank agreement ${num(q.split_half_rho, 2)}` +
          ` (needs ${num(q.consistency_needed, 2)})` : "",
        q.stability_rho != null ? ` · stability ${num(q.stability_rho, 2)}` +
          ` (needs ${num(q.stability_needed, 2)})` : "",
        s[n].iterations ? ` · ${s[n].iterations} iterations` : ""),
      q.advice ? h("p", { class: "small" }, String(q.advice)) : null,
      accs.length ? chart(`Random architectures' accuracy through the ${n} supernet`, {
        tooltip: { trigger: "item", formatter: (x: any) => `${esc(x.data[2])}<br/>${pct(x.data[1])}` },
        grid: { left: 56, right: 16, top: 12, bottom: 36 },
        xAxis: axis("architecture", { type: "value", min: 0, max: accs.length + 1,
                                      axisLabel: { show: false } }),
        yAxis: axis("top-1 through the supernet", { type: "value",
                                                     axisLabel: { formatter: (v: number) => pct(v, 0) } }),
        series: [{ type: "scatter", symbolSize: 10,
                   data: accs.map(([a, v], i) => [i + 1, v, a]),
                   markLine: { silent: true, symbol: "none", label: { formatter: "chance" },
                               lineStyle: { color: p.muted, type: "dashed" },
                               data: [{ yAxis: q.chance ?? 0.1 }] } }],
      }, 200) : null);
  });
  return section("Supernet training", "m-supernet", loss, ...verdicts);
}

function evolution(ins: Insights): HTMLElement {
  const ev = ins.evolution ?? {};
  const series: { name: string; data: [number, number][] }[] = [];
  for (const [step, per] of Object.entries(ev)) {
    for (const [dev, e] of Object.entries(per)) {
      series.push({ name: `${step} · ${dev}`,
                    data: e.history.map((r) => [r.iteration, r.best_accuracy]) });
    }
  }
  if (!series.length) return section("Evolution", "m-evolution", none("Evolution has not run yet."));
  const p = palette();
  return section("Evolution", "m-evolution", chart("Best supernet accuracy per generation", {
    tooltip: { trigger: "axis", valueFormatter: (v: number) => pct(v, 2) },
    legend: { top: 0, textStyle: { color: p.fg } },
    grid: { left: 56, right: 16, top: 32, bottom: 44 },
    xAxis: axis("generation", { type: "value", minInterval: 1 }),
    yAxis: axis("best top-1 (supernet)", { type: "value",
                                            axisLabel: { formatter: (v: number) => pct(v, 1) } }),
    series: series.map((s) => ({ ...s, type: "line", symbolSize: 6 })),
  }, 280));
}

function heat(label: string, layers: string[], ops: string[], values: [number, number, number][],
              fmt: (v: number) => string, marked: Set<string> = new Set(), lowIsGood = false): HTMLElement {
  const p = palette();
  const vals = values.map((v) => v[2]);
  return chart(label, {
    tooltip: { formatter: (x: any) => `layer ${esc(layers[x.data[1]])} · ${esc(ops[x.data[0]])}<br/>` +
      `${fmt(x.data[2])}${marked.has(`${x.data[1]}:${ops[x.data[0]]}`) ? " · chosen" : ""}` },
    grid: { left: 56, right: 16, top: 8, bottom: 96 },
    xAxis: { type: "category", data: ops, axisLabel: { rotate: 45, color: p.fg } },
    yAxis: { type: "category", data: layers, name: "layer", axisLabel: { color: p.fg } },
    visualMap: { min: Math.min(...vals), max: Math.max(...vals), calculable: true, precision: 3,
                 orient: "horizontal", left: "center", bottom: 0, itemHeight: 120,
                 textStyle: { color: p.fg },
                 inRange: { color: lowIsGood ? ["#2b83ba", "#abdda4", "#fdae61", "#d7191c"]
                                             : ["#d7191c", "#fdae61", "#abdda4", "#2b83ba"] } },
    series: [{ type: "heatmap", data: values,
               label: { show: true, fontSize: 9, formatter: (x: any) =>
                 marked.has(`${x.data[1]}:${ops[x.data[0]]}`) ? "●" : "" },
               emphasis: { itemStyle: { borderColor: p.fg, borderWidth: 1 } } }],
  }, Math.max(240, 28 * layers.length + 120));
}

function space(ins: Insights): HTMLElement {
  const sp = ins.space;
  if (!sp) return section("Search space", "m-space", none("The space has not been built yet."));
  const layers = Array.from({ length: sp.num_layers }, (_, i) => String(i));
  const parts: HTMLElement[] = [h("p", { class: "muted" },
    `${sp.kind === "hardware" ? "Hardware-aware space (HURRICANE, Eq. 2)" : "The op pool"}: ` +
    `${sp.num_layers} layers, ${sp.ops.length} ops` +
    (sp.choices.every((ops) => ops.length === sp.ops.length) ? ", every op on every layer: " +
      sp.ops.join(", ") + "." : ". ● marks the ops kept for a layer."))];
  const devs = Object.keys(sp.scores ?? {});
  if (devs.length) {
    for (const d of devs) {
      const sc = sp.scores![d];
      const chosen = sp.chosen?.[d] ?? sp.choices;
      const marked = new Set(chosen.flatMap((ops, l) => ops.map((o) => `${l}:${o}`)));
      const values: [number, number, number][] = [];
      layers.forEach((l, li) => sp.ops.forEach((o, oi) => {
        const v = sc[l]?.[o];
        if (v !== undefined) values.push([oi, li, v]);
      }));
      parts.push(h("h3", {}, `${d}: Eq. 2 score per layer and op`),
        heat(`Eq. 2 scores on ${d}`, layers, sp.ops, values, (v) => num(v, 3), marked));
    }
  } else if (sp.choices.some((ops) => ops.length < sp.ops.length)) {
    const marked = new Set(sp.choices.flatMap((ops, l) => ops.map((o) => `${l}:${o}`)));
    const values: [number, number, number][] = [];
    layers.forEach((_, li) => sp.ops.forEach((o, oi) => values.push([oi, li, marked.has(`${li}:${o}`) ? 1 : 0])));
    parts.push(heat("Ops per layer", layers, sp.ops, values, (v) => (v ? "in the space" : "not in it"), marked));
  }
  return section("Search space", "m-space", ...parts);
}

function tables(ins: Insights): HTMLElement {
  const t = ins.tables ?? {};
  const devs = Object.keys(t);
  if (!devs.length) return section("Latency tables", "m-tables", none("No device has been profiled yet."));
  return section("Latency tables", "m-tables", ...devs.flatMap((d) => {
    const ops = [...new Set(Object.values(t[d].ops).flatMap((r) => Object.keys(r)))];
    const layers = Object.keys(t[d].ops).sort((a, b) => Number(a) - Number(b));
    const values: [number, number, number][] = [];
    layers.forEach((l, li) => ops.forEach((o, oi) => {
      const v = t[d].ops[l][o];
      if (v !== undefined) values.push([oi, li, v]);
    }));
    return [h("h3", {}, `${d}: ms per layer and op`, t[d].source ? ` (${t[d].source})` : "",
              t[d].fixed_ms != null ? h("span", { class: "muted" }, ` · stem and head ${ms(t[d].fixed_ms, 3)}`) : ""),
            heat(`Latency table of ${d}`, layers, ops, values, (v) => ms(v, 3), new Set(), true)];
  }));
}

function predictors(ins: Insights): HTMLElement {
  const pr = ins.predictors ?? {};
  const devs = Object.keys(pr);
  if (!devs.length) return section("Latency predictor", "m-predictor", none("No predictor has been fitted yet."));
  const p = palette();
  return section("Latency predictor", "m-predictor", ...devs.flatMap((d) => {
    const f = pr[d];
    const m = f.metrics ?? {};
    const pts = f.points ?? [];
    const all = pts.flatMap((x) => [x.measured_ms, x.predicted_ms]);
    const lo = all.length ? Math.min(...all) * 0.95 : 0;
    const hi = all.length ? Math.max(...all) * 1.05 : 1;
    const splits = [...new Set(pts.map((x) => x.split ?? "all"))];
    return [
      h("h3", {}, d),
      h("p", { class: "metrics", "data-device": d },
        `MAPE ${num(m.mape, 1)}% · within ±10%: ${pct(m.within_10pct, 0)} · SRCC ${num(m.srcc, 3)}`,
        m.max_ape != null ? ` · worst ${num(m.max_ape, 1)}%` : "",
        f.table_sum ? h("span", { class: "muted" },
          ` (the table's sum alone: MAPE ${num(f.table_sum.mape, 1)}%, SRCC ${num(f.table_sum.srcc, 3)})`) : ""),
      pts.length ? chart(`Predicted against measured latency on ${d}`, {
        tooltip: { trigger: "item", formatter: (x: any) =>
          `${esc(x.data[2])}<br/>measured ${ms(x.data[0])} · predicted ${ms(x.data[1])}` },
        legend: { top: 0, textStyle: { color: p.fg } },
        grid: { left: 64, right: 16, top: 32, bottom: 48 },
        xAxis: axis("measured (ms)", { type: "value", min: lo, max: hi,
                                       axisLabel: { formatter: (v: number) => v.toFixed(1) } }),
        yAxis: axis("predicted (ms)", { type: "value", min: lo, max: hi, nameGap: 44,
                                        axisLabel: { formatter: (v: number) => v.toFixed(1) } }),
        series: [
          ...splits.map((sp) => ({ name: sp, type: "scatter", symbolSize: 8,
            data: pts.filter((x) => (x.split ?? "all") === sp)
                     .map((x) => [x.measured_ms, x.predicted_ms, x.arch]) })),
          { name: "y = x", type: "line", showSymbol: false, silent: true,
            lineStyle: { color: p.muted, type: "dashed" }, data: [[lo, lo], [hi, hi]] },
        ],
      }, 340) : none("The predictor's points were not recorded for this search."),
    ];
  }));
}

function correlation(ins: Insights): HTMLElement | null {
  const c = ins.correlation;
  if (!c || !c.devices?.length) return null;
  const values: [number, number, number][] = [];
  c.devices.forEach((_, i) => c.devices.forEach((_, j) => values.push([j, i, c.srcc[i][j]])));
  const p = palette();
  const proxy = Object.entries(c.proxy ?? {});
  return section("Devices: rank correlation and proxies", "m-correlation",
    chart("SRCC between devices' latencies", {
      tooltip: { formatter: (x: any) => `${esc(c.devices[x.data[1]])} · ${esc(c.devices[x.data[0]])}: ${num(x.data[2], 3)}` },
      grid: { left: 96, right: 16, top: 8, bottom: 80 },
      xAxis: { type: "category", data: c.devices, axisLabel: { rotate: 30, color: p.fg } },
      yAxis: { type: "category", data: c.devices, axisLabel: { color: p.fg } },
      visualMap: { min: -1, max: 1, orient: "horizontal", left: "center", bottom: 0,
                   textStyle: { color: p.fg }, inRange: { color: ["#d7191c", "#ffffbf", "#2b83ba"] } },
      series: [{ type: "heatmap", data: values,
                 label: { show: true, formatter: (x: any) => num(x.data[2], 2) } }],
    }, Math.max(240, 40 * c.devices.length + 100)),
    proxy.length ? table(["target", "decision"], proxy.map(([t, v]) => [t,
      typeof v === "object" ? Object.entries(v as Record<string, unknown>)
        .map(([k, x]) => `${k}: ${typeof x === "number" ? num(x, 3) : String(x)}`).join(" · ")
        : String(v)])) : null);
}
