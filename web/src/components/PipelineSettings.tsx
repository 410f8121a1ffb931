import { useCallback, useEffect, useState, type FormEvent } from "react";
import { ApiError, api, messageOf } from "../api.ts";

// The tenant's ingest pipeline settings (GET/PUT /api/v1/settings/pipeline, shape in the
// gateway README) and the progress of the re-index a chunking or embedding change starts.

type Settings = {
  chunking: { method: string; size: number; overlap: number };
  embedding: { model: string };
  retrieval: { method: string; top_k: number; threshold: number | null };
  revision: number;
  updated_at: string | null;
  updated_by: string | null;
  options: { chunking_methods: string[]; embedding_models: string[]; retrieval_methods: string[] };
  reindex: Reindex | null;
};
type Reindex = {
  state: "idle" | "running" | "done";
  revision: number;
  done: number;
  failed: number;
  total: number;
  started_at: string | null;
  finished_at: string | null;
};
type Form = { method: string; size: string; overlap: string; model: string; retrieval: string; topK: string; threshold: string };

const formOf = (s: Settings): Form => ({
  method: s.chunking.method,
  size: String(s.chunking.size),
  overlap: String(s.chunking.overlap),
  model: s.embedding.model,
  retrieval: s.retrieval.method,
  topK: String(s.retrieval.top_k),
  threshold: s.retrieval.threshold === null ? "" : String(s.retrieval.threshold),
});

/** 422 entries keyed by their place in the body ("chunking.size"; "chunking" for the pair). */
function errorsOf(err: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (err instanceof ApiError) {
    for (const e of err.errors) out[e.field.replace(/^body\.?/, "") || "form"] = e.message;
  }
  return out;
}

export default function PipelineSettings({ onReindexed }: { onReindexed: () => void }) {
  const [settings, setSettings] = useState<Settings | null>(null);
  const [form, setForm] = useState<Form | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const [saving, setSaving] = useState(false);
  const [reindex, setReindex] = useState<Reindex | null>(null);

  useEffect(() => {
    api<Settings>("/api/v1/settings/pipeline")
      .then((s) => {
        setSettings(s);
        setForm(formOf(s));
      })
      .catch((err) => setMessage(messageOf(err)));
    api<Reindex>("/api/v1/settings/pipeline/reindex")
      .then((r) => setReindex(r.state === "running" ? r : null))
      .catch(() => undefined);
  }, []);

  // While a re-index runs, follow it; the document list is reloaded when it ends.
  const running = reindex?.state === "running";
  const poll = useCallback(async () => {
    const r = await api<Reindex>("/api/v1/settings/pipeline/reindex");
    setReindex(r);
    if (r.state !== "running") onReindexed();
  }, [onReindexed]);
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => void poll().catch(() => undefined), 1000);
    return () => window.clearInterval(timer);
  }, [running, poll]);

  if (!settings || !form) {
    return message ? <p className="error" role="alert">{message}</p> : null;
  }
  const set = (key: keyof Form) => (e: { target: { value: string } }) => setForm({ ...form, [key]: e.target.value });
  const invalid = (key: string) => (errors[key] ? { "aria-invalid": true, "aria-describedby": `ps-${key.replace(".", "-")}` } : {});
  const fieldError = (key: string) =>
    errors[key] ? <p className="field-error" id={`ps-${key.replace(".", "-")}`}>{errors[key]}</p> : null;

  async function save(e: FormEvent) {
    e.preventDefault();
    if (!form) return;
    setSaving(true);
    setErrors({});
    setMessage(null);
    try {
      const next = await api<Settings>("/api/v1/settings/pipeline", {
        method: "PUT",
        body: JSON.stringify({
          chunking: { method: form.method, size: Number(form.size), overlap: Number(form.overlap) },
          embedding: { model: form.model },
          retrieval: {
            method: form.retrieval,
            top_k: Number(form.topK),
            threshold: form.threshold.trim() === "" ? null : Number(form.threshold),
          },
        }),
      });
      setSettings(next);
      setForm(formOf(next));
      setReindex(next.reindex);
      setMessage(`Saved (revision ${next.revision}).`);
    } catch (err) {
      const fields = errorsOf(err);
      setErrors(fields);
      if (err instanceof ApiError && err.status === 403) setMessage("Only an admin of this tenant can change the settings.");
      else if (!Object.keys(fields).length || fields.form) setMessage(fields.form ?? messageOf(err));
    } finally {
      setSaving(false);
    }
  }

  const { options } = settings;
  return (
    <details className="card pipeline">
      <summary>
        Ingest pipeline settings{" "}
        <span className="muted">
          · {settings.chunking.method} chunks of {settings.chunking.size} · {settings.embedding.model} · {settings.retrieval.method} top {settings.retrieval.top_k}
        </span>
      </summary>
      <form onSubmit={(e) => void save(e)} aria-label="Ingest pipeline settings" noValidate>
        <fieldset>
          <legend>Chunking</legend>
          <label>
            Method
            <select value={form.method} onChange={set("method")}>
              {options.chunking_methods.map((m) => <option key={m}>{m}</option>)}
            </select>
          </label>
          <label>
            Chunk size (tokens)
            <input type="number" min={32} max={8192} value={form.size} onChange={set("size")} {...invalid("chunking.size")} />
          </label>
          {fieldError("chunking.size")}
          <label>
            Overlap (tokens)
            <input type="number" min={0} value={form.overlap} onChange={set("overlap")} {...invalid("chunking.overlap")} />
          </label>
          {fieldError("chunking.overlap")}
          {fieldError("chunking")}
        </fieldset>
        <fieldset>
          <legend>Embedding</legend>
          <label>
            Model
            <select value={form.model} onChange={set("model")}>
              {options.embedding_models.map((m) => <option key={m}>{m}</option>)}
            </select>
          </label>
        </fieldset>
        <fieldset>
          <legend>Retrieval</legend>
          <label>
            Method
            <select value={form.retrieval} onChange={set("retrieval")}>
              {options.retrieval_methods.map((m) => <option key={m}>{m}</option>)}
            </select>
          </label>
          <label>
            Results (top k)
            <input type="number" min={1} max={100} value={form.topK} onChange={set("topK")} {...invalid("retrieval.top_k")} />
          </label>
          {fieldError("retrieval.top_k")}
          <label>
            Score threshold (0..1, empty for none)
            <input type="number" min={0} max={1} step={0.05} value={form.threshold} onChange={set("threshold")} {...invalid("retrieval.threshold")} />
          </label>
          {fieldError("retrieval.threshold")}
        </fieldset>
        <p className="muted">
          Changing chunking or the embedding model re-indexes every document of the tenant.
          {settings.updated_at && <> Last changed {new Date(settings.updated_at).toLocaleString()}{settings.updated_by ? ` by ${settings.updated_by}` : ""}.</>}
        </p>
        <button type="submit" disabled={saving}>{saving ? "Saving…" : "Save settings"}</button>
        {message && <p className={errors.form || message.startsWith("Only") ? "error" : "muted"} role="status">{message}</p>}
      </form>
      {reindex && reindex.state !== "idle" && (
        <div className="reindex" role="status" aria-label="Re-index">
          <span>
            {reindex.state === "running" ? "Re-indexing" : "Re-indexed"}: {reindex.done} of {reindex.total} documents
            {reindex.failed ? `, ${reindex.failed} failed` : ""}
          </span>
          <progress max={Math.max(reindex.total, 1)} value={reindex.done + reindex.failed} aria-label="Re-index progress" />
        </div>
      )}
    </details>
  );
}
