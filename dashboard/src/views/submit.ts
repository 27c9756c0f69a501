// Submit a search: a YAML editor with the spec's JSON-schema help for the field at the cursor,
// starter specs from examples/, and the server's validation errors shown at their lines.
import { isMap, isScalar, isSeq, LineCounter, parseDocument } from "yaml";
import type { Ctx } from "../types";

import { ApiError, get, request } from "../api";
import { clear, h } from "../dom";

// the repository's examples/*.yaml, bundled at build time
const STARTERS = import.meta.glob("../../../examples/*.yaml", { query: "?raw", import: "default",
                                                                eager: true }) as Record<string, string>;

type Schema = Record<string, any>;

function starters(): [string, string][] {
  return Object.entries(STARTERS)
    .map(([path, text]) => [path.split("/").pop()!.replace(/\.yaml$/, ""), text] as [string, string])
    .sort(([a], [b]) => (a === "digits-service" ? -1 : b === "digits-service" ? 1 : a.localeCompare(b)));
}

/** The schema of the field at ``path`` (names and list indexes) in the spec's schema. */
export function fieldSchema(root: Schema, defs: Record<string, Schema>,
                            path: (string | number)[]): Schema | null {
  const deref = (s: Schema | null): Schema | null => {
    let cur = s;
    for (let i = 0; cur && i < 8; i++) {
      if (cur.$ref) cur = { ...defs[cur.$ref.split("/").pop()!], ...cur, $ref: undefined };
      else if (cur.anyOf || cur.oneOf) {
        const alts = (cur.anyOf ?? cur.oneOf).filter((a: Schema) => a.type !== "null");
        if (alts.length !== 1) return cur;
        cur = { ...alts[0], description: cur.description ?? alts[0].description,
                default: cur.default ?? alts[0].default, title: cur.title ?? alts[0].title };
      } else return cur;
    }
    return cur;
  };
  let cur = deref(root);
  for (const p of path) {
    if (!cur) return null;
    if (typeof p === "number") cur = deref(cur.items ?? null);
    else cur = deref(cur.properties?.[p] ?? null);
  }
  return cur;
}

function describe(s: Schema): string[] {
  const out: string[] = [];
  const type = s.type ?? (s.enum ? "enum" : s.properties ? "object" : "");
  if (type) out.push(`type: ${type}${s.items?.type ? ` of ${s.items.type}` : ""}`);
  if (s.enum) out.push(`one of: ${s.enum.join(", ")}`);
  const range = [s.minimum != null ? `≥ ${s.minimum}` : "", s.exclusiveMinimum != null ? `> ${s.exclusiveMinimum}` : "",
                 s.maximum != null ? `≤ ${s.maximum}` : "", s.exclusiveMaximum != null ? `< ${s.exclusiveMaximum}` : ""]
    .filter(Boolean);
  if (range.length) out.push(`range: ${range.join(", ")}`);
  if (s.pattern) out.push(`pattern: ${s.pattern}`);
  if (s.default !== undefined) out.push(`default: ${JSON.stringify(s.default)}`);
  if (s.properties) out.push(`fields: ${Object.keys(s.properties).join(", ")}`);
  return out;
}

/** The path of keys to the node at ``offset`` of the YAML text. */
function pathAt(text: string, offset: number): (string | number)[] {
  const doc = parseDocument(text, { keepSourceTokens: false });
  const path: (string | number)[] = [];
  let node: any = doc.contents;
  for (let depth = 0; node && depth < 12; depth++) {
    let next: any = null;
    if (isMap(node)) {
      for (const pair of node.items as any[]) {
        const k = pair.key, v = pair.value;
        const start = k?.range?.[0] ?? 0;
        const end = v?.range?.[2] ?? k?.range?.[2] ?? start;
        if (offset >= start && offset <= end) {
          path.push(isScalar(k) ? String(k.value) : String(k));
          next = v && !isScalar(v) ? v : null;
          break;
        }
      }
    } else if (isSeq(node)) {
      (node.items as any[]).forEach((it, i) => {
        if (it?.range && offset >= it.range[0] && offset <= it.range[2]) {
          path.push(i);
          next = isScalar(it) ? null : it;
        }
      });
    }
    node = next;
  }
  return path;
}

/** The 1-based line of the node at ``loc`` (the nearest ancestor that exists). */
export function lineOf(text: string, loc: (string | number)[]): number {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc });
  for (let n = loc.length; n > 0; n--) {
    const node: any = doc.getIn(loc.slice(0, n), true);
    if (node?.range) return lc.linePos(node.range[0]).line;
    // the key of a missing value: find the pair in the parent map
    const parent: any = n > 1 ? doc.getIn(loc.slice(0, n - 1), true) : doc.contents;
    if (isMap(parent)) {
      const pair: any = (parent.items as any[]).find((p) => isScalar(p.key) && p.key.value === loc[n - 1]);
      if (pair?.key?.range) return lc.linePos(pair.key.range[0]).line;
    }
  }
  return 1;
}

