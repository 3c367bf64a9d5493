import { type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { get, type LoggedDecision } from "../api";
import { Pager, usePageTrail } from "../components/Pager";
import { DatasetLink, fromLocalInput, operationName, Outcome, Panel, ruleIds, time, toLocalInput, useLoad } from "../util";

const TEXT_FILTERS = ["dataset_id", "caller", "rule_id"] as const;

export function DecisionsPage() {
  const [params, setParams] = useSearchParams();
  const trail = usePageTrail();
  const key = params.toString();
  const page = useLoad(
    () =>
      get<{ decisions: LoggedDecision[]; next_page_token: string; complete: boolean }>("decisions", {
        dataset_id: params.get("dataset_id"),
        caller: params.get("caller"),
        rule_id: params.get("rule_id"),
        outcome: params.get("outcome"),
        start_time: params.get("start"),
        end_time: params.get("end"),
        page_token: params.get("page_token"),
        page_size: 50,
      }),
    [key],
  );

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    for (const f of TEXT_FILTERS) {
      const value = String(form.get(f) ?? "").trim();
      if (value) next.set(f, value);
    }
    const outcome = String(form.get("outcome") ?? "");
    if (outcome) next.set("outcome", outcome);
    for (const f of ["start", "end"]) {
      const value = fromLocalInput(String(form.get(f) ?? ""));
      if (value) next.set(f, value);
    }
    setParams(next);
  }


  return (
    <>
      <h1>Decisions</h1>
      <form className="filters" onSubmit={submit} role="search" aria-label="Search the decision log">
        <label>
          Dataset <input name="dataset_id" defaultValue={params.get("dataset_id") ?? ""} size={40} />
        </label>
        <label>
          Caller <input name="caller" defaultValue={params.get("caller") ?? ""} />
        </label>
        <label>
          Outcome
          <select name="outcome" defaultValue={params.get("outcome") ?? ""}>
            <option value="">any</option>
            <option value="OUTCOME_ALLOW">ALLOW</option>
            <option value="OUTCOME_DENY">DENY</option>
          </select>
        </label>
        <label>
          Rule <input name="rule_id" defaultValue={params.get("rule_id") ?? ""} />
        </label>
        <label>
          From (UTC) <input name="start" type="datetime-local" step={1} defaultValue={toLocalInput(params.get("start") ?? "")} />
        </label>
        <label>
          Until (UTC) <input name="end" type="datetime-local" step={1} defaultValue={toLocalInput(params.get("end") ?? "")} />
        </label>
        <button type="submit">Search</button>
      </form>
      <Panel loaded={page}>
        {(p) => (
          <>
            {!p.complete && (
              <p className="notice">The search stopped at its scan budget; use Next to search older decisions.</p>
            )}
            <table className="list">
              <caption className="visually-hidden">Decisions, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Dataset</th>
                  <th scope="col">Operation</th>
                  <th scope="col">Region</th>
                  <th scope="col">Rules</th>
                  <th scope="col">Caller</th>
                  <th scope="col">Decision</th>
                </tr>
              </thead>
              <tbody>
                {p.decisions.map(({ decision: d, caller, kind }) => (
                  <tr key={d.decision_id}>
                    <td>{time(d.decide_time)}</td>
                    <td>
                      <Outcome outcome={d.outcome} />
                    </td>
                    <td>
                      <DatasetLink id={d.dataset_id} />
                    </td>
                    <td>{operationName(d.operation)}</td>
                    <td className="mono">{d.region}</td>
                    <td className="mono">{ruleIds(d.reasons)}</td>
                    <td>
                      {caller || <span className="muted">anonymous</span>} <span className="muted">({kind})</span>
                    </td>
                    <td>
                      <Link to={`/decision?id=${encodeURIComponent(d.decision_id)}`} className="mono">
                        {d.decision_id}
                      </Link>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {p.decisions.length === 0 && <p>No logged decision matches.</p>}
            <Pager trail={trail} nextToken={p.next_page_token} label="Pages of decisions" previousText="Newer" nextText="Older" />
          </>
        )}
      </Panel>
    </>
  );
}
