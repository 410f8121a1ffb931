import { useEffect, useRef, useState } from "react";
import { authHeaders } from "../api.ts";
import type { Source } from "../citations.ts";

// Opens a cited document at its page: the bytes come from the gateway (with the session's
// token, so not a plain link), shown in the browser's own viewer with #page=N.
export default function DocumentViewer({ source, onClose }: { source: Source; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [url, setUrl] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    dialog.current?.showModal();
    let made: string | null = null;
    (async () => {
      const resp = await fetch(`/api/v1/documents/${source.documentId}/file`, {
        headers: await authHeaders(),
      });
      if (!resp.ok) throw new Error(resp.status === 404 ? "This document is no longer there." : `Cannot open it (${resp.status}).`);
      made = URL.createObjectURL(await resp.blob());
      setUrl(made);
    })().catch((err: Error) => setError(err.message));
    return () => {
      if (made) URL.revokeObjectURL(made);
    };
  }, [source.documentId]);

  const page = source.page ?? 1;
  return (
    <dialog ref={dialog} className="viewer" onClose={onClose} aria-label={`${source.label}, page ${page}`} data-page={page}>
      <header>
        <strong>{source.label}</strong> <span className="muted">page {page}</span>
        <button type="button" className="ghost" onClick={() => dialog.current?.close()} aria-label="Close">×</button>
      </header>
      {error && <p className="error" role="alert">{error}</p>}
      {url && <iframe title={`${source.label}, page ${page}`} src={`${url}#page=${page}`} />}
    </dialog>
  );
}
