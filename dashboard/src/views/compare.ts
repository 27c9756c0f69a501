// Two or more searches side by side: their settings and winners per device, and their
// accuracy–latency fronts on each shared device.
import { get } from "../api";
import { clear, duration, h, ms, num, pct } from "../dom";
import type { Ctx, Insights, SearchView } from "../types";
import { frontChart } from "./results";

export async function compareView(ctx: Ctx, ids: string[]): Promise<void> {
  const { main } = ctx;
  if (ids.length < 2) {
    clear(main, h("h1", {}, "Compare"),
      h("p", {}, "Pick two or more searches in the ", h("a", { href: "#/" }, "list"), "."));
    return;
  }
  const got = await Promise.all(ids.map(async (id) => {
    const e = encodeURIComponent(id);
    const [v, ins] = await Promise.all([get<SearchView>(`/v1/searches/${e}`),
                                        get<Insights>(`/v1/searches/${e}/insights`)]);
    return { v, ins };
  }));
  const devices = [...new Set(got.flatMap((g) => g.v.targets))];
  const quality = (ins: Insights) => Object.entries(ins.supernets ?? {})
    .map(([n, s]) => `${n}: ${s.quality ? (s.quality.reliable ? "reliable" : "unreliable") : "–"}` +
      (s.quality?.accuracy_mean != null ? ` (${pct(s.quality.accuracy_mean, 0)})` : "")).join(", ") || "–";
  const total = (v: SearchView) => Object.values(v.steps).reduce((a, s) => a + (s.seconds ?? 0), 0);
  const rows: [string, (g: { v: SearchView; ins: Insights }) => string | HTMLElement][] = [
    ["state", (g) => g.v.state],
    ["strategy", (g) => g.v.strategy],
    ["owner", (g) => g.v.owner],
    ["space", (g) => g.ins.space ? `${g.ins.space.kind}, ${g.ins.space.num_layers} layers, ` +
      `${g.ins.space.ops.length} ops` : "–"],
    ["supernet", (g) => quality(g.ins)],
    ["step time", (g) => duration(total(g.v))],
    ...devices.flatMap((d) => [
      [`${d} top-1`, (g: { v: SearchView }) => pct(g.v.devices[d]?.top1, 2)],
      [`${d} latency (measured)`, (g: { v: SearchView }) => ms(g.v.devices[d]?.measured_latency_ms)],
      [`${d} latency (predicted)`, (g: { v: SearchView }) => ms(g.v.devices[d]?.predicted_latency_ms)],
      [`${d} budget`, (g: { v: SearchView }) => ms(g.v.devices[d]?.budget_ms)],
      [`${d} predictor SRCC`, (g: { ins: Insights }) => num(g.ins.predictors?.[d]?.metrics?.srcc, 3)],
      [`${d} winner`, (g: { v: SearchView }) => h("span", { class: "mono small" }, g.v.devices[d]?.arch ?? "–")],
    ] as [string, (g: { v: SearchView; ins: Insights }) => string | HTMLElement][]),
  ];
  clear(main,
    h("h1", {}, "Compare searches"),
    h("div", { class: "table-wrap" }, h("table", { class: "compare" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""),
        got.map((g) => h("th", { scope: "col" },
          h("a", { href: `#/search/${encodeURIComponent(g.v.search_id)}/results` }, g.v.name),
          h("div", { class: "muted small mono" }, g.v.search_id))))),
      h("tbody", {}, rows.map(([label, f]) => h("tr", {}, h("th", { scope: "row" }, label),
        got.map((g) => h("td", {}, f(g)))))))),
    ...devices.map((d) => {
      const series = got.flatMap((g) => Object.entries(g.ins.evolution ?? {})
        .filter(([, per]) => per[d])
        .map(([step, per]) => ({ name: `${g.v.name} ${step}`, e: per[d],
                                 winner: g.v.devices[d]?.step === step ? g.v.devices[d]?.arch : null })));
      return h("section", { class: "card", "aria-labelledby": `c-${d}` }, h("h2", { id: `c-${d}` }, d),
        series.length ? frontChart(`Fronts on ${d}`, series, 400)
          : h("p", { class: "muted" }, "No front yet."));
    }));
}
