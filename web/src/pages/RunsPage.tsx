import { useEffect, useState } from "react";
import { analytics, api, messageOf } from "../api.ts";
import { go } from "../route.ts";

type Run = {
  run_id: string;
  thread_id: string;
  assistant_id: string;
  status: string;
  created_at: string;
  duration_ms: number | null;
  question: string | null;
  trace_id: string | null;
  tokens: number | null;
  cost_usd: number | null;
  scores?: Record<string, number | null>;
};

type Span = {
  span_id: string;
  parent_id: string | null;
  name: string;
  service: string;
  start_ms: number;
  duration_ms: number;
  status: string;
  status_message: string;
  attributes: Record<string, unknown>;
};
type Trace = { trace_id: string; duration_ms: number; services: string[]; orphans: number; jaeger_url: string | null; spans: Span[] };

const ms = (v: number | null | undefined) => (v === null || v === undefined ? "—" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);

export default function RunsPage({ runId }: { runId: string | null }) {
  const [runs, setRuns] = useState<Run[] | null>(null);
  const [evals, setEvals] = useState<Record<string, unknown>[]>([]);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    api<{ items: Run[] }>("/api/v1/runs?limit=100")
      .then((r) => setRuns(r.items))
      .catch((err) => setError(messageOf(err)));
    analytics("evaluations", { since_hours: String(24 * 30) })
      .then(setEvals)
      .catch(() => setEvals([]));
  }, []);

  if (runId) return <TraceView runId={runId} />;
  return (
    <section className="page">
      <h1>Runs</h1>
      {evals.length > 0 && (
        <div className="kpis" aria-label="Evaluation scores">
          {evals.map((e) => (
            <div key={`${e.metric}-${e.judge}`} className="kpi card">
              <span className="muted">{String(e.metric)} ({String(e.runs)} runs)</span>
              <strong>{Number(e.mean_score).toFixed(2)}</strong>
            </div>
          ))}
        </div>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <div className="table-wrap">
        <table>
          <thead>
            <tr><th>Started</th><th>Question</th><th>Assistant</th><th>Status</th><th>Duration</th><th>Tokens</th><th>Cost</th><th>Eval scores</th></tr>
          </thead>
          <tbody>
            {(runs ?? []).map((r) => (
              <tr key={r.run_id}>
                <td><a href={`#/runs/${r.run_id}`}>{new Date(r.created_at).toLocaleString()}</a></td>
                <td className="clip">{r.question ?? <span className="muted">{r.run_id.slice(0, 8)}</span>}</td>
                <td>{r.assistant_id}</td>
                <td><span className={`status ${r.status}`}>{r.status}</span></td>
                <td>{ms(r.duration_ms)}</td>
                <td>{r.tokens ?? "—"}</td>
                <td>{r.cost_usd === null ? "—" : `$${r.cost_usd.toFixed(4)}`}</td>
                <td><Scores scores={r.scores ?? {}} /></td>
              </tr>
            ))}
            {runs && !runs.length && <tr><td colSpan={8} className="muted">No runs yet: ask something in Chat.</td></tr>}
          </tbody>
        </table>
      </div>
    </section>
  );
}

/** A run's latest score per metric (1 is best), as small chips coloured good / fair / poor. */
function Scores({ scores }: { scores: Record<string, number | null> }) {
  const entries = Object.entries(scores).filter((e): e is [string, number] => typeof e[1] === "number");
  if (!entries.length) return <span className="muted">—</span>;
  return (
    <ul className="scores" aria-label="Evaluation scores of the run">
      {entries.sort(([a], [b]) => a.localeCompare(b)).map(([metric, score]) => (
        <li key={metric} className={score >= 0.75 ? "good" : score >= 0.5 ? "fair" : "poor"} title={`${metric}: ${score.toFixed(2)} (1 is best)`}>
          {metric} <strong>{score.toFixed(2)}</strong>
        </li>
      ))}
    </ul>
  );
}

const COLORS = ["#4f7cff", "#1fa37a", "#c08a00", "#9b6bff", "#e0493a", "#0aa2c0", "#8a8f98"];

function depthOf(spans: Span[]): Map<string, number> {
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const depth = new Map<string, number>();
  const of = (s: Span): number => {
    const known = depth.get(s.span_id);
    if (known !== undefined) return known;
    const parent = s.parent_id ? byId.get(s.parent_id) : undefined;
    const d = parent ? of(parent) + 1 : 0;
    depth.set(s.span_id, d);
    return d;
  };
  spans.forEach(of);
  return depth;
}

function TraceView({ runId }: { runId: string }) {
  const [traces, setTraces] = useState<Trace[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [selected, setSelected] = useState<Span | null>(null);

  useEffect(() => {
    api<{ traces: Trace[] }>(`/api/v1/runs/${runId}/trace`)
      .then((r) => setTraces(r.traces))
      .catch((err) => setError(messageOf(err)));
  }, [runId]);

  return (
    <section className="page">
      <p><button type="button" className="link" onClick={() => go("runs")}>← All runs</button></p>
      <h1>Run <code>{runId.slice(0, 8)}</code></h1>
      {error && <p className="error" role="alert">{error}</p>}
      {!traces && !error && <p className="muted">Loading the trace…</p>}
      {traces?.map((t) => {
        const services = t.services;
        const depth = depthOf(t.spans);
        const total = Math.max(t.duration_ms, 0.001);
        return (
          <div key={t.trace_id} className="trace card">
            <p>
              Trace <code>{t.trace_id}</code> · {ms(t.duration_ms)} · {t.spans.length} spans across {services.join(", ")}
              {t.orphans > 0 && <span className="error"> · {t.orphans} orphan span(s)</span>}
              {t.jaeger_url && <> · <a href={t.jaeger_url} target="_blank" rel="noreferrer">Open in Jaeger</a></>}
            </p>
            <div className="legend">
              {services.map((s, i) => (
                <span key={s}><i style={{ background: COLORS[i % COLORS.length] }} /> {s}</span>
              ))}
            </div>
            <ol className="waterfall" aria-label="Spans">
              {t.spans.map((s) => (
                <li key={s.span_id}>
                  <button type="button" className={`span-row${s.status === "error" ? " failed" : ""}`} onClick={() => setSelected(s)} aria-label={`${s.service}: ${s.name}, ${ms(s.duration_ms)}`}>
                    <span className="span-name" style={{ paddingLeft: `${(depth.get(s.span_id) ?? 0) * 12}px` }}>
                      {s.name}
                    </span>
                    <span className="span-track">
                      <span
                        className="span-bar"
                        style={{
                          left: `${(s.start_ms / total) * 100}%`,
                          width: `max(2px, ${(s.duration_ms / total) * 100}%)`,
                          background: COLORS[services.indexOf(s.service) % COLORS.length],
                        }}
                      />
                    </span>
                    <span className="span-ms">{ms(s.duration_ms)}</span>
                  </button>
                </li>
              ))}
            </ol>
          </div>
        );
      })}
      {selected && (
        <div className="card span-detail" role="region" aria-label="Span details">
          <h2>{selected.name}</h2>
          <p className="muted">{selected.service} · starts at {ms(selected.start_ms)} · {ms(selected.duration_ms)} · {selected.status}{selected.status_message ? `: ${selected.status_message}` : ""}</p>
          <dl>
            {Object.entries(selected.attributes).map(([k, v]) => (
              <div key={k}><dt>{k}</dt><dd>{typeof v === "string" ? v : JSON.stringify(v)}</dd></div>
            ))}
          </dl>
        </div>
      )}
    </section>
  );
}
