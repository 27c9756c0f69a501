// The results: per device, the accuracy–latency front with the budget and the winner, the
// winner as a layer diagram, and the artifacts with sizes, SHA-256 and downloads.
import { get } from "../api";
import { axis, chart, esc, palette } from "../charts";
import { bytes, clear, errorBox, h, ms, pct } from "../dom";
import type { Artifact, EvolutionInsight, Insights, LayerInfo, SearchView } from "../types";

export async function resultsTab(panel: HTMLElement, view: SearchView, signal: AbortSignal,
                                 onView: ((v: SearchView) => void)[]): Promise<void> {
  const enc = encodeURIComponent(view.search_id);
  const load = async () => {
    try {
      const [ins, arts] = await Promise.all([
        get<Insights>(`/v1/searches/${enc}/insights`),
        get<{ data: Artifact[] }>(`/v1/searches/${enc}/artifacts?checksums=true`),
      ]);
      if (!signal.aborted) clear(panel, ...render(view, ins, arts.data));
    } catch (err) {
      clear(panel, errorBox(err));
    }
  };
  await load();
  let state = view.state;
  onView.push((v) => {
    if (v.state !== state) {
      state = v.state;
      view = v;
      void load();
    }
  });
}

/** The front of one device: every architecture evolution kept, the Pareto front, the budget
 * and the winner (hover for the architecture). */
export function frontChart(label: string, series: { name: string; e: EvolutionInsight;
                                                    winner?: string | null }[], height = 360): HTMLElement {
  const p = palette();
  const budget = series.find((s) => s.e.budget_ms != null)?.e.budget_ms;
  const out: Record<string, unknown>[] = [];
  for (const s of series) {
    const pts = [...s.e.top, ...s.e.pareto];
    out.push({ name: `${s.name} evaluated`, type: "scatter", symbolSize: 7, itemStyle: { opacity: 0.55 },
               data: pts.map((x) => [x.latency_ms, x.accuracy, x.arch]) });
    out.push({ name: `${s.name} Pareto front`, type: "line", step: "end", symbolSize: 8,
               data: [...s.e.pareto].sort((a, b) => a.latency_ms - b.latency_ms)
                 .map((x) => [x.latency_ms, x.accuracy, x.arch]) });
    const w = pts.find((x) => x.arch === s.winner);
    if (w) {
      out.push({ name: `${s.name} winner`, type: "scatter", symbol: "diamond", symbolSize: 18,
                 itemStyle: { color: p.good, borderColor: p.fg, borderWidth: 1 },
                 data: [[w.latency_ms, w.accuracy, w.arch]] });
    }
  }
  if (budget != null && out.length) {
    out[0].markLine = { silent: true, symbol: "none", lineStyle: { color: p.bad, type: "dashed" },
                        label: { formatter: `budget ${ms(budget)}`, color: p.bad },
                        data: [{ xAxis: budget }] };
  }
  return chart(label, {
    tooltip: { trigger: "item", formatter: (x: any) =>
      `${esc(x.seriesName)}<br/><span style="font-family:monospace">${esc(x.data[2])}</span><br/>` +
      `${pct(x.data[1], 2)} · ${ms(x.data[0])}` },
    legend: { top: 0, type: "scroll", textStyle: { color: p.fg } },
    grid: { left: 60, right: 24, top: 36, bottom: 48 },
    xAxis: axis("latency (ms, predicted)", { type: "value" }),
    yAxis: axis("top-1 through the supernet", { type: "value", nameGap: 44,
                                                 axisLabel: { formatter: (v: number) => pct(v, 0) } }),
    series: out,
  }, height);
}

function human(n: number | null | undefined): string {
  if (n == null) return "–";
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : String(n);
}

export function layerDiagram(layers: LayerInfo[]): HTMLElement {
  return h("ol", { class: "layers", "aria-label": "Winner's layers" }, layers.map((l) =>
    h("li", { class: `layer ${l.op.startsWith("SEP") ? "sep" : l.op.startsWith("MB") ? "mb" : "choice"}`,
              title: `${human(l.macs)} MACs · ${human(l.params)} params` },
      h("b", {}, l.op),
      h("span", {}, [l.kernel ? `k${l.kernel}` : null, l.expansion ? `e${l.expansion}` : null,
                     l.se ? "SE" : null, l.stride && l.stride > 1 ? `s${l.stride}` : null]
        .filter(Boolean).join(" ")),
      h("span", { class: "muted small" }, l.cin != null ? `${l.cin}→${l.cout}` : "",
        l.hw != null ? ` @${l.hw}²` : ""))));
}

function render(view: SearchView, ins: Insights, arts: Artifact[]): HTMLElement[] {
  const out: HTMLElement[] = [];
  const targets = view.targets;
  for (const d of targets) {
    const w = ins.winners?.[d] ?? view.devices[d];
    const evo = Object.entries(ins.evolution ?? {}).filter(([, per]) => per[d]);
    const card = h("section", { class: "card", "aria-labelledby": `r-${d}`, "data-device": d },
      h("h2", { id: `r-${d}` }, d));
    if (evo.length) {
      card.appendChild(frontChart(`Accuracy against latency on ${d}`, evo.map(([step, per]) => ({
        name: step, e: per[d], winner: w?.step === step || evo.length === 1 ? w?.arch : null }))));
    } else {
      card.appendChild(h("p", { class: "muted" }, "Evolution has not run on this device yet."));
    }
    if (w?.arch) {
      const layers = (ins.winners?.[d]?.layers ?? []) as LayerInfo[];
      const wx = ins.winners?.[d];
      card.append(
        h("h3", {}, "Winner"),
        h("p", { class: "mono small arch" }, w.arch),
        h("dl", { class: "facts" },
          h("dt", {}, "test top-1"), h("dd", { "data-fact": "top1" }, pct(w.top1, 2)),
          h("dt", {}, "supernet top-1"), h("dd", {}, pct(w.supernet_top1, 2)),
          h("dt", {}, "predicted"), h("dd", {}, ms(w.predicted_latency_ms)),
          h("dt", {}, "measured"), h("dd", {}, ms(w.measured_latency_ms)),
          h("dt", {}, "budget"), h("dd", {}, ms(w.budget_ms)),
          h("dt", {}, "MACs"), h("dd", {}, human(wx?.macs)),
          h("dt", {}, "params"), h("dd", {}, human(wx?.params))),
        layers.length ? layerDiagram(layers) : h("p", { class: "muted" }, "Layer details are recorded when the model is exported."));
    }
    out.push(card);
  }
  const rows = arts.filter((a) => !a.key.startsWith("state/") && !a.key.startsWith("jobs/"));
  out.push(h("section", { class: "card", "aria-labelledby": "r-artifacts" },
    h("h2", { id: "r-artifacts" }, "Artifacts"),
    rows.length ? h("div", { class: "table-wrap" }, h("table", { class: "artifacts" },
      h("thead", {}, h("tr", {}, ["key", "size", "SHA-256", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((a) => h("tr", { "data-key": a.key },
        h("td", { class: "mono small" }, a.key),
        h("td", {}, bytes(a.size)),
        h("td", { class: "mono small sha" }, a.sha256 ?? "–"),
        h("td", {}, h("a", { href: a.url, download: a.key.split("/").pop(),
                             "aria-label": `Download ${a.key}` }, "Download"))))))) :
      h("p", { class: "muted" }, "No artifacts yet.")));
  return out;
}
