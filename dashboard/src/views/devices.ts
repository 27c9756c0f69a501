// Devices: the registered profiles and the imported latency tables the caller can use, one
// table as a heatmap, and an upload form whose refused rows are listed by line.
import { ApiError, get, request } from "../api";
import { axis, chart, esc, palette } from "../charts";
import { clear, errorBox, h, ms } from "../dom";
import type { Ctx } from "../types";

interface Device {
  name: string;
  backend: string;
  node_label: string | null;
  description: string;
  imported_table: boolean;
  table_scope: string | null;
}

interface TablePublic {
  name: string;
  owner: string | null;
  shared: boolean;
  imported_by?: string | null;
  imported_at?: string | null;
  table: { device?: string; fixed_ms?: number; ops: Record<string, Record<string, number>> };
}

function tableChart(t: TablePublic): HTMLElement {
  const p = palette();
  const layers = Object.keys(t.table.ops).sort((a, b) => Number(a) - Number(b));
  const ops = [...new Set(layers.flatMap((l) => Object.keys(t.table.ops[l])))];
  const data: [number, number, number][] = [];
  layers.forEach((l, li) => ops.forEach((o, oi) => {
    const v = t.table.ops[l][o];
    if (v !== undefined) data.push([oi, li, v]);
  }));
  const vals = data.map((d) => d[2]);
  return chart(`Latency table of ${t.name}`, {
    tooltip: { formatter: (x: any) => `layer ${esc(layers[x.data[1]])} · ${esc(ops[x.data[0]])}: ${ms(x.data[2], 3)}` },
    grid: { left: 56, right: 16, top: 8, bottom: 96 },
    xAxis: { type: "category", data: ops, axisLabel: { rotate: 45, color: p.fg } },
    yAxis: { ...axis("layer"), type: "category", data: layers, scale: false },
    visualMap: { min: Math.min(...vals), max: Math.max(...vals), precision: 3, orient: "horizontal",
                 left: "center", bottom: 0, textStyle: { color: p.fg },
                 inRange: { color: ["#2b83ba", "#abdda4", "#fdae61", "#d7191c"] } },
    series: [{ type: "heatmap", data }],
  }, Math.max(240, 26 * layers.length + 120));
}

export async function devicesView(ctx: Ctx, selected?: string): Promise<void> {
  const { main, me } = ctx;
  const list = h("div");
  const detail = h("div");
  const refresh = async () => {
    const devices = await get<Device[]>("/v1/devices");
    clear(list, h("div", { class: "table-wrap" }, h("table", { class: "devices" },
      h("thead", {}, h("tr", {}, ["device", "backend", "node label", "imported table", "about"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, devices.map((d) => h("tr", { "data-device": d.name },
        h("td", {}, d.imported_table
          ? h("a", { href: `#/devices/${encodeURIComponent(d.name)}` }, d.name) : d.name),
        h("td", {}, d.backend), h("td", { class: "mono small" }, d.node_label ?? "–"),
        h("td", {}, d.imported_table ? (d.table_scope ?? "yes") : "–"),
        h("td", { class: "small" }, d.description)))))));
  };
  await refresh();
  if (selected) {
    try {
      const t = await get<TablePublic>(`/v1/devices/${encodeURIComponent(selected)}/table`);
      clear(detail, h("section", { class: "card", "aria-labelledby": "d-table" },
        h("h2", { id: "d-table" }, `${t.name}'s table`),
        h("p", { class: "muted" }, t.shared ? "shared by an admin" : `owner ${t.owner}`,
          t.imported_by ? ` · imported by ${t.imported_by}` : "",
          t.imported_at ? ` at ${t.imported_at}` : "",
          t.table.fixed_ms != null ? ` · stem and head ${ms(t.table.fixed_ms, 3)}` : ""),
        tableChart(t)));
    } catch (err) {
      clear(detail, errorBox(err));
    }
  }

  // the upload form: a CSV (layer,op,ms rows) or a JSON table
  const name = h("input", { id: "u-name", required: true, pattern: "[a-z0-9][a-z0-9\\-]{0,31}", placeholder: "e.g. phone-npu",
                            value: selected ?? "", "aria-describedby": "u-help" });
  const file = h("input", { id: "u-file", type: "file", accept: ".csv,.json,text/csv,application/json" });
  const text = h("textarea", { id: "u-text", rows: 8, spellcheck: "false", class: "mono",
                               placeholder: "layer,op,median_ms\n0,SEP_3,0.41\n…" });
  const shared = me.is_admin ? h("input", { id: "u-shared", type: "checkbox" }) : null;
  const errors = h("ul", { class: "field-errors", "aria-label": "Refused rows" });
  const msg = h("p", { role: "status" });
  file.addEventListener("change", async () => {
    const f = file.files?.[0];
    if (f) text.value = await f.text();
  });
  const form = h("form", { class: "card upload", "aria-labelledby": "u-title" },
    h("h2", { id: "u-title" }, "Import a latency table"),
    h("p", { id: "u-help", class: "muted small" },
      "Device names are lower-case letters, digits and dashes. A CSV has one row per layer and op ",
      "(see docs/devices.md); a JSON table has ", h("code", {}, "ops: {layer: {op: ms}}"), "."),
    h("label", { for: "u-name" }, "Device"), name,
    h("label", { for: "u-file" }, "File"), file,
    h("label", { for: "u-text" }, "…or paste it"), text,
    shared ? h("label", { class: "inline" }, shared, " share with everyone") : null,
    errors, msg,
    h("button", { class: "primary", type: "submit" }, "Import"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clear(errors);
    msg.textContent = "";
    const body = text.value;
    const json = body.trimStart().startsWith("{");
    const q = shared?.checked ? "?shared=true" : "";
    try {
      const out = await request<{ entries: number; layers: number }>("PUT",
        `/v1/devices/${encodeURIComponent(name.value.trim())}/table${q}`, body,
        json ? "application/json" : "text/csv");
      msg.textContent = `Imported: ${out.layers} layers, ${out.entries} entries.`;
      await refresh();
      location.hash = `#/devices/${encodeURIComponent(name.value.trim())}`;
    } catch (err) {
      if (err instanceof ApiError && err.fieldErrors.length) {
        msg.textContent = `Refused: ${err.fieldErrors.length} problem(s).`;
        for (const e of err.fieldErrors) {
          const where = e.loc.filter((x) => x !== "body").join(" ") || "table";
          errors.appendChild(h("li", { "data-where": where }, h("b", {}, where), `: ${e.msg}`));
        }
      } else {
        msg.textContent = err instanceof ApiError ? err.text : String(err);
      }
    }
  });
  clear(main, h("h1", {}, "Devices"), list, detail, form);
}
