import { lazy, Suspense, useEffect, useState } from "react";
import { NavLink, Route, Routes } from "react-router-dom";
import { loadSession, signOut, type SessionInfo } from "./api";
import { DatasetPage } from "./pages/Dataset";
import { DatasetsPage } from "./pages/Datasets";
import { DecisionPage } from "./pages/Decision";
import { DecisionsPage } from "./pages/Decisions";
import { LineagePage } from "./pages/Lineage";
import { OverviewPage } from "./pages/Overview";
import { AccessPage } from "./pages/Access";
import { SecurityPage } from "./pages/Security";
import { ViolationsPage } from "./pages/Violations";
import { ErrorBox } from "./util";

// The YAML parser, the highlighter and the diff are most of the code: loaded with their page
// (a lazy page shows its fallback for at least 300 ms, React's throttle: not for pages that
// must draw fast).
const PolicyPage = lazy(() => import("./pages/Policy").then((m) => ({ default: m.PolicyPage })));

const PAGES: [string, string][] = [
  ["/", "Overview"],
  ["/datasets", "Datasets"],
  ["/violations", "Violations"],
  ["/lineage", "Lineage"],
  ["/decisions", "Decisions"],
  ["/policy", "Policy"],
  ["/access", "Access"],
  ["/security", "Security"],
];

export function App() {
  const [session, setSession] = useState<SessionInfo | null | undefined>(undefined);
  const [error, setError] = useState<unknown>();

  useEffect(() => {
    loadSession().then(setSession, setError);
  }, []);

  if (error) return <ErrorBox error={error} />;
  if (session === undefined) return <p className="muted page">Loading…</p>;
  if (session === null) return <SignedOut />;

  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Domicile</span>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map(([to, label]) => (
              <li key={to}>
                <NavLink to={to} end={to === "/"}>
                  {label}
                </NavLink>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span title={session.scopes.join(" ")}>
            {session.principal} <span className="muted">({session.scopes.length} scopes)</span>
          </span>
          <button
            type="button"
            onClick={() =>
              signOut().then(
                (answer) => (answer.end_session_url ? window.location.assign(answer.end_session_url) : setSession(null)),
                () => setSession(null),
              )
            }
          >
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Suspense fallback={<p className="muted">Loading…</p>}>
        <Routes>
          <Route path="/" element={<OverviewPage />} />
          <Route path="/datasets" element={<DatasetsPage />} />
          <Route path="/dataset" element={<DatasetPage />} />
          <Route path="/violations" element={<ViolationsPage />} />
          <Route path="/lineage" element={<LineagePage />} />
          <Route path="/decisions" element={<DecisionsPage />} />
          <Route path="/decision" element={<DecisionPage />} />
          <Route path="/policy" element={<PolicyPage />} />
          <Route path="/access" element={<AccessPage />} />
          <Route path="/security" element={<SecurityPage />} />
          <Route path="*" element={<h1>No such page</h1>} />
        </Routes>
        </Suspense>
      </main>
    </>
  );
}

function SignedOut() {
  return (
    <main id="main" className="signed-out">
      <h1>Domicile console</h1>
      <p>You are signed out.</p>
      <p>
        <a href="/signin">Sign in</a> with your organisation's identity provider or, on a server started with{" "}
        <code>domicile serve --dev</code>, with the one-time link it printed (make a new one with{" "}
        <code>domicile dev console-link</code>).
      </p>
    </main>
  );
}
