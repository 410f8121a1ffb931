import { lazy, Suspense, useEffect, useState } from "react";
import { loadSession, onSessionChange, signOut } from "./api.ts";
import { useRoute } from "./route.ts";
import AuthPage from "./pages/AuthPage.tsx";
// Each page is its own chunk: the sign-in screen loads no chat SDK and no charts.
const ChatPage = lazy(() => import("./pages/ChatPage.tsx"));
const DocumentsPage = lazy(() => import("./pages/DocumentsPage.tsx"));
const DashboardPage = lazy(() => import("./pages/DashboardPage.tsx"));
const RunsPage = lazy(() => import("./pages/RunsPage.tsx"));
const KeysPage = lazy(() => import("./pages/KeysPage.tsx"));

const PAGES = [
  ["chat", "Chat"],
  ["documents", "Documents"],
  ["dashboard", "Dashboards"],
  ["runs", "Runs & traces"],
  ["keys", "API keys"],
] as const;

type Theme = "light" | "dark";

function useTheme(): [Theme, () => void] {
  const initial = (): Theme =>
    (localStorage.getItem("agentbus.theme") as Theme | null) ??
    (window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const [theme, setTheme] = useState<Theme>(initial);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("agentbus.theme", theme);
  }, [theme]);
  return [theme, () => setTheme((t) => (t === "dark" ? "light" : "dark"))];
}

export default function App() {
  const [session, setSession] = useState(loadSession);
  const [theme, toggleTheme] = useTheme();
  const [page, ...rest] = useRoute();
  useEffect(() => onSessionChange(() => setSession(loadSession())), []);

  const themeButton = (
    <button type="button" className="ghost" onClick={toggleTheme} aria-label={`Switch to ${theme === "dark" ? "light" : "dark"} theme`}>
      {theme === "dark" ? "☀" : "☾"}
    </button>
  );
  if (!session) {
    return (
      <div className="shell">
        <header className="top">
          <span className="brand">Agentbus</span>
          {themeButton}
        </header>
        <main>
          <AuthPage />
        </main>
      </div>
    );
  }
  const current = PAGES.some(([id]) => id === page) ? page : "chat";
  return (
    <div className="shell">
      <header className="top">
        <span className="brand">Agentbus</span>
        <nav aria-label="Pages">
          {PAGES.map(([id, label]) => (
            <a key={id} href={`#/${id}`} aria-current={current === id ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span className="who" title="Signed in">{session.email}</span>
        {themeButton}
        <button type="button" className="ghost" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main>
        <Suspense fallback={<p className="muted page">Loading…</p>}>
        {current === "chat" && <ChatPage threadId={rest[0] ?? null} />}
        {current === "documents" && <DocumentsPage />}
        {current === "dashboard" && <DashboardPage />}
        {current === "runs" && <RunsPage runId={rest[0] ?? null} />}
        {current === "keys" && <KeysPage />}
        </Suspense>
      </main>
    </div>
  );
}