export async function submitView(ctx: Ctx): Promise<void> {
  const { main } = ctx;
  const list = starters();
  const openapi = await get<Schema>("/openapi.json");
  const defs: Record<string, Schema> = openapi.components?.schemas ?? {};
  const root = defs.SearchSpec;

  const editor = h("textarea", { id: "spec", class: "editor", spellcheck: "false", wrap: "off",
                                 "aria-label": "Search spec (YAML)", "aria-describedby": "field-help" });
  const gutter = h("div", { class: "gutter", "aria-hidden": "true" });
  const help = h("div", { id: "field-help", class: "help", "aria-live": "polite" });
  const errors = h("ul", { class: "field-errors", "aria-label": "Errors" });
  const msg = h("p", { role: "status" });
  const pick = h("select", { id: "starter", "aria-label": "Starter spec" },
    list.map(([name]) => h("option", { value: name }, name)));
  let bad = new Map<number, string[]>();

  const paint = () => {
    const n = editor.value.split("\n").length;
    clear(gutter, Array.from({ length: n }, (_, i) => h("div", {
      class: bad.has(i + 1) ? "bad" : "", title: bad.get(i + 1)?.join("\n") ?? null }, String(i + 1))));
    gutter.scrollTop = editor.scrollTop;
  };
  const showHelp = () => {
    let path: (string | number)[] = [];
    try {
      path = pathAt(editor.value, editor.selectionStart);
    } catch {
      /* mid-edit YAML */
    }
    const s = fieldSchema(root, defs, path);
    const name = path.length ? path.join(".") : "SearchSpec";
    clear(help, h("h3", {}, name),
      s?.description ? h("p", {}, s.description) : h("p", { class: "muted" }, path.length ? "No description." : root.description ?? ""),
      s ? h("ul", { class: "small" }, describe(s).map((d) => h("li", {}, d))) : null);
  };
  const load = (name: string) => {
    editor.value = list.find(([n]) => n === name)?.[1] ?? "";
    editor.setSelectionRange(0, 0);
    bad = new Map();
    clear(errors);
    paint();
    showHelp();
  };
  pick.addEventListener("change", () => load(pick.value));
  editor.addEventListener("input", paint);
  editor.addEventListener("scroll", () => (gutter.scrollTop = editor.scrollTop));
  for (const ev of ["click", "keyup", "focus"]) editor.addEventListener(ev, showHelp);
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey) { // two spaces; Esc then Tab leaves
      if ((editor as any)._escaped) return;
      e.preventDefault();
      editor.setRangeText("  ", editor.selectionStart, editor.selectionEnd, "end");
      paint();
    }
    (editor as any)._escaped = e.key === "Escape";
  });

  const submit = h("button", { class: "primary", type: "submit" }, "Submit search");
  const form = h("form", { class: "submit" },
    h("div", { class: "row wrap" }, h("label", { for: "starter" }, "Start from"), pick),
    h("div", { class: "editor-wrap" }, gutter, editor),
    h("p", { class: "muted small" }, "Tab indents; Esc then Tab moves on. The help panel explains the field at the cursor."),
    errors, msg, h("div", { class: "row" }, submit));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    msg.textContent = "Submitting…";
    clear(errors);
    bad = new Map();
    try {
      const out = await request<{ search_id: string }>("POST", "/v1/searches", editor.value,
                                                       "application/yaml");
      location.hash = `#/search/${encodeURIComponent(out.search_id)}/run`;
    } catch (err) {
      if (err instanceof ApiError && err.fieldErrors.length) {
        msg.textContent = `The service refused the spec: ${err.fieldErrors.length} error(s).`;
        for (const e of err.fieldErrors) {
          const loc = e.loc[0] === "body" ? e.loc.slice(1) : e.loc;
          const line = lineOf(editor.value, loc);
          bad.set(line, [...(bad.get(line) ?? []), e.msg]);
          errors.appendChild(h("li", { "data-line": line, "data-loc": loc.join(".") },
            h("button", { class: "link", type: "button", onclick: () => {
              const rows = editor.value.split("\n");
              const indent = (rows[line - 1] ?? "").length - (rows[line - 1] ?? "").trimStart().length;
              const idx = rows.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0) + indent;
              editor.focus();
              editor.setSelectionRange(idx, idx);
              showHelp();
            } }, `line ${line}`), ` ${loc.join(".") || "spec"}: ${e.msg}`));
        }
      } else {
        msg.textContent = err instanceof ApiError ? err.text : String(err);
      }
      paint();
    } finally {
      submit.disabled = false;
    }
  });
  clear(main, h("h1", {}, "Submit a search"),
    h("div", { class: "grid-submit" }, form, h("aside", { class: "card" }, help)));
  load(list[0]?.[0] ?? "");
}
