// The API client: the bearer token lives in this browser tab (sessionStorage), every request
// carries it, and a 401 sends the user back to the login page.

const TOKEN_KEY = "hurricane.token";

export interface Me {
  name: string;
  role: string;
  is_admin: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: unknown,
  ) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
  }

  /** Field errors of a 422: [{loc, msg, type}]. */
  get fieldErrors(): { loc: (string | number)[]; msg: string; type?: string }[] {
    return Array.isArray(this.detail) ? (this.detail as never) : [];
  }

  get text(): string {
    if (typeof this.detail === "string") return this.detail;
    const errs = this.fieldErrors;
    if (errs.length) return errs.map((e) => `${e.loc.join(".")}: ${e.msg}`).join("\n");
    return `HTTP ${this.status}`;
  }
}

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token.get();
  return { ...(t ? { Authorization: `Bearer ${t}` } : {}), ...extra };
}

async function fail(resp: Response): Promise<never> {
  let detail: unknown = resp.statusText;
  try {
    const body = await resp.json();
    detail = body?.detail ?? body;
  } catch {
    /* not JSON */
  }
  if (resp.status === 401) onUnauthorized();
  throw new ApiError(resp.status, detail);
}

export async function request<T>(method: string, path: string, body?: BodyInit,
                                 contentType?: string): Promise<T> {
  const resp = await fetch(path, {
    method,
    body,
    headers: headers(contentType ? { "Content-Type": contentType } : {}),
  });
  if (!resp.ok) return fail(resp);
  if (resp.status === 204) return undefined as T;
  const type = resp.headers.get("content-type") || "";
  return (type.includes("json") ? resp.json() : resp.text()) as Promise<T>;
}

export const get = <T>(path: string) => request<T>("GET", path);

/** Checks a token without keeping it: who it belongs to. */
export async function whoAmI(t?: string): Promise<Me> {
  const resp = await fetch("/v1/me", { headers: { Authorization: `Bearer ${t ?? token.get()}` } });
  if (!resp.ok) return fail(resp);
  return resp.json();
}

export interface SseEvent {
  event: string;
  data: any;
}

/** A search's Server-Sent Events, read with fetch (EventSource cannot send a bearer token).
 * Reconnects after a dropped connection until the stream says "end" or ``signal`` aborts. */
export async function followEvents(searchId: string, onEvent: (e: SseEvent) => void,
                                   signal: AbortSignal): Promise<void> {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const resp = await fetch(`/v1/searches/${searchId}/events`, { headers: headers(), signal });
      if (!resp.ok) return fail(resp);
      const reader = resp.body!.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut: number;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let event = "message";
          const data: string[] = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trim());
          }
          if (!data.length) continue;
          let parsed: unknown = data.join("\n");
          try {
            parsed = JSON.parse(parsed as string);
          } catch {
            /* plain text */
          }
          onEvent({ event, data: parsed });
          if (event === "end") return;
        }
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) throw err;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}
