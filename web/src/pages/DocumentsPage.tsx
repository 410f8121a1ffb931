import { useCallback, useEffect, useRef, useState, type DragEvent } from "react";
import { api, messageOf, sse } from "../api.ts";
import PipelineSettings from "../components/PipelineSettings.tsx";

const STAGES = ["received", "parsed", "chunked", "embedded", "stored", "graphed"] as const;
type Stage = (typeof STAGES)[number];

type Doc = {
  document_id: string;
  title: string | null;
  filename: string | null;
  status: string;
  chunk_count: number | null;
  page_count: number | null;
  error: string | null;
  updated_at: string;
};

type Upload = {
  key: string;
  name: string;
  documentId?: string;
  stages: Partial<Record<Stage, { done: number; total: number }>>;
  outcome?: "indexed" | "failed" | "unchanged";
  detail?: string;
};

type ProgressEvent = { stage?: Stage; done?: number; total?: number; chunks?: number; pages?: number; reason?: string; unchanged?: boolean };

export default function DocumentsPage() {
  const [docs, setDocs] = useState<Doc[]>([]);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [dragging, setDragging] = useState(false);
  const [tags, setTags] = useState("");
  const picker = useRef<HTMLInputElement>(null);
  const aborts = useRef<AbortController[]>([]);

  const load = useCallback(async () => {
    try {
      setDocs((await api<{ items: Doc[] }>("/api/v1/documents?limit=100")).items);
    } catch (err) {
      setError(messageOf(err));
    }
  }, []);
  useEffect(() => {
    void load();
    const open = aborts.current;
    return () => open.forEach((a) => a.abort());
  }, [load]);

  const patch = (key: string, fn: (u: Upload) => Upload) => setUploads((all) => all.map((u) => (u.key === key ? fn(u) : u)));

  async function uploadOne(file: File, key: string) {
    const form = new FormData();
    form.append("file", file);
    if (tags.trim()) form.append("tags", tags);
    try {
      const made = await api<{ document_id: string; status: string; events: string }>("/api/v1/documents", { method: "POST", body: form });
      patch(key, (u) => ({ ...u, documentId: made.document_id }));
      const abort = new AbortController();
      aborts.current.push(abort);
      await sse(
        made.events,
        (event, raw) => {
          const data = raw as ProgressEvent;
          if (event === "progress" && data.stage) {
            patch(key, (u) => ({ ...u, stages: { ...u.stages, [data.stage as Stage]: { done: data.done ?? 0, total: data.total ?? 0 } } }));
          } else if (event === "indexed") {
            const full = Object.fromEntries(STAGES.map((s) => [s, { done: 1, total: 1 }]));
            patch(key, (u) => ({
              ...u,
              stages: full,
              outcome: data.unchanged ? "unchanged" : "indexed",
              detail: `${data.chunks ?? 0} chunk${data.chunks === 1 ? "" : "s"}${data.pages ? `, ${data.pages} page${data.pages === 1 ? "" : "s"}` : ""}`,
            }));
          } else if (event === "failed") {
            patch(key, (u) => ({ ...u, outcome: "failed", detail: data.reason }));
          }
        },
        abort.signal,
      );
    } catch (err) {
      if ((err as Error).name !== "AbortError") patch(key, (u) => ({ ...u, outcome: "failed", detail: messageOf(err) }));
    } finally {
      void load();
    }
  }

  function add(files: FileList | null) {
    if (!files?.length) return;
    const batch = Array.from(files).map((file, i) => ({ file, key: `${Date.now()}-${i}-${file.name}` }));
    setUploads((all) => [...batch.map(({ file, key }) => ({ key, name: file.name, stages: {} })), ...all]);
    batch.forEach(({ file, key }) => void uploadOne(file, key));
  }

  function onDrop(e: DragEvent) {
    e.preventDefault();
    setDragging(false);
    add(e.dataTransfer.files);
  }

  async function remove(doc: Doc) {
    if (!window.confirm(`Delete “${doc.title ?? doc.filename}”? Its chunks and graph links go too.`)) return;
    try {
      await api(`/api/v1/documents/${doc.document_id}`, { method: "DELETE" });
      await load();
    } catch (err) {
      setError(messageOf(err));
    }
  }

  return (
    <section className="page">
      <h1>Documents</h1>
      <div
        className={`dropzone${dragging ? " over" : ""}`}
        onDragOver={(e) => { e.preventDefault(); setDragging(true); }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <p>Drop PDF, Markdown, HTML or text files here, or</p>
        <button type="button" onClick={() => picker.current?.click()}>Choose files</button>
        <input
          ref={picker}
          type="file"
          multiple
          hidden
          aria-label="Files to upload"
          accept=".pdf,.md,.markdown,.txt,.html,.htm"
          onChange={(e) => { add(e.target.files); e.target.value = ""; }}
        />
        <label className="tags">
          Tags for these uploads (comma-separated)
          <input value={tags} onChange={(e) => setTags(e.target.value)} placeholder="handbook, ops" />
        </label>
      </div>
      {uploads.length > 0 && (
        <ul className="uploads" aria-label="Uploads">
          {uploads.map((u) => (
            <li key={u.key} data-testid="upload" data-outcome={u.outcome ?? "running"}>
              <div className="upload-head">
                <strong>{u.name}</strong>
                <span className={`status ${u.outcome ?? "running"}`}>{u.outcome ?? "indexing…"}</span>
                {u.detail && <span className="muted">{u.detail}</span>}
              </div>
              <div className="stages">
                {STAGES.map((stage) => {
                  const p = u.stages[stage];
                  const value = p ? (p.total ? p.done / p.total : 1) : 0;
                  return (
                    <div key={stage} className="stage">
                      <span>{stage}</span>
                      <progress max={1} value={value} aria-label={`${u.name}: ${stage}`} />
                    </div>
                  );
                })}
              </div>
            </li>
          ))}
        </ul>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <h2>Your documents</h2>
      <table>
        <thead>
          <tr><th>Title</th><th>Status</th><th>Pages</th><th>Chunks</th><th>Updated</th><th><span className="sr-only">Actions</span></th></tr>
        </thead>
        <tbody>
          {docs.map((d) => (
            <tr key={d.document_id}>
              <td>{d.title ?? d.filename}</td>
              <td><span className={`status ${d.status}`} title={d.error ?? undefined}>{d.status}</span></td>
              <td>{d.page_count ?? "—"}</td>
              <td>{d.chunk_count ?? "—"}</td>
              <td>{new Date(d.updated_at).toLocaleString()}</td>
              <td><button type="button" className="danger" onClick={() => void remove(d)} aria-label={`Delete ${d.title ?? d.filename}`}>Delete</button></td>
            </tr>
          ))}
          {!docs.length && <tr><td colSpan={6} className="muted">No documents yet.</td></tr>}
        </tbody>
      </table>
      <PipelineSettings onReindexed={() => void load()} />
    </section>
  );
}
