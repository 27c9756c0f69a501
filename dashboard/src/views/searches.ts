// All searches: state, strategy, devices, progress, owner (admins), age, best top-1 and latency
// per device; filter, sort, paging, live updates; pick two or more to compare.
import { get } from "../api";
import { age, badge, clear, h, ms, pct } from "../dom";
import type { Ctx, SearchSummary } from "../types";

const STATES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const PAGE = 25;
const POLL_MS = 4000;

type SortKey = "created" | "name" | "state" | "strategy" | "top1" | "owner";

function bestTop1(s: SearchSummary): number {
  const v = Object.values(s.results ?? {}).map((r) => r.top1 ?? -1);
  return v.length ? Math.max(...v) : -1;
}

export async function searchesView(ctx: Ctx): Promise<void> {
  const { main, me, signal } = ctx;
  const q = new URLSearchParams(location.hash.split("?")[1] ?? "");
  let state = q.get("state") ?? "";
  let owner = q.get("owner") ?? "";
  let text = "";
  let sort: SortKey = "created";
  let desc = true;
  const cursors: (string | null)[] = [null]; // the cursor of each page seen so far
  let page = 0;
  let data: SearchSummary[] = [];
  let next: string | null = null;
  const picked = new Set<string>();

  const status = h("p", { class: "muted", "aria-live": "polite" });
  const body = h("div");
  const compare = h("button", { class: "primary", disabled: true, onclick: () => {
    location.hash = `#/compare/${[...picked].map(encodeURIComponent).join(",")}`;
  } }, "Compare selected");

  const stateSel = h("select", { id: "f-state", "aria-label": "State" },
    STATES.map((s) => h("option", { value: s, selected: s === state }, s || "any state")));
  stateSel.addEventListener("change", () => {
    state = stateSel.value;
    cursors.splice(1);
    page = 0;
    void load();
  });
  const textIn = h("input", { id: "f-text", type: "search", placeholder: "Filter by name or id",
                              "aria-label": "Filter by name or id" });
  textIn.addEventListener("input", () => {
    text = textIn.value.trim().toLowerCase();
    render();
  });
  const ownerIn = me.is_admin
    ? h("input", { id: "f-owner", type: "search", placeholder: "Owner", value: owner,
                   "aria-label": "Owner", pattern: "[a-z0-9][a-z0-9_.\\-]*" })
    : null;
  ownerIn?.addEventListener("change", () => {
    owner = ownerIn.value.trim();
    cursors.splice(1);
    page = 0;
    void load();
  });

  const prev = h("button", { onclick: () => {
    if (page > 0) {
      page--;
      void load();
    }
  } }, "← Newer");
  const nextBtn = h("button", { onclick: () => {
    if (next) {
      cursors[page + 1] = next;
      page++;
      void load();
    }
  } }, "Older →");

  clear(main,
    h("div", { class: "row between wrap" },
      h("h1", {}, "Searches"),
      h("div", { class: "row wrap" }, compare, h("a", { class: "button", href: "#/submit" },
                                                 "New search"))),
    h("div", { class: "row wrap filters" }, textIn, stateSel, ownerIn),
    status, body, h("div", { class: "row end" }, prev, nextBtn));

  function header(label: string, key: SortKey): HTMLElement {
    const active = sort === key;
    return h("th", { scope: "col", "aria-sort": active ? (desc ? "descending" : "ascending") : null },
      h("button", { class: "sort", onclick: () => {
        desc = sort === key ? !desc : key === "created" || key === "top1";
        sort = key;
        render();
      } }, label, active ? (desc ? " ▾" : " ▴") : ""));
  }

  function render(): void {
    const rows = data.filter((s) => !text || s.name.toLowerCase().includes(text)
                                     || s.search_id.includes(text));
    const val = (s: SearchSummary): string | number =>
      sort === "top1" ? bestTop1(s) : (s[sort] as string) ?? "";
    rows.sort((a, b) => {
      const x = val(a), y = val(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (desc ? -1 : 1);
    });
    status.textContent = rows.length
      ? `${rows.length} search${rows.length === 1 ? "" : "es"} on page ${page + 1}`
      : "No searches match.";
    const now = Date.now();
    const tbl = h("table", { class: "searches" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, h("span", { class: "sr" }, "Select")),
        header("Search", "name"), header("State", "state"), header("Strategy", "strategy"),
        h("th", { scope: "col" }, "Progress"),
        me.is_admin ? header("Owner", "owner") : null,
        header("Age", "created"), header("Best top-1 · latency per device", "top1"))),
      h("tbody", {}, rows.map((s) => {
        const box = h("input", { type: "checkbox", "aria-label": `Select ${s.search_id}`,
                                 checked: picked.has(s.search_id) });
        box.addEventListener("change", () => {
          if (box.checked) picked.add(s.search_id);
          else picked.delete(s.search_id);
          compare.disabled = picked.size < 2;
        });
        const p = s.progress;
        return h("tr", { "data-search": s.search_id },
          h("td", {}, box),
          h("td", {}, h("a", { href: `#/search/${encodeURIComponent(s.search_id)}/run` }, s.name),
            h("div", { class: "muted small mono" }, s.search_id)),
          h("td", {}, badge(s.state)),
          h("td", {}, s.strategy),
          h("td", {}, p ? h("div", { class: "progress", title: `${p.done} of ${p.total} steps` },
            h("progress", { max: p.total, value: p.done, "aria-label": `${p.done} of ${p.total} steps` }),
            h("span", { class: "small" }, `${p.done}/${p.total}`)) : "–"),
          me.is_admin ? h("td", {}, s.owner) : null,
          h("td", { title: s.created }, age(s.created, now)),
          h("td", {}, s.devices.map((d) => {
            const r = s.results?.[d];
            return h("div", { class: "dev" }, h("b", {}, d), " ",
              r?.top1 != null ? pct(r.top1) : "–", " · ", ms(r?.latency_ms),
              r?.budget_ms != null ? h("span", { class: "muted" }, ` / ${ms(r.budget_ms)}`) : "");
          })));
      })));
    clear(body, h("div", { class: "table-wrap" }, tbl));
    prev.disabled = page === 0;
    nextBtn.disabled = !next;
  }

  async function load(): Promise<void> {
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (state) params.set("state", state);
    if (owner) params.set("owner", owner);
    const cur = cursors[page];
    if (cur) params.set("cursor", cur);
    const got = await get<{ data: SearchSummary[]; next_cursor: string | null }>(
      `/v1/searches?${params}`);
    if (signal.aborted) return;
    data = got.data;
    next = got.next_cursor;
    render();
  }

  await load();
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") void load().catch(() => {});
  }, POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
