import { type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import {
  get,
  type AccessAnomaly,
  type AccessOperation,
  type AccessRun,
  type AccessSummary,
  type ActorAccess,
  type DatasetAccess,
  type ObservedViolation,
} from "../api";
import { DatasetLink, fromLocalInput, operationName, Panel, ruleIds, Section, Tags, time, toLocalInput, useLoad } from "../util";

const OPERATION: Record<AccessOperation, string> = {
  ACCESS_OPERATION_READ: "read",
  ACCESS_OPERATION_WRITE: "write",
  ACCESS_OPERATION_CATALOG_WRITE: "catalog write",
  ACCESS_OPERATION_INTENT_STORE: "asked to store",
  ACCESS_OPERATION_INTENT_PROCESS: "asked to process",
};

const VIOLATION_KIND: Record<string, string> = {
  OBSERVED_VIOLATION_KIND_POLICY_DENIED: "denied by the policy",
  OBSERVED_VIOLATION_KIND_UNKNOWN_RUN_REGION: "run region unknown",
  OBSERVED_VIOLATION_KIND_UNKNOWN_OUTPUT_LOCATION: "output location unknown",
  OBSERVED_VIOLATION_KIND_NOT_JUDGED: "not judged (stale catalog)",
};

const ANOMALY_KIND: Record<string, string> = {
  ACCESS_ANOMALY_KIND_NEW_CLASSIFICATION_FOR_ACTOR: "new classification",
  ACCESS_ANOMALY_KIND_NEW_REGION_FOR_ACTOR: "new region",
  ACCESS_ANOMALY_KIND_ACCESS_BURST: "burst",
};

/** Who read and wrote what from where (AccessService), in the URL's time range. */
export function AccessPage() {
  const [params, setParams] = useSearchParams();
  const datasetId = params.get("dataset_id") ?? "";
  const actor = params.get("actor") ?? "";
  const since = params.get("since") ?? "";
  const until = params.get("until") ?? "";
  const range = { since: since || null, until: until || null };

  const patterns = useLoad(
    () => (datasetId ? get<{ actors: ActorAccess[] }>("access/patterns", { dataset_id: datasetId, ...range }) : Promise.resolve(null)),
    [datasetId, since, until],
  );
  const actorAccess = useLoad(
    () =>
      actor
        ? get<{ datasets: DatasetAccess[]; runs: AccessRun[] }>("access/actor", { actor, max_runs: 20, ...range })
        : Promise.resolve(null),
    [actor, since, until],
  );
  const violations = useLoad(
    () =>
      get<{ violations: ObservedViolation[]; next_page_token: string }>("access/violations", {
        ...range,
        page_token: params.get("violations_page"),
        page_size: 50,
      }),
    [since, until, params.get("violations_page")],
  );
  const anomalies = useLoad(
    () =>
      get<{ anomalies: AccessAnomaly[]; next_page_token: string }>("access/anomalies", {
        ...range,
        page_token: params.get("anomalies_page"),
        page_size: 50,
      }),
    [since, until, params.get("anomalies_page")],
  );

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    for (const f of ["dataset_id", "actor"]) {
      const value = String(form.get(f) ?? "").trim();
      if (value) next.set(f, value);
    }
    for (const f of ["since", "until"]) {
      const value = fromLocalInput(String(form.get(f) ?? ""));
      if (value) next.set(f, value);
    }
    setParams(next);
  }

  function link(changes: Record<string, string>): string {
    const next = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) next.set(k, v);
      else next.delete(k);
    }
    return `/access?${next}`;
  }

  return (
    <>
      <h1>Access patterns</h1>
      <p>
        Who read and wrote each dataset, from where: the runs reported to Domicile, catalog writes and residency
        questions, with the flows that already happened where the policy forbids them and the actors that left their
        usual pattern.
      </p>
      <form className="filters" onSubmit={submit} role="search" aria-label="Access patterns" key={params.toString()}>
        <label>
          Dataset <input name="dataset_id" defaultValue={datasetId} size={40} />
        </label>
        <label>
          Actor (job or principal) <input name="actor" defaultValue={actor} size={28} />
        </label>
        <label>
          From (UTC) <input name="since" type="datetime-local" step={1} defaultValue={toLocalInput(since)} />
        </label>
        <label>
          Until (UTC) <input name="until" type="datetime-local" step={1} defaultValue={toLocalInput(until)} />
        </label>
        <button type="submit">Show</button>
      </form>

      {datasetId && (
        <Section title="Who touched the dataset">
          <p>
            <DatasetLink id={datasetId} />
          </p>
          <Panel loaded={patterns}>
            {(p) =>
              p && p.actors.length ? (
                <table className="list" data-testid="dataset-actors">
                  <caption className="visually-hidden">Accesses to the dataset, by actor</caption>
                  <thead>
                    <tr>
                      <th scope="col">Actor</th>
                      <th scope="col">Accesses</th>
                      <th scope="col">Total</th>
                      <th scope="col">First seen</th>
                      <th scope="col">Last seen</th>
                    </tr>
                  </thead>
                  <tbody>
                    {p.actors.map((a) => (
                      <tr key={a.actor}>
                        <td>
                          <Link className="mono" to={link({ actor: a.actor })}>
                            {a.actor}
                          </Link>
                        </td>
                        <td>
                          <Accesses accesses={a.accesses} />
                        </td>
                        <td className="num">{a.total_count}</td>
                        <td>{time(a.first_seen)}</td>
                        <td>{time(a.last_seen)}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              ) : (
                <p>No recorded access in this time range.</p>
              )
            }
          </Panel>
        </Section>
      )}

      {actor && (
        <Section title="What the actor touched">
          <p className="mono">{actor}</p>
          <Panel loaded={actorAccess}>
            {(a) =>
              a && (a.datasets.length || a.runs.length) ? (
                <>
                  <table className="list" data-testid="actor-datasets">
                    <caption className="visually-hidden">Datasets the actor touched</caption>
                    <thead>
                      <tr>
                        <th scope="col">Dataset</th>
                        <th scope="col">Accesses</th>
                        <th scope="col">Total</th>
                        <th scope="col">Last seen</th>
                      </tr>
                    </thead>
                    <tbody>
                      {a.datasets.map((d) => (
                        <tr key={d.dataset_id}>
                          <td>
                            <Link className="mono" to={link({ dataset_id: d.dataset_id })}>
                              {d.dataset_id}
                            </Link>
                          </td>
                          <td>
                            <Accesses accesses={d.accesses} />
                          </td>
                          <td className="num">{d.total_count}</td>
                          <td>{time(d.last_seen)}</td>
                        </tr>
                      ))}
                    </tbody>
                  </table>
                  {a.runs.length > 0 && (
                    <>
                      <h3>Latest runs</h3>
                      <table className="list">
                        <caption className="visually-hidden">The actor's latest runs</caption>
                        <thead>
                          <tr>
                            <th scope="col">Run</th>
                            <th scope="col">Ran in</th>
                            <th scope="col">When</th>
                            <th scope="col">Sent by</th>
                            <th scope="col">Datasets</th>
                          </tr>
                        </thead>
                        <tbody>
                          {a.runs.map((r) => (
                            <tr key={r.run_id}>
                              <td className="mono">{r.run_id}</td>
                              <td className="mono">{r.run_region || <span className="muted">unknown</span>}</td>
                              <td>{time(r.event_time)}</td>
                              <td>{r.principal}</td>
                              <td>
                                {r.accesses.map((x) => (
                                  <div key={`${x.dataset_id} ${x.operation} ${x.region}`}>
                                    {OPERATION[x.operation]} <DatasetLink id={x.dataset_id} />{" "}
                                    {x.region && <span className="mono muted">{x.region}</span>}
                                  </div>
                                ))}
                              </td>
                            </tr>
                          ))}
                        </tbody>
                      </table>
                    </>
                  )}
                </>
              ) : (
                <p>No recorded access by this actor in this time range.</p>
              )
            }
          </Panel>
        </Section>
      )}

      <Section title="Observed violations">
        <Panel loaded={violations}>
          {(v) => (
            <>
              {v.violations.length ? (
                <table className="list" data-testid="observed-violations">
                  <caption className="visually-hidden">Flows that happened where the policy forbids them, oldest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">When</th>
                      <th scope="col">Why</th>
                      <th scope="col">Job and run</th>
                      <th scope="col">Dataset</th>
                      <th scope="col">Operation</th>
                      <th scope="col">Region</th>
                      <th scope="col">Rules</th>
                    </tr>
                  </thead>
                  <tbody>
                    {v.violations.map((x) => (
                      <tr key={x.violation_id}>
                        <td>
                          {time(x.event_time)}
                          {x.late && <span className="muted"> (reported late)</span>}
                        </td>
                        <td>{VIOLATION_KIND[x.kind] ?? x.kind}</td>
                        <td>
                          <Link className="mono" to={link({ actor: x.job })}>
                            {x.job}
                          </Link>{" "}
                          <span className="mono muted">{x.run_id}</span>
                        </td>
                        <td>
                          <DatasetLink id={x.dataset_id} />
                        </td>
                        <td>{operationName(x.operation)}</td>
                        <td className="mono">{x.region || <span className="muted">unknown</span>}</td>
                        <td className="mono">
                          {x.decision ? (
                            <Link to={`/decision?id=${encodeURIComponent(x.decision.decision_id)}`}>{ruleIds(x.decision.reasons)}</Link>
                          ) : (
                            <span title={x.message}>-</span>
                          )}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              ) : (
                <p>No observed violation in this time range.</p>
              )}
              <Pager current={params.get("violations_page")} next={v.next_page_token} link={(t) => link({ violations_page: t })} label="observed violations" />
            </>
          )}
        </Panel>
      </Section>

      <Section title="Anomalies">
        <Panel loaded={anomalies}>
          {(a) => (
            <>
              {a.anomalies.length ? (
                <table className="list" data-testid="anomalies">
                  <caption className="visually-hidden">Actors that left their baseline, oldest first</caption>
                  <thead>
                    <tr>
                      <th scope="col">Detected</th>
                      <th scope="col">Kind</th>
                      <th scope="col">Actor</th>
                      <th scope="col">New</th>
                      <th scope="col">Baseline</th>
                      <th scope="col">Datasets</th>
                    </tr>
                  </thead>
                  <tbody>
                    {a.anomalies.map((x) => (
                      <tr key={x.anomaly_id} title={x.message}>
                        <td>{time(x.detect_time)}</td>
                        <td>{ANOMALY_KIND[x.kind] ?? x.kind}</td>
                        <td>
                          <Link className="mono" to={link({ actor: x.actor })}>
                            {x.actor}
                          </Link>
                        </td>
                        <td className="mono">{x.value}</td>
                        <td>
                          <Tags values={x.baseline} />
                        </td>
                        <td>
                          {x.dataset_ids.map((d) => (
                            <div key={d}>
                              <DatasetLink id={d} />
                            </div>
                          ))}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              ) : (
                <p>No anomaly in this time range.</p>
              )}
              <Pager current={params.get("anomalies_page")} next={a.next_page_token} link={(t) => link({ anomalies_page: t })} label="anomalies" />
            </>
          )}
        </Panel>
      </Section>
    </>
  );
}

function Accesses({ accesses }: { accesses: AccessSummary[] }) {
  return (
    <>
      {accesses.map((x) => (
        <div key={`${x.operation} ${x.region}`}>
          {OPERATION[x.operation]} {x.region && <span className="mono">{x.region}</span>}{" "}
          <span className="muted">×{x.count}</span>
        </div>
      ))}
    </>
  );
}

/** First page and next page links (page tokens go forward only). */
function Pager({ current, next, link, label }: { current: string | null; next: string; link: (token: string) => string; label: string }) {
  if (!current && !next) return null;
  return (
    <nav className="pager" aria-label={`Pages of ${label}`}>
      {current && <Link to={link("")}>First page</Link>} {next && <Link to={link(next)}>Next page</Link>}
    </nav>
  );
}
