import { useState, type FormEvent } from "react";
import { fieldErrors, messageOf, register, signIn, signInWithKey } from "../api.ts";

// The gateway's password policy, checked as you type (the server checks it again).
const RULES: [string, (p: string) => boolean][] = [
  ["At least 8 characters", (p) => p.length >= 8],
  ["An uppercase letter", (p) => /\p{Lu}/u.test(p)],
  ["A lowercase letter", (p) => /\p{Ll}/u.test(p)],
  ["A digit", (p) => /\p{Nd}/u.test(p)],
  ["A special character", (p) => /[^\p{L}\p{N}\s]/u.test(p)],
];

export default function AuthPage() {
  const [mode, setMode] = useState<"signin" | "register">("signin");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [tenant, setTenant] = useState("");
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [message, setMessage] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [key, setKey] = useState("");
  const [keyError, setKeyError] = useState<string | null>(null);

  async function submitKey(e: FormEvent) {
    e.preventDefault();
    setKeyError(null);
    try {
      await signInWithKey(key);
    } catch (err) {
      setKeyError(messageOf(err));
    }
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setErrors({});
    setMessage(null);
    try {
      if (mode === "register") {
        await register(email, password, tenant);
        setNotice("Account created. Signing you in…");
      }
      await signIn(email, password);
    } catch (err) {
      const fields = fieldErrors(err);
      setErrors(fields);
      if (!Object.keys(fields).length) setMessage(messageOf(err));
    } finally {
      setBusy(false);
    }
  }

  const registering = mode === "register";
  return (
    <section className="card auth" aria-labelledby="auth-title">
      <h1 id="auth-title">{registering ? "Create an account" : "Sign in"}</h1>
      <form onSubmit={submit} noValidate>
        <label>
          Email
          <input
            type="email"
            name="email"
            autoComplete="email"
            value={email}
            onChange={(e) => setEmail(e.target.value)}
            aria-invalid={!!errors.email}
            aria-describedby={errors.email ? "email-error" : undefined}
            required
          />
        </label>
        {errors.email && <p className="field-error" id="email-error">{errors.email}</p>}
        <label>
          Password
          <input
            type="password"
            name="password"
            autoComplete={registering ? "new-password" : "current-password"}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            aria-invalid={!!errors.password}
            aria-describedby={registering ? "password-rules" : undefined}
            required
          />
        </label>
        {errors.password && <p className="field-error" id="password-error">{errors.password}</p>}
        {registering && (
          <>
            <ul className="rules" id="password-rules" aria-label="Password rules">
              {RULES.map(([label, ok]) => (
                <li key={label} className={ok(password) ? "ok" : ""}>
                  <span aria-hidden="true">{ok(password) ? "✓" : "○"}</span> {label}
                  <span className="sr-only">{ok(password) ? " (met)" : " (missing)"}</span>
                </li>
              ))}
            </ul>
            <label>
              Organisation (optional)
              <input name="tenant_name" value={tenant} onChange={(e) => setTenant(e.target.value)} aria-invalid={!!errors.tenant_name} />
            </label>
            {errors.tenant_name && <p className="field-error">{errors.tenant_name}</p>}
          </>
        )}
        {message && <p className="error" role="alert">{message}</p>}
        {notice && !message && <p className="notice" role="status">{notice}</p>}
        <button type="submit" disabled={busy}>
          {registering ? "Create account" : "Sign in"}
        </button>
      </form>
      {!registering && (
        <details className="with-key">
          <summary>Sign in with an API key</summary>
          <form onSubmit={(e) => void submitKey(e)}>
            <label>
              API key
              <input
                type="password"
                autoComplete="off"
                value={key}
                onChange={(e) => setKey(e.target.value)}
                aria-invalid={!!keyError}
                aria-describedby="key-help"
              />
            </label>
            <p className="muted" id="key-help">
              On a local platform (<code>make run</code>) the key of tenant <code>dev</code>, where{" "}
              <code>agentbus demo</code> loads the sample organisation, is in <code>var/dev-api-key</code>.
            </p>
            {keyError && <p className="error" role="alert">{keyError}</p>}
            <button type="submit" disabled={!key.trim()}>Use this key</button>
          </form>
        </details>
      )}
      <p>
        {registering ? "Have an account? " : "New here? "}
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(registering ? "signin" : "register");
            setErrors({});
            setMessage(null);
          }}
        >
          {registering ? "Sign in" : "Create an account"}
        </button>
      </p>
    </section>
  );
}
