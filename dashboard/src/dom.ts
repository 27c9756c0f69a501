// A few DOM and formatting helpers: elements are built with h(), never from HTML strings, so
// nothing a user stored (names, architectures, log lines) can inject markup.

type Child = Node | string | number | null | undefined | false | Child[];
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {},
                                                         ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
    } else if (k === "class") {
      el.className = String(v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

export const pct = (x: number | null | undefined, digits = 1): string =>
  x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`;

export const ms = (x: number | null | undefined, digits = 2): string =>
  x === null || x === undefined ? "–" : `${x.toFixed(digits)} ms`;

export const num = (x: number | null | undefined, digits = 3): string =>
  x === null || x === undefined ? "–" : x.toFixed(digits);

export function duration(s: number | null | undefined): string {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function age(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return "–";
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${x.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function badge(state: string): HTMLElement {
  return h("span", { class: `badge s-${state}` }, state);
}

/** A modal confirmation (a <dialog>: focus is trapped and Esc cancels). */
export function confirmDialog(title: string, text: string, action: string,
                              danger = false): Promise<boolean> {
  return new Promise((resolve) => {
    const ok = h("button", { class: danger ? "danger" : "primary", value: "ok" }, action);
    const cancel = h("button", { value: "back" }, "Back");
    const dlg = h("dialog", { "aria-labelledby": "dlg-title" },
      h("form", { method: "dialog" },
        h("h2", { id: "dlg-title" }, title), h("p", {}, text),
        h("div", { class: "row end" }, cancel, ok)));
    document.body.appendChild(dlg);
    dlg.addEventListener("close", () => {
      resolve(dlg.returnValue === "ok");
      dlg.remove();
    });
    dlg.showModal();
    cancel.focus();
  });
}

export function errorBox(err: unknown): HTMLElement {
  const text = err instanceof Error ? err.message : String(err);
  return h("div", { class: "error", role: "alert" }, text);
}

export function table(head: string[], rows: Child[][], attrs: Attrs = {}): HTMLElement {
  return h("div", { class: "table-wrap" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}
