import { useEffect, useState, type ReactNode } from "react";
import { Link } from "react-router-dom";
import { ApiError, type Reason } from "./api";

export interface Loaded<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` whenever `deps` change; the latest answer wins. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [round, setRound] = useState(0);
  useEffect(() => {
    let current = true;
    setState((previous) => ({ data: previous.data, loading: true }));
    load().then(
      (data) => current && setState({ data, loading: false }),
      (error) => current && setState({ error, loading: false }),
    );
    return () => {
      current = false;
    };
  }, [...deps, round]);
  return { ...state, reload: () => setRound((n) => n + 1) };
}

export function ErrorBox({ error }: { error: unknown }) {
  if (error instanceof ApiError) {
    if (error.status === 403 && error.reason === "MISSING_SCOPE") {
      return (
        <div className="notice refused" role="alert">
          <strong>Not allowed.</strong> {error.message}. Your session does not hold that scope.
        </div>
      );
    }
    return (
      <div className="notice error" role="alert">
        <strong>{error.code}</strong>: {error.message}
        {error.fieldViolations.length > 0 && (
          <ul>
            {error.fieldViolations.map((v) => (
              <li key={v.field}>
                <code>{v.field}</code>: {v.description}
              </li>
            ))}
          </ul>
        )}
      </div>
    );
  }
  return (
    <div className="notice error" role="alert">
      {String(error)}
    </div>
  );
}

export function Section({ title, children, id, wide }: { title: string; children: ReactNode; id?: string; wide?: boolean }) {
  const headingId = id ?? `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return (
    <section className={wide ? "card map-card" : "card"} aria-labelledby={headingId}>
      <h2 id={headingId}>{title}</h2>
      {children}
    </section>
  );
}

export function Panel<T>({ loaded, children }: { loaded: Loaded<T>; children: (data: T) => ReactNode }) {
  if (loaded.error) return <ErrorBox error={loaded.error} />;
  if (loaded.data === undefined) return <p className="muted">Loading…</p>;
  return <>{children(loaded.data)}</>;
}

export function time(value?: string): string {
  if (!value) return "";
  const date = new Date(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

/** `2026-11-30T10:00:00Z` <-> the value of an `<input type="datetime-local">` read as UTC. */
export function toLocalInput(iso: string): string {
  return iso ? iso.replace(/(:\d\d)(\.\d+)?Z$/, "$1").slice(0, 19) : "";
}

export function fromLocalInput(value: string): string {
  return value ? new Date(`${value}Z`).toISOString().replace(/\.000Z$/, "Z") : "";
}

export function datasetLink(id: string, asOf?: string) {
  const params = new URLSearchParams({ id });
  if (asOf) params.set("as_of", asOf);
  return `/dataset?${params}`;
}

export function DatasetLink({ id, asOf }: { id: string; asOf?: string }) {
  return (
    <Link to={datasetLink(id, asOf)} className="mono">
      {id}
    </Link>
  );
}

export function Tags({ values, kind }: { values: string[]; kind?: string }) {
  if (!values.length) return <span className="muted">none</span>;
  return (
    <span className="tags">
      {values.map((v) => (
        <span key={v} className={`tag ${kind ?? ""}`}>
          {v}
        </span>
      ))}
    </span>
  );
}

export function Outcome({ outcome }: { outcome: string }) {
  const allow = outcome === "OUTCOME_ALLOW";
  return <span className={`outcome ${allow ? "allow" : "deny"}`}>{allow ? "ALLOW" : "DENY"}</span>;
}

export function operationName(op: string): string {
  return op.replace("OPERATION_", "").toLowerCase();
}

/** Downloads `blob` as `name`. */
export function download(blob: Blob, name: string) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** The rules (or reason codes, for a reason without a rule) of a decision, once each. */
export function ruleIds(reasons: Reason[]): string {
  return [...new Set(reasons.map((r) => r.rule_id || r.code))].join(", ");
}
