// The login page: a token from `hurricane token create` (or the stack's), kept in this tab.
import { ApiError, type Me, token, whoAmI } from "../api";
import { clear, h } from "../dom";

export function loginView(main: HTMLElement, done: (me: Me) => void): void {
  const input = h("input", { id: "token", name: "token", type: "password", required: true,
                             autocomplete: "off", spellcheck: "false",
                             placeholder: "hur_…", "aria-describedby": "token-help" });
  const msg = h("p", { class: "error", role: "alert", hidden: true });
  const form = h("form", { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Log in"),
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "muted" },
      "A bearer token of this API (", h("code", {}, "hurricane token create NAME"),
      "; a local stack's is in the file ", h("code", {}, "hurricane stack up"),
      " names). It stays in this browser tab only."),
    msg,
    h("button", { class: "primary", type: "submit" }, "Log in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.hidden = true;
    const t = input.value.trim();
    try {
      const who = await whoAmI(t);
      token.set(t);
      done(who);
    } catch (err) {
      msg.hidden = false;
      msg.textContent = err instanceof ApiError && err.status === 401
        ? "That token is not valid (unknown, expired or revoked)."
        : `Cannot reach the API: ${(err as Error).message}`;
      input.focus();
    }
  });
  clear(main, form);
  input.focus();
}
