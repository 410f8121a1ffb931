import { useCallback, useEffect, useState, type FormEvent } from "react";
import { api, fieldErrors, messageOf } from "../api.ts";

type Key = { id: string; name: string; prefix: string; scopes: string[]; created_at: string; last_used_at: string | null };

export default function KeysPage() {
  const [keys, setKeys] = useState<Key[]>([]);
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);
  const [secret, setSecret] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [nameError, setNameError] = useState<string | null>(null);

  const [version, setVersion] = useState(0);
  const load = useCallback(() => setVersion((v) => v + 1), []);
  useEffect(() => {
    api<{ items: Key[] }>("/api/v1/api-keys")
      .then((r) => setKeys(r.items))
      .catch((err) => setError(messageOf(err)));
  }, [version]);

  async function create(e: FormEvent) {
    e.preventDefault();
    setError(null);
    setNameError(null);
    try {
      const made = await api<Key & { key: string }>("/api/v1/api-keys", {
        method: "POST",
        body: JSON.stringify({ name, scopes: admin ? ["admin"] : [] }),
      });
      setSecret(made.key);
      setName("");
      load();
    } catch (err) {
      const fields = fieldErrors(err);
      if (fields.name) setNameError(fields.name);
      else setError(messageOf(err));
    }
  }

  async function remove(key: Key) {
    if (!window.confirm(`Revoke the key “${key.name}”? Programs using it stop working.`)) return;
    try {
      await api(`/api/v1/api-keys/${key.id}`, { method: "DELETE" });
      load();
    } catch (err) {
      setError(messageOf(err));
    }
  }

  return (
    <section className="page">
      <h1>API keys</h1>
      <p className="muted">
        For programs: send a key as <code>Authorization: Bearer …</code> or <code>x-api-key</code> (what the LangGraph SDK sends).
      </p>
      <form className="row card" onSubmit={create}>
        <label>
          Name
          <input value={name} onChange={(e) => setName(e.target.value)} aria-invalid={!!nameError} required />
        </label>
        <label className="check">
          <input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.target.checked)} /> admin scope
        </label>
        <button type="submit">Create key</button>
        {nameError && <p className="field-error">{nameError}</p>}
      </form>
      {secret && (
        <div className="card notice" role="status">
          <p>Copy this key now; it is not shown again:</p>
          <code className="secret" data-testid="new-key">{secret}</code>{" "}
          <button type="button" onClick={() => void navigator.clipboard?.writeText(secret)}>Copy</button>
        </div>
      )}
      {error && <p className="error" role="alert">{error}</p>}
      <table>
        <thead>
          <tr><th>Name</th><th>Prefix</th><th>Scopes</th><th>Created</th><th>Last used</th><th><span className="sr-only">Actions</span></th></tr>
        </thead>
        <tbody>
          {keys.map((k) => (
            <tr key={k.id}>
              <td>{k.name}</td>
              <td><code>{k.prefix}…</code></td>
              <td>{k.scopes.join(", ") || "—"}</td>
              <td>{new Date(k.created_at).toLocaleString()}</td>
              <td>{k.last_used_at ? new Date(k.last_used_at).toLocaleString() : "never"}</td>
              <td><button type="button" className="danger" onClick={() => void remove(k)} aria-label={`Revoke ${k.name}`}>Revoke</button></td>
            </tr>
          ))}
          {!keys.length && <tr><td colSpan={6} className="muted">No keys yet.</td></tr>}
        </tbody>
      </table>
    </section>
  );
}
