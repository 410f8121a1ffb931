// Talking to the gateway: the signed-in session (access + refresh token in localStorage), JSON
// requests that refresh the access token when it is about to expire, and errors that keep the
// gateway's 422 field list so forms can put each message on its field.

// A session holds either tokens from a password sign-in or an API key (`apiKey`), sent as
// x-api-key (on a local platform the dev tenant's key is in var/dev-api-key).
export type Session = { access: string; refresh: string; expiresAt: number; email: string; apiKey?: string };
export type FieldError = { field: string; message: string };

const KEY = "agentbus.session";
const listeners = new Set<() => void>();

export class ApiError extends Error {
  status: number;
  errors: FieldError[];
  retryAfter: number | null;
  constructor(status: number, message: string, errors: FieldError[] = [], retryAfter: number | null = null) {
    super(message);
    this.status = status;
    this.errors = errors;
    this.retryAfter = retryAfter;
  }
}

export function loadSession(): Session | null {
  try {
    const raw = localStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Session) : null;
  } catch {
    return null;
  }
}

function saveSession(session: Session | null): void {
  if (session) localStorage.setItem(KEY, JSON.stringify(session));
  else localStorage.removeItem(KEY);
  listeners.forEach((fn) => fn());
}

export function onSessionChange(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function signOut(): void {
  saveSession(null);
}

type TokenPair = { access_token: string; refresh_token: string; expires_in: number };

function sessionOf(pair: TokenPair, email: string): Session {
  return {
    access: pair.access_token,
    refresh: pair.refresh_token,
    expiresAt: Date.now() + pair.expires_in * 1000,
    email,
  };
}

async function errorOf(resp: Response): Promise<ApiError> {
  let detail = `${resp.status} ${resp.statusText}`;
  let errors: FieldError[] = [];
  try {
    const body = await resp.json();
    if (typeof body.detail === "string") detail = body.detail;
    if (Array.isArray(body.errors)) errors = body.errors;
  } catch {
    // not JSON: keep the status line
  }
  const retry = resp.headers.get("Retry-After");
  return new ApiError(resp.status, detail, errors, retry ? Number(retry) : null);
}

export async function signIn(email: string, password: string): Promise<void> {
  const resp = await fetch("/api/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (!resp.ok) throw await errorOf(resp);
  saveSession(sessionOf(await resp.json(), email.trim().toLowerCase()));
}

export async function register(email: string, password: string, tenantName: string): Promise<void> {
  const body: Record<string, string> = { email, password };
  if (tenantName.trim()) body.tenant_name = tenantName.trim();
  const resp = await fetch("/api/v1/auth/register", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!resp.ok) throw await errorOf(resp);
}

/** Sign in with an API key: checked against /api/v1/users/me, then kept like a session. */
export async function signInWithKey(key: string): Promise<void> {
  const apiKey = key.trim();
  const resp = await fetch("/api/v1/users/me", { headers: { "x-api-key": apiKey } });
  if (!resp.ok) throw await errorOf(resp);
  const me = (await resp.json()) as { tenant?: { id?: string; name?: string } };
  const tenant = me.tenant?.name || me.tenant?.id || "tenant";
  saveSession({ access: "", refresh: "", expiresAt: Number.MAX_SAFE_INTEGER, email: `${tenant} (API key)`, apiKey });
}

/** The credential headers of a request: the API key, or a fresh access token. */
export async function authHeaders(): Promise<Record<string, string>> {
  const session = loadSession();
  if (session?.apiKey) return { "x-api-key": session.apiKey };
  return { Authorization: `Bearer ${await accessToken()}` };
}

let refreshing: Promise<string> | null = null;

/** A valid access token, refreshed first when it expires within 30 s (one refresh at a time). */
export async function accessToken(): Promise<string> {
  const session = loadSession();
  if (!session) throw new ApiError(401, "Not signed in");
  if (session.expiresAt - Date.now() > 30_000) return session.access;
  refreshing ??= (async () => {
    try {
      const resp = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (!resp.ok) {
        saveSession(null);
        throw await errorOf(resp);
      }
      const next = sessionOf(await resp.json(), session.email);
      saveSession(next);
      return next.access;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** An authenticated request; JSON in and out (FormData bodies are sent as they are). */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  for (const [name, value] of Object.entries(await authHeaders())) headers.set(name, value);
  if (init.body && !(init.body instanceof FormData) && !headers.has("Content-Type")) {
    headers.set("Content-Type", "application/json");
  }
  const resp = await fetch(path, { ...init, headers });
  if (resp.status === 401) signOut();
  if (!resp.ok) throw await errorOf(resp);
  if (resp.status === 204) return undefined as T;
  return (await resp.json()) as T;
}

/** The rows of a named analytics query as objects keyed by column. */
export async function analytics(
  name: string,
  params: Record<string, string> = {},
): Promise<Record<string, unknown>[]> {
  const query = new URLSearchParams(params).toString();
  const result = await api<{ columns: string[]; rows: unknown[][] }>(
    `/api/v1/analytics/${name}${query ? `?${query}` : ""}`,
  );
  return result.rows.map((row) => Object.fromEntries(result.columns.map((c, i) => [c, row[i]])));
}

/** Server-Sent Events over fetch (EventSource cannot send an Authorization header). */
export async function sse(
  path: string,
  onEvent: (event: string, data: unknown) => void,
  signal: AbortSignal,
): Promise<void> {
  const resp = await fetch(path, {
    headers: { ...(await authHeaders()), Accept: "text/event-stream" },
    signal,
  });
  if (!resp.ok || !resp.body) throw await errorOf(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data: string[] = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(event, JSON.parse(data.join("\n")));
    }
  }
}

export function fieldErrors(err: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (err instanceof ApiError) {
    for (const e of err.errors) out[e.field.split(".").pop() ?? e.field] = e.message;
  }
  return out;
}

export function messageOf(err: unknown): string {
  if (err instanceof ApiError) {
    return err.retryAfter ? `${err.message} (try again in ${err.retryAfter} s)` : err.message;
  }
  return err instanceof Error ? err.message : String(err);
}
