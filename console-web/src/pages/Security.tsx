import { useSearchParams } from "react-router-dom";
import { get, type SecurityEvent } from "../api";
import { Bars } from "../components/Bars";
import { Panel, Section, time, useLoad } from "../util";

const WINDOWS: [string, string][] = [
  ["1", "last hour"],
  ["24", "last 24 hours"],
  ["168", "last 7 days"],
];

function countBy(events: SecurityEvent[], key: (e: SecurityEvent) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const e of events) counts.set(key(e), (counts.get(key(e)) ?? 0) + 1);
  return [...counts.entries()];
}

/** Authentication failures per hour and reason, as a table (rows: hours, newest first). */
function FailuresOverTime({ events }: { events: SecurityEvent[] }) {
  const reasons = [...new Set(events.map((e) => e.reason))].sort();
  const hours = new Map<string, Map<string, number>>();
  for (const e of events) {
    const hour = `${e.time.slice(0, 13)}:00Z`;
    const row = hours.get(hour) ?? new Map<string, number>();
    row.set(e.reason, (row.get(e.reason) ?? 0) + 1);
    hours.set(hour, row);
  }
  if (!events.length) return <p>No authentication failures.</p>;
  return (
    <table className="list">
      <caption className="visually-hidden">Authentication failures per hour by reason</caption>
      <thead>
        <tr>
          <th scope="col">Hour (UTC)</th>
          {reasons.map((r) => (
            <th scope="col" key={r} className="mono">
              {r}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {[...hours.entries()].map(([hour, row]) => (
          <tr key={hour}>
            <th scope="row">{hour.replace("T", " ")}</th>
            {reasons.map((r) => (
              <td key={r} className="num">
                {row.get(r) ?? 0}
              </td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function SecurityPage() {
  const [params, setParams] = useSearchParams();
  const hours = params.get("hours") ?? "24";
  const events = useLoad(
    () =>
      get<{ events: SecurityEvent[]; next_page_token: string }>("security/events", {
        start_time: new Date(Date.now() - Number(hours) * 3_600_000).toISOString(),
        page_size: 10000,
      }),
    [hours],
  );

  return (
    <>
      <h1>Security</h1>
      <form className="filters" aria-label="Time window">
        <label>
          Window
          <select value={hours} onChange={(e) => setParams({ hours: e.target.value })}>
            {WINDOWS.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </form>
      <Panel loaded={events}>
        {({ events: all, next_page_token }) => {
          const failures = all.filter((e) => e.event === "auth_failure");
          const denials = all.filter((e) => e.event === "authz_denied");
          const limited = all.filter((e) => e.event === "rate_limited");
          const changes = all.filter((e) => e.event === "policy_change");
          return (
            <div className="grid">
              {next_page_token && <p className="notice">More than 10,000 events in this window: the oldest are not counted.</p>}
              <Section title={`Authentication failures (${failures.length})`}>
                <Bars label="Authentication failures by reason" counts={countBy(failures, (e) => e.reason)} />
                <h3>Over time</h3>
                <FailuresOverTime events={failures} />
              </Section>
              <Section title={`Permission denials (${denials.length})`}>
                <table className="list">
                  <thead>
                    <tr>
                      <th scope="col">Principal</th>
                      <th scope="col">Scope required</th>
                      <th scope="col">Denials</th>
                    </tr>
                  </thead>
                  <tbody>
                    {countBy(denials, (e) => `${e.principal}\u0000${String(e.detail.required ?? e.reason)}`)
                      .sort((a, b) => b[1] - a[1])
                      .map(([key, n]) => {
                        const [principal, scope] = key.split("\u0000");
                        return (
                          <tr key={key}>
                            <td>{principal || <span className="muted">unknown</span>}</td>
                            <td className="mono">{scope}</td>
                            <td className="num">{n}</td>
                          </tr>
                        );
                      })}
                  </tbody>
                </table>
                {denials.length === 0 && <p>No permission denials.</p>}
              </Section>
              <Section title={`Rate-limited callers (${limited.length})`}>
                <Bars label="Rate-limited callers" counts={countBy(limited, (e) => e.principal || e.peer)} />
              </Section>
              <Section title={`Policy changes (${changes.length})`}>
                <ul className="plain">
                  {changes.map((e) => (
                    <li key={`${e.time}${e.trace_id}`}>
                      {time(e.time)}: <span className="mono">{String(e.detail.version ?? "")}</span> by {e.principal || "unknown"}
                    </li>
                  ))}
                </ul>
                {changes.length === 0 && <p>No policy changes.</p>}
              </Section>
            </div>
          );
        }}
      </Panel>
    </>
  );
}
