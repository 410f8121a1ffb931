// The agent's answers cite passages as "[n]" (or "[1, 2]"); the run's state carries the cited
// sources (`citations`: ref, document_id, title, page) for the thread's latest answer.
export type Source = { n: number; label: string; documentId: string | null; page: number | null };
export type Citation = { ref?: number; document_id?: string; title?: string | null; page?: number | null };

export function sourcesOf(citations: Citation[] | undefined): Source[] {
  return (citations ?? [])
    .filter((c) => typeof c.ref === "number")
    .map((c) => ({
      n: c.ref as number,
      label: c.title || "document",
      documentId: c.document_id ?? null,
      page: c.page ?? null,
    }));
}

/** "[n]" and "[n, m]" markers as Markdown links to #cite-n (rendered as buttons). */
export function linkCitations(body: string): string {
  return body.replace(/\[(\d+(?:\s*,\s*\d+)*)\](?!\()/g, (_m, list: string) =>
    list
      .split(",")
      .map((n) => `[\\[${n.trim()}\\]](#cite-${n.trim()})`)
      .join(""),
  );
}
