// One search: its header and actions (cancel, resume, purge), and three tabs: the run (plan
// timeline live from the event stream, unit logs), the method and the results.
import { ApiError, followEvents, get, request } from "../api";
import { age, badge, clear, confirmDialog, duration, errorBox, h } from "../dom";
import type { Ctx, SearchView, Step, Unit } from "../types";
import { methodTab } from "./method";
import { resultsTab } from "./results";

const TABS: [string, string][] = [["run", "Run"], ["method", "Method"], ["results", "Results"]];
const ACTIVE = new Set(["queued", "running"]);

export async function searchView(ctx: Ctx, id: string, tab: string): Promise<void> {
  const { main, signal } = ctx;
  let view = await get<SearchView>(`/v1/searches/${encodeURIComponent(id)}`);
  const head = h("div");
  const panel = h("section", { id: "panel", role: "tabpanel", "aria-labelledby": `tab-${tab}` });
  const tabs = h("div", { class: "tabs", role: "tablist", "aria-label": "Views of this search" },
    TABS.map(([key, label]) => h("a", {
      id: `tab-${key}`, role: "tab", href: `#/search/${encodeURIComponent(id)}/${key}`,
      "aria-selected": key === tab ? "true" : "false",
    }, label)));
  clear(main, head, tabs, panel);

  let gone = false; // purged: this page asks the API nothing more about it
  const renderHead = () => clear(head, header(view, async () => {
    view = await get<SearchView>(`/v1/searches/${encodeURIComponent(id)}`);
    renderHead();
    onView.forEach((f) => f(view));
  }, () => {
    gone = true;
    if (pending !== null) clearTimeout(pending);
  }));
  const onView: ((v: SearchView) => void)[] = [];
  renderHead();

  // one event stream per page: every tab re-renders from the fresh view it triggers
  let pending: number | null = null;
  const events: { event: string; data: any; at: Date }[] = [];
  const onEvent: ((e: { event: string; data: any }) => void)[] = [];
  const refresh = () => {
    if (pending !== null || gone) return;
    pending = window.setTimeout(async () => {
      pending = null;
      if (gone || signal.aborted) return;
      try {
        view = await get<SearchView>(`/v1/searches/${encodeURIComponent(id)}`);
      } catch {
        return;
      }
      if (signal.aborted) return;
      renderHead();
      onView.forEach((f) => f(view));
    }, 300);
  };
  if (ACTIVE.has(view.state)) {
    void followEvents(id, (e) => {
      events.push({ ...e, at: new Date() });
      if (events.length > 200) events.shift();
      onEvent.forEach((f) => f(e));
      refresh();
    }, signal).catch(() => {});
  }

  if (tab === "method") await methodTab(panel, view, signal, onView);
  else if (tab === "results") await resultsTab(panel, view, signal, onView);
  else runTab(panel, view, events, onView, onEvent, signal);
}

function header(v: SearchView, changed: () => Promise<void>, purged: () => void): HTMLElement[] {
  const enc = encodeURIComponent(v.search_id);
  const msg = h("p", { role: "status", class: "muted" });
  const act = (label: string, title: string, text: string, run: () => Promise<unknown>,
               danger = false) =>
    h("button", { class: danger ? "danger" : "", onclick: async () => {
      if (!(await confirmDialog(title, text, label, danger))) return;
      try {
        if ((await run()) === "gone") return;
        msg.textContent = `${label}: done.`;
        await changed();
      } catch (err) {
        msg.textContent = err instanceof ApiError ? `${label}: ${err.text}` : String(err);
      }
    } }, label);
  const actions = [
    ACTIVE.has(v.state) ? act("Cancel", `Cancel ${v.name}?`,
      "Queued work is revoked and running jobs are stopped. Artifacts are kept; you can resume.",
      () => request("DELETE", `/v1/searches/${enc}`)) : null,
    ["failed", "cancelled"].includes(v.state) ? act("Resume", `Resume ${v.name}?`,
      "It runs again from its stored step results.",
      () => request("POST", `/v1/searches/${enc}/resume`)) : null,
    act("Purge", `Purge ${v.name}?`,
      "Every artifact and record of this search is deleted. This cannot be undone.",
      async () => {
        purged();
        await request("DELETE", `/v1/searches/${enc}?purge=true`);
        location.hash = "#/"; // leaving the page stops its stream
        return "gone";
      }, true),
  ];
  return [
    h("div", { class: "row between wrap" },
      h("div", {},
        h("h1", {}, v.name, " ", badge(v.state)),
        h("p", { class: "muted" }, h("span", { class: "mono" }, v.search_id), " · ", v.strategy,
          " · ", v.targets.join(", "), " · ", v.owner, " · created ", age(v.created),
          v.generation > 1 ? ` · run ${v.generation}` : "")),
      h("div", { class: "row wrap" }, actions)),
    msg,
    v.error ? h("div", { class: "error", role: "alert" },
      v.failed_step ? `${v.failed_step}: ` : "", v.error) : null,
    v.warnings?.length ? h("ul", { class: "warnings", "aria-label": "Warnings" },
      v.warnings.map((w) => h("li", {}, w))) : null,
  ].filter(Boolean) as HTMLElement[];
}

