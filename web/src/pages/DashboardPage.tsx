import { useEffect, useState } from "react";
import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  Line,
  LineChart,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import { analytics, messageOf } from "../api.ts";

type Row = Record<string, unknown>;
const num = (v: unknown): number => (typeof v === "number" ? v : Number(v ?? 0) || 0);
const DAY = 86_400_000;
const WEEKS = 6;

type Data = {
  dora: Row | null;
  trend: Row[];
  byDay: Row[];
  byModel: Row[];
  runsByDay: Row[];
  anomalies: Row[];
};

async function loadAll(days: number): Promise<Data> {
  const period = `${days}d`;
  const now = Date.now();
  // The four keys per week, oldest first, for the trend lines.
  const weeks = Array.from({ length: WEEKS }, (_, i) => {
    const until = new Date(now - (WEEKS - 1 - i) * 7 * DAY);
    const since = new Date(until.getTime() - 7 * DAY);
    return { since: since.toISOString(), until: until.toISOString(), label: until.toISOString().slice(5, 10) };
  });
  const [dora, byDay, byModel, runsByDay, anomalies, ...weekly] = await Promise.all([
    analytics("dora", { period }),
    analytics("usage", { period, group_by: "day" }),
    analytics("usage", { period, group_by: "model" }),
    analytics("runs", { period, group_by: "day" }),
    analytics("anomalies", { period }),
    ...weeks.map((w) => analytics("dora", { since: w.since, until: w.until })),
  ]);
  const all = (rows: Row[]) => rows.find((r) => r.service === "*") ?? null;
  return {
    dora: all(dora),
    trend: weeks.map((w, i) => ({ week: w.label, ...(all(weekly[i]) ?? {}) })),
    byDay: [...byDay].sort((a, b) => String(a.day).localeCompare(String(b.day))),
    byModel,
    runsByDay: [...runsByDay].sort((a, b) => String(a.day).localeCompare(String(b.day))),
    anomalies,
  };
}

function Kpi({ label, value, unit, hint }: { label: string; value: string; unit?: string; hint: string }) {
  return (
    <div className="kpi card" title={hint}>
      <span className="muted">{label}</span>
      <strong>
        {value}
        {unit && <small> {unit}</small>}
      </strong>
    </div>
  );
}

function Chart({ title, children }: { title: string; children: React.ReactElement }) {
  return (
    <figure className="chart card" aria-label={title}>
      <figcaption>{title}</figcaption>
      <ResponsiveContainer width="100%" height={240}>
        {children}
      </ResponsiveContainer>
    </figure>
  );
}

function Alert({ a }: { a: Row }) {
  return (
    <p className={`alert ${a.direction}`}>
      <strong>{String(a.series)}</strong> on {String(a.day)}: {fmt(a.value, 1)} vs usual {fmt(a.baseline_median, 1)}
      {a.z_score !== null && a.z_score !== undefined ? ` (z ${fmt(a.z_score, 1)})` : ""} — unusually {String(a.direction)}
    </p>
  );
}

const fmt = (v: unknown, digits = 2) => (v === null || v === undefined ? "—" : num(v).toFixed(digits));

