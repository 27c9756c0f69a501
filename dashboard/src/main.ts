// The dashboard's shell: login, the header, and a hash router over the views.
import "./style.css";

import { type Me, token, whenUnauthorized, whoAmI } from "./api";
import { disposeCharts } from "./charts";
import { clear, errorBox, h } from "./dom";
import { compareView } from "./views/compare";
import { devicesView } from "./views/devices";
import { loginView } from "./views/login";
import { searchView } from "./views/search";
import { searchesView } from "./views/searches";
import { submitView } from "./views/submit";
import type { Ctx } from "./types";

let me: Me | null = null;
let current: AbortController | null = null;

const THEME_KEY = "hurricane.theme";

function applyTheme(theme: string): void {
  document.documentElement.dataset.theme = theme;
}

function initialTheme(): string {
  return localStorage.getItem(THEME_KEY)
    ?? (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
}

function header(): void {
  const top = document.getElementById("top")!;
  if (!me) {
    clear(top, h("div", { class: "bar" }, h("span", { class: "brand" }, "hurricane-nas")));
    return;
  }
  const route = location.hash.split("/")[1] ?? "";
  const link = (href: string, text: string, key: string) =>
    h("a", { href, "aria-current": route === key ? "page" : null }, text);
  const theme = h("button", {
    class: "ghost", title: "Switch the colour theme", "aria-label": "Switch the colour theme",
    onclick: () => {
      const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
      localStorage.setItem(THEME_KEY, next);
      applyTheme(next);
      route_();
    },
  }, document.documentElement.dataset.theme === "dark" ? "☀" : "☾");
  const logout = h("button", {
    class: "ghost", onclick: () => {
      token.clear();
      me = null;
      location.hash = "#/login";
    },
  }, "Log out");
  clear(top, h("div", { class: "bar" },
    h("a", { class: "brand", href: "#/" }, "hurricane-nas"),
    h("nav", { "aria-label": "Main" },
      link("#/", "Searches", ""), link("#/submit", "Submit", "submit"),
      link("#/devices", "Devices", "devices")),
    h("span", { class: "who", title: `role: ${me.role}` }, me.name, me.is_admin ? " (admin)" : ""),
    theme, logout));
}

async function route_(): Promise<void> {
  current?.abort();
  disposeCharts();
  current = new AbortController();
  const main = document.getElementById("main")!;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  if (!me && token.get()) {
    try {
      me = await whoAmI();
    } catch {
      token.clear();
    }
  }
  if (!me || parts[0] === "login") {
    me = null;
    header();
    document.title = "Log in · hurricane-nas";
    loginView(main, (who) => {
      me = who;
      location.hash = "#/";
    });
    return;
  }
  header();
  const ctx: Ctx = { me, main, signal: current.signal };
  clear(main);
  try {
    switch (parts[0]) {
      case "":
        document.title = "Searches · hurricane-nas";
        await searchesView(ctx);
        break;
      case "search":
        document.title = `${parts[1]} · hurricane-nas`;
        await searchView(ctx, parts[1], parts[2] || "run");
        break;
      case "compare":
        document.title = "Compare · hurricane-nas";
        await compareView(ctx, (parts[1] || "").split(",").filter(Boolean));
        break;
      case "submit":
        document.title = "Submit · hurricane-nas";
        await submitView(ctx);
        break;
      case "devices":
        document.title = "Devices · hurricane-nas";
        await devicesView(ctx, parts[1]);
        break;
      default:
        clear(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "All searches")));
    }
  } catch (err) {
    if (!ctx.signal.aborted) main.appendChild(errorBox(err));
  }
}

applyTheme(initialTheme());
whenUnauthorized(() => {
  token.clear();
  me = null;
  if (!location.hash.startsWith("#/login")) location.hash = "#/login";
});
window.addEventListener("hashchange", () => void route_());
void route_();