function bounds(v: SearchView): [number, number] {
  const t0 = Date.parse(v.created);
  let t1 = v.finished ? Date.parse(v.finished) : Date.now();
  for (const st of Object.values(v.steps)) {
    for (const x of [st.finished, ...Object.values(st.units ?? {}).map((u) => u.finished)]) {
      if (x) t1 = Math.max(t1, Date.parse(x));
    }
  }
  return [t0, Math.max(t1, t0 + 1000)];
}

function bar(start: string | null | undefined, end: string | null | undefined, state: string,
             span: [number, number]): HTMLElement {
  const track = h("div", { class: "track" });
  if (!start) return track;
  const [t0, t1] = span;
  const a = Date.parse(start);
  const b = end ? Date.parse(end) : Date.now();
  const left = (100 * (a - t0)) / (t1 - t0);
  const width = Math.max(0.6, (100 * (b - a)) / (t1 - t0));
  track.appendChild(h("div", { class: `fill s-${state}`,
                               style: `left:${left.toFixed(2)}%;width:${Math.min(width, 100 - left).toFixed(2)}%` }));
  return track;
}

function unitProgress(u: Unit, key: string, v: SearchView): HTMLElement | null {
  const p = u.progress ?? v.progress?.[key];
  if (!p || u.state !== "running") return null;
  const loss = p.metrics?.loss;
  return h("div", { class: "progress small" },
    h("progress", { max: p.total, value: p.completed, "aria-label": p.description }),
    ` ${p.description} ${p.completed}/${p.total}`,
    typeof loss === "number" ? ` · loss ${loss.toFixed(3)}` : "");
}

