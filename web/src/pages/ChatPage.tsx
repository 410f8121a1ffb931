import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent, type KeyboardEvent } from "react";
import { useStream } from "@langchain/langgraph-sdk/react";
import type { Message } from "@langchain/langgraph-sdk";
import ReactMarkdown from "react-markdown";
import remarkGfm from "remark-gfm";
import { lgClient } from "../lgclient.ts";
import { go } from "../route.ts";
import { linkCitations, sourcesOf, type Citation, type Source } from "../citations.ts";
import DocumentViewer from "../components/DocumentViewer.tsx";

type State = { messages: Message[]; citations?: Citation[] };
type Thread = { thread_id: string; metadata?: Record<string, unknown>; updated_at?: string; status?: string };
type Assistant = { assistant_id: string; graph_id?: string; name: string; description?: string | null };

type Tool = { id: string; name: string; input: unknown; output?: unknown; started: number; ended?: number };
type Activity = {
  // `task` is the supervisor's classification (lookup, analysis, ...); `reason` says which cue.
  model?: { model?: string; group?: string; provider?: string; fallback?: boolean; task?: string; reason?: string };
  routing?: { specialists?: string[]; tools?: string[]; answer?: boolean };
  tools: Tool[];
};

// Frames of the LangGraph `events` mode (astream_events v2 shape) the page reads.
type LcEvent = { event: string; name: string; run_id: string; data: Record<string, unknown>; metadata?: Record<string, unknown> };

function preview(value: unknown, limit = 160): string {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  if (!text) return "";
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

function textOf(message: Message): string {
  const content = message.content as unknown;
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    return content.map((part) => (typeof part === "string" ? part : (part as { text?: string }).text ?? "")).join("");
  }
  return "";
}

/** Seconds since `start` while `running`, ticking every 100 ms. */
function useElapsed(running: boolean, start: number): number {
  const [now, setNow] = useState(start);
  useEffect(() => {
    if (!running) return;
    const timer = window.setInterval(() => setNow(Date.now()), 100);
    return () => window.clearInterval(timer);
  }, [running]);
  return Math.max(0, (now - start) / 1000);
}