export default function DashboardPage() {
  const [days, setDays] = useState(30);
  const [data, setData] = useState<Data | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    loadAll(days)
      .then((d) => live && (setData(d), setError(null)))
      .catch((err) => live && setError(messageOf(err)));
    return () => {
      live = false;
    };
  }, [days]);

  const d = data?.dora;
  return (
    <section className="page dashboard">
      <div className="page-head">
        <h1>Dashboards</h1>
        <label>
          Period{" "}
          <select value={days} onChange={(e) => setDays(Number(e.target.value))}>
            <option value={7}>7 days</option>
            <option value={30}>30 days</option>
            <option value={90}>90 days</option>
          </select>
        </label>
      </div>
      {error && <p className="error" role="alert">{error}</p>}
      {!data && !error && <p className="muted">Loading…</p>}
      {data && (
        <>
          {data.anomalies.length > 0 && (
            <div className="alerts" role="region" aria-label="Anomalies">
              {data.anomalies.slice(0, 3).map((a, i) => (
                <Alert key={i} a={a} />
              ))}
              {data.anomalies.length > 3 && (
                <details>
                  <summary>{data.anomalies.length - 3} more unusual days</summary>
                  {data.anomalies.slice(3).map((a, i) => (
                    <Alert key={i} a={a} />
                  ))}
                </details>
              )}
            </div>
          )}
          <h2>Delivery (DORA)</h2>
          <div className="kpis">
            <Kpi label="Deployment frequency" value={fmt(d?.deployments_per_day)} unit="/ day" hint={`${fmt(d?.deployments, 0)} deployments`} />
            <Kpi label="Lead time for changes" value={fmt(d?.lead_time_hours_p50, 1)} unit="h (median)" hint="commit to first deployment" />
            <Kpi label="Change failure rate" value={d ? `${(num(d.change_failure_rate) * 100).toFixed(0)}` : "—"} unit="%" hint={`${fmt(d?.failed_deployments, 0)} failed`} />
            <Kpi label="Time to restore" value={fmt(d?.time_to_restore_hours_p50, 1)} unit="h (median)" hint={`${fmt(d?.incidents, 0)} incidents`} />
          </div>
          <div className="charts">
            <Chart title="DORA trend by week">
              <LineChart data={data.trend}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="week" />
                <YAxis />
                <Tooltip />
                <Legend />
                <Line type="monotone" dataKey="deployments_per_day" name="deploys/day" stroke="#4f7cff" />
                <Line type="monotone" dataKey="lead_time_hours_p50" name="lead time h" stroke="#1fa37a" />
                <Line type="monotone" dataKey="change_failure_rate" name="failure rate" stroke="#e0493a" />
                <Line type="monotone" dataKey="time_to_restore_hours_p50" name="restore h" stroke="#c08a00" />
              </LineChart>
            </Chart>
            <Chart title="Runs per day">
              <BarChart data={data.runsByDay}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis allowDecimals={false} />
                <Tooltip />
                <Legend />
                <Bar dataKey="success" stackId="r" fill="#1fa37a" />
                <Bar dataKey="error" stackId="r" fill="#e0493a" />
                <Bar dataKey="cancelled" stackId="r" fill="#8a8f98" />
              </BarChart>
            </Chart>
          </div>
          <h2>Usage</h2>
          <div className="charts">
            <Chart title="Tokens per day">
              <BarChart data={data.byDay}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis />
                <Tooltip />
                <Legend />
                <Bar dataKey="input_tokens" name="input" stackId="t" fill="#4f7cff" />
                <Bar dataKey="output_tokens" name="output" stackId="t" fill="#9b6bff" />
              </BarChart>
            </Chart>
            <Chart title="Cost per day (USD)">
              <LineChart data={data.byDay}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis />
                <Tooltip />
                <Line type="monotone" dataKey="cost_usd" name="cost" stroke="#c08a00" />
              </LineChart>
            </Chart>
            <Chart title="Latency per day (ms)">
              <LineChart data={data.byDay}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="day" />
                <YAxis />
                <Tooltip />
                <Legend />
                <Line type="monotone" dataKey="latency_ms_p50" name="p50" stroke="#1fa37a" />
                <Line type="monotone" dataKey="latency_ms_p95" name="p95" stroke="#e0493a" />
              </LineChart>
            </Chart>
            <Chart title="By model: tokens and latency">
              <BarChart data={data.byModel}>
                <CartesianGrid strokeDasharray="3 3" />
                <XAxis dataKey="model" />
                <YAxis yAxisId="t" />
                <YAxis yAxisId="ms" orientation="right" />
                <Tooltip />
                <Legend />
                <Bar yAxisId="t" dataKey="total_tokens" name="tokens" fill="#4f7cff" />
                <Bar yAxisId="ms" dataKey="latency_ms_p50" name="p50 ms" fill="#1fa37a" />
                <Bar yAxisId="ms" dataKey="latency_ms_p95" name="p95 ms" fill="#e0493a" />
              </BarChart>
            </Chart>
          </div>
        </>
      )}
    </section>
  );
}