function runTab(panel: HTMLElement, first: SearchView, events: { event: string; data: any; at: Date }[],
                onView: ((v: SearchView) => void)[],
                onEvent: ((e: { event: string; data: any }) => void)[], signal: AbortSignal): void {
  const timeline = h("div", { class: "timeline", role: "list", "aria-label": "Plan" });
  const logBox = h("div", { class: "card log-card", hidden: true });
  const feed = h("ol", { class: "feed", "aria-live": "polite", "aria-label": "Live events" });
  let logUnit: [string, string] | null = null;
  let logTimer: number | null = null;
  let view = first;

  const render = (v: SearchView) => {
    view = v;
    const span = bounds(v);
    clear(timeline, v.plan.map((name) => {
      const st: Step = v.steps[name] ?? { state: "pending", warnings: [], units: {} };
      const units = Object.entries(st.units ?? {});
      return h("div", { class: "tl-step", role: "listitem", "data-step": name },
        h("div", { class: "tl-row" },
          h("div", { class: "tl-label" }, h("b", {}, name), " ", badge(st.state)),
          bar(st.started, st.finished, st.state, span),
          h("div", { class: "tl-meta" }, duration(st.seconds),
            st.reason ? h("div", { class: "muted small" }, st.reason) : null)),
        units.map(([unit, u]) => h("div", { class: "tl-row unit" },
          h("div", { class: "tl-label" },
            h("button", { class: "link", "aria-label": `Log of ${name} ${unit}`,
                          onclick: () => openLog(name, unit) }, unit),
            " ", badge(u.state),
            u.attempt && u.attempt > 1 ? h("span", { class: "muted small" }, ` attempt ${u.attempt}`) : null),
          bar(u.started, u.finished, u.state, span),
          h("div", { class: "tl-meta" }, duration(u.seconds),
            u.queued_s ? h("div", { class: "muted small" }, `queued ${duration(u.queued_s)}`) : null,
            u.reason ? h("div", { class: "muted small" }, u.reason) : null,
            unitProgress(u, `${name}/${unit}`, v),
            u.error ? h("div", { class: "error small" }, u.error.slice(0, 400)) : null))),
        st.warnings?.length ? h("ul", { class: "warnings small" },
          st.warnings.map((w) => h("li", {}, w))) : null);
    }));
    if (logUnit && v.steps[logUnit[0]]?.units?.[logUnit[1]]?.state !== "running") void loadLog();
  };

  async function loadLog(): Promise<void> {
    if (!logUnit) return;
    const [step, unit] = logUnit;
    try {
      const log = await get<{ lines: string[]; state: string; attempt?: number | null;
                              exit_code?: number | null }>(
        `/v1/searches/${encodeURIComponent(view.search_id)}/logs/${step}/${unit}?lines=300`);
      if (signal.aborted) return;
      const pre = h("pre", { class: "log", tabindex: 0, "aria-label": `Log of ${step} ${unit}` },
        log.lines.length ? log.lines.join("\n") : "(no output yet)");
      clear(logBox, h("div", { class: "row between" },
        h("h2", {}, `${step} · ${unit}`, " ", badge(log.state)),
        h("button", { class: "ghost", onclick: () => {
          logUnit = null;
          logBox.hidden = true;
        } }, "Close")),
        log.exit_code != null ? h("p", { class: "muted small" }, `exit code ${log.exit_code}`) : null,
        pre);
      pre.scrollTop = pre.scrollHeight;
    } catch (err) {
      clear(logBox, errorBox(err));
    }
  }

  function openLog(step: string, unit: string): void {
    logUnit = [step, unit];
    logBox.hidden = false;
    void loadLog();
    if (logTimer === null) {
      logTimer = window.setInterval(() => {
        const u = logUnit && view.steps[logUnit[0]]?.units?.[logUnit[1]];
        if (u && u.state === "running") void loadLog();
      }, 2000);
    }
  }
  signal.addEventListener("abort", () => {
    if (logTimer !== null) clearInterval(logTimer);
  });

  const addEvent = (e: { event: string; data: any }, at = new Date()) => {
    const d = e.data ?? {};
    const what = e.event === "progress"
      ? `${d.step}/${d.unit}: ${d.description} ${d.completed}/${d.total}`
      : e.event === "step" ? `step ${d.step}: ${d.state}${d.reason ? ` (${d.reason})` : ""}`
      : e.event === "unit" ? `${d.step}/${d.unit}: ${d.state}${d.attempt > 1 ? ` (attempt ${d.attempt})` : ""}`
      : e.event === "state" || e.event === "end" ? `search ${d.state}`
      : e.event === "warning" ? `warning: ${d.message}` : e.event;
    if (e.event === "progress" && feed.firstElementChild?.getAttribute("data-key") === `${d.step}/${d.unit}`) {
      feed.firstElementChild.lastChild!.textContent = what;
      return;
    }
    feed.prepend(h("li", { "data-key": e.event === "progress" ? `${d.step}/${d.unit}` : "",
                           class: `ev-${e.event}` },
      h("time", { class: "muted small" }, at.toLocaleTimeString()), " ", what));
    while (feed.childElementCount > 60) feed.lastElementChild!.remove();
  };
  events.forEach((e) => addEvent(e, e.at));
  onEvent.push((e) => addEvent(e));
  onView.push(render);
  render(first);
  clear(panel,
    h("div", { class: "grid-2" },
      h("div", { class: "card" }, h("h2", {}, "Plan"), timeline),
      h("div", { class: "card" }, h("h2", {}, "Events"),
        ACTIVE.has(first.state) ? feed
          : h("p", { class: "muted" }, `This search has ended (${first.state}): nothing more will happen.`))),
    logBox);
}