export default function ChatPage({ threadId }: { threadId: string | null }) {
  const [assistants, setAssistants] = useState<Assistant[]>([]);
  const [assistantId, setAssistantId] = useState(() => localStorage.getItem("agentbus.assistant") ?? "agent");
  const [threads, setThreads] = useState<Thread[] | null>(null); // null: loading
  const [search, setSearch] = useState("");
  const [input, setInput] = useState("");
  const [activity, setActivity] = useState<Activity>({ tools: [] });
  const [toast, setToast] = useState<string | null>(null);
  const [viewing, setViewing] = useState<Source | null>(null);
  const lastInput = useRef<string>("");
  const runRef = useRef<{ threadId: string; runId: string } | null>(null);
  // The latest run this tab started or joined: the status bar links to its trace.
  const [runId, setRunId] = useState<string | null>(null);
  const pendingTitle = useRef<string | null>(null);
  const [startedAt, setStartedAt] = useState(() => Date.now());

  const [threadsVersion, setThreadsVersion] = useState(0);
  const loadThreads = useCallback(() => setThreadsVersion((v) => v + 1), []);
  useEffect(() => {
    lgClient.threads
      .search({ limit: 100, sortBy: "updated_at", sortOrder: "desc" })
      .then((found) => setThreads(found as Thread[]))
      .catch(() => undefined); // the list is a convenience; the chat works without it
  }, [threadsVersion]);

  useEffect(() => {
    lgClient.assistants
      .search({ limit: 100 })
      .then((found) => setAssistants(found as Assistant[]))
      .catch(() => setAssistants([]));
  }, []);

  const onEvent = useCallback((raw: unknown) => {
    const ev = raw as LcEvent;
    if (ev.event === "on_custom_event" && ev.name === "model_selection") {
      setActivity((a) => ({ ...a, model: ev.data as Activity["model"] }));
    } else if (ev.event === "on_custom_event" && ev.name === "routing") {
      const routing = ev.data as NonNullable<Activity["routing"]>;
      // A run routes at each supervisor step; the badge keeps every specialist it went to.
      setActivity((a) => ({
        ...a,
        routing: { ...routing, specialists: [...new Set([...(a.routing?.specialists ?? []), ...(routing.specialists ?? [])])] },
      }));
    } else if (ev.event === "on_tool_start") {
      setActivity((a) => ({
        ...a,
        tools: [...a.tools, { id: `${ev.name}-${a.tools.length}`, name: ev.name, input: ev.data.input, started: Date.now() }],
      }));
    } else if (ev.event === "on_tool_end") {
      setActivity((a) => {
        const tools = [...a.tools];
        const open = tools.findIndex((t) => t.name === ev.name && t.ended === undefined);
        if (open >= 0) tools[open] = { ...tools[open], output: ev.data.output, ended: Date.now() };
        return { ...a, tools };
      });
    }
  }, []);

  const stream = useStream<State>({
    client: lgClient,
    assistantId,
    threadId,
    messagesKey: "messages",
    reconnectOnMount: true,
    fetchStateHistory: false,
    onThreadId: (id) => {
      const title = pendingTitle.current;
      pendingTitle.current = null;
      if (title) void lgClient.threads.update(id, { metadata: { title } }).then(loadThreads, loadThreads);
      go("chat", id);
    },
    onCreated: (run) => {
      runRef.current = { threadId: run.thread_id, runId: run.run_id };
      setRunId(run.run_id);
    },
    onLangChainEvent: onEvent,
    onError: (err) => setToast(err instanceof Error ? err.message : String(err)),
    onFinish: () => {
      runRef.current = null;
      loadThreads();
    },
  });

  const elapsed = useElapsed(stream.isLoading, startedAt);

  // Re-attach to a run still going on this thread that this tab did not start or never learned
  // the id of (a reload right after sending, another tab): useStream's reconnectOnMount covers
  // the runs it stored itself.
  const joinRef = useRef(stream.joinStream);
  useEffect(() => {
    joinRef.current = stream.joinStream; // a new function each render
  });
  useEffect(() => {
    if (!threadId || sessionStorage.getItem(`lg:stream:${threadId}`)) return;
    let live = true;
    lgClient.runs
      .list(threadId, { limit: 5 })
      .then((runs) => {
        const going = runs.find((r) => r.status === "running" || r.status === "pending");
        if (live && going) void joinRef.current(going.run_id);
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [threadId]);

  function send(text: string) {
    const question = text.trim();
    if (!question || stream.isLoading) return;
    lastInput.current = question;
    if (!threadId) pendingTitle.current = question.slice(0, 80);
    setActivity({ tools: [] });
    setToast(null);
    setRunId(null);
    setInput("");
    setStartedAt(Date.now());
    void stream.submit(
      { messages: [{ type: "human", content: question }] } as Partial<State>,
      {
        streamMode: ["values", "messages-tuple", "events"],
        streamResumable: true,
        onDisconnect: "continue",
        optimisticValues: (prev) => ({
          ...prev,
          messages: [...(prev.messages ?? []), { type: "human", content: question } as Message],
        }),
      },
    );
  }

  async function stop() {
    const run = runRef.current;
    await stream.stop();
    if (run) {
      try {
        await lgClient.runs.cancel(run.threadId, run.runId);
      } catch {
        // it ended meanwhile
      }
    }
  }

  function onSubmit(e: FormEvent) {
    e.preventDefault();
    send(input);
  }

  function onKeyDown(e: KeyboardEvent<HTMLTextAreaElement>) {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      send(input);
    }
  }

  const shown = useMemo(
    () => stream.messages.filter((m) => (m.type === "human" || m.type === "ai") && textOf(m).trim() !== ""),
    [stream.messages],
  );
  const filtered = (threads ?? []).filter((t) => {
    const title = String(t.metadata?.title ?? "");
    return !search.trim() || title.toLowerCase().includes(search.trim().toLowerCase());
  });
  const lastHuman = shown.map((m) => m.type).lastIndexOf("human");
  // The picker's value: the assistant with this id, or whose graph is named so ("agent").
  const selectedAssistant =
    assistants.find((a) => a.assistant_id === assistantId || a.graph_id === assistantId)?.assistant_id ?? assistantId;
  const latestSources = useMemo(() => sourcesOf(stream.values?.citations), [stream.values]);
  const showActivity = stream.isLoading || activity.tools.length > 0 || activity.model !== undefined;

  return (
    <div className="chat">
      <aside className="threads" aria-label="Conversations">
        <button type="button" onClick={() => { setActivity({ tools: [] }); setRunId(null); go("chat"); }}>
          + New chat
        </button>
        <input type="search" placeholder="Search conversations" aria-label="Search conversations" value={search} onChange={(e) => setSearch(e.target.value)} />
        <ul>
          {filtered.map((t) => (
            <li key={t.thread_id}>
              <a href={`#/chat/${t.thread_id}`} aria-current={t.thread_id === threadId ? "page" : undefined}>
                {String(t.metadata?.title ?? "Untitled conversation")}
              </a>
            </li>
          ))}
          {threads && !filtered.length && <li className="muted">No conversations{search ? " match" : " yet"}.</li>}
        </ul>
      </aside>
      <section className="conversation" aria-label="Conversation">
        <div className="statusbar" role="status" aria-live="polite">
          <label>
            Assistant{" "}
            <select value={selectedAssistant} onChange={(e) => { setAssistantId(e.target.value); localStorage.setItem("agentbus.assistant", e.target.value); }}>
              {(assistants.length ? assistants : [{ assistant_id: assistantId, name: assistantId }]).map((a) => (
                <option key={a.assistant_id} value={a.assistant_id} title={a.description ?? ""}>
                  {a.name}
                </option>
              ))}
            </select>
          </label>
          {activity.model && (
            <span className="pill" data-testid="model" title={activity.model.reason ?? undefined}>
              {activity.model.model ?? "model"} · {activity.model.group ?? "group"}
              {activity.model.task ? ` · ${activity.model.task}` : ""}
              {activity.model.fallback ? " · fallback" : ""}
            </span>
          )}
          {activity.routing && (
            <span className="badge" data-testid="routing">
              {activity.routing.specialists?.length ? `→ ${activity.routing.specialists.join(", ")}` : "→ answer"}
            </span>
          )}
          {runId && (
            <a className="pill" data-testid="run" href={`#/runs/${runId}`} title="Open this run's trace">
              run {runId.slice(0, 8)}
            </a>
          )}
          {stream.isLoading && <span className="timer" data-testid="timer">thinking… {elapsed.toFixed(1)} s</span>}
        </div>
        <ol className="messages">
          {shown.map((m, i) => (
            <li key={m.id ?? i} className={m.type === "human" ? "human" : "ai"}>
              {m.type === "human" ? (
                <p>{textOf(m)}</p>
              ) : (
                <Answer text={textOf(m)} sources={i === shown.length - 1 && !stream.isLoading ? latestSources : []} onOpen={setViewing} />
              )}
            </li>
          )).flatMap((item, i) =>
            i === lastHuman && showActivity && activity.tools.length
              ? [item, <li key="activity" className="activity"><Timeline tools={activity.tools} /></li>]
              : [item],
          )}
          {!shown.length && !stream.isLoading && (
            <li className="empty muted">Ask about your documents, your people and skills, or your delivery metrics.</li>
          )}
        </ol>
        {toast && (
          <div className="toast" role="alert">
            <span>{toast}</span>
            <button type="button" onClick={() => send(lastInput.current)}>Retry</button>
            <button type="button" className="ghost" aria-label="Dismiss" onClick={() => setToast(null)}>×</button>
          </div>
        )}
        <form className="composer" onSubmit={onSubmit}>
          <textarea
            aria-label="Message"
            placeholder="Ask a question (Enter sends, Shift+Enter for a new line)"
            value={input}
            onChange={(e) => setInput(e.target.value)}
            onKeyDown={onKeyDown}
            rows={2}
          />
          {stream.isLoading ? (
            <button type="button" className="danger" onClick={() => void stop()}>Stop</button>
          ) : (
            <button type="submit" disabled={!input.trim()}>Send</button>
          )}
        </form>
      </section>
      {viewing && <DocumentViewer source={viewing} onClose={() => setViewing(null)} />}
    </div>
  );
}

function Timeline({ tools }: { tools: Tool[] }) {
  if (!tools.length) return null;
  return (
    <ol className="timeline" aria-label="Tool steps">
      {tools.map((t) => (
        <li key={t.id} className={t.ended ? "done" : "running"}>
          <span className="dot" aria-hidden="true" />
          <strong>{t.name}</strong> <code>{preview(t.input, 100)}</code>
          {t.ended ? (
            <span className="muted"> · {((t.ended - t.started) / 1000).toFixed(1)} s → {preview(t.output)}</span>
          ) : (
            <span className="muted"> · running…</span>
          )}
        </li>
      ))}
    </ol>
  );
}

function Answer({ text, sources, onOpen }: { text: string; sources: Source[]; onOpen: (s: Source) => void }) {
  const body = text;
  const byNumber = new Map(sources.map((s) => [s.n, s]));
  return (
    <div className="answer">
      <ReactMarkdown
        remarkPlugins={[remarkGfm]}
        components={{
          a: ({ href, children }) => {
            const m = href?.match(/^#cite-(\d+)$/);
            if (!m) return <a href={href} target="_blank" rel="noreferrer">{children}</a>;
            const source = byNumber.get(Number(m[1]));
            return (
              <button
                type="button"
                className="cite"
                disabled={!source?.documentId}
                title={source ? `${source.label}${source.page ? `, page ${source.page}` : ""}` : undefined}
                aria-label={`Source ${m[1]}${source ? `: ${source.label}${source.page ? `, page ${source.page}` : ""}` : ""}`}
                onClick={() => source && onOpen(source)}
              >
                {m[1]}
              </button>
            );
          },
        }}
      >
        {linkCitations(body)}
      </ReactMarkdown>
      {sources.length > 0 && (
        <ol className="sources" aria-label="Sources">
          {sources.map((s) => (
            <li key={s.n} value={s.n}>
              {s.documentId ? (
                <button type="button" className="link" onClick={() => onOpen(s)}>
                  {s.label}{s.page ? `, page ${s.page}` : ""}
                </button>
              ) : (
                s.label
              )}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
