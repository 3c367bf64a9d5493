import { type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { get, type ViolationList } from "../api";
import { Pager, usePageTrail } from "../components/Pager";
import { datasetsToJudge, JudgingNotice, useReadWhileJudging } from "../components/Judging";
import { DatasetLink, Panel, ruleIds, Tags, useLoad } from "../util";

/** Every copy stored where the policy forbids it (ListViolations: nothing is decided or logged). */
export function ViolationsPage() {
  const [params, setParams] = useSearchParams();
  const trail = usePageTrail();
  const region = params.get("region") ?? "";
  const key = params.toString();
  const page = useLoad(
    () => get<ViolationList>("violations", { region, page_token: params.get("page_token"), page_size: 100 }),
    [key],
  );
  useReadWhileJudging(page);

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const value = String(new FormData(event.currentTarget).get("region") ?? "").trim();
    setParams(value ? { region: value } : {});
  }


  return (
    <>
      <h1>Violations</h1>
      <p>
        Copies of datasets stored where the policy in force forbids storing them, as the router sees the catalog now.
        Each dataset's page explains where its constraints come from.
      </p>
      <form className="filters" onSubmit={submit} role="search" aria-label="Filter violations" key={region}>
        <label>
          Region <input name="region" defaultValue={region} placeholder="aws:us-east-1" />
        </label>
        <button type="submit">Filter</button>
      </form>
      <Panel loaded={page}>
        {(p) => (
          <>
            <JudgingNotice list={p} />
            <p>
              <strong className={Number(p.total) ? "bad" : ""}>{p.total}</strong> violations
              {region ? (
                <>
                  {" "}
                  in <span className="mono">{region}</span> (<Link to="/violations">all regions</Link>)
                </>
              ) : null}{" "}
              under policy <span className="mono">{p.policy_version}</span>, catalog revision {p.catalog_revision}.
            </p>
            <table className="list">
              <caption className="visually-hidden">Violations, by dataset</caption>
              <thead>
                <tr>
                  <th scope="col">Dataset</th>
                  <th scope="col">Stored in</th>
                  <th scope="col">Rules</th>
                  <th scope="col">Allowed regions</th>
                </tr>
              </thead>
              <tbody>
                {p.violations.map((v) => (
                  <tr key={`${v.dataset_id} ${v.region}`}>
                    <td>
                      <DatasetLink id={v.dataset_id} />
                      {v.inherited_only && <span className="muted"> (derived)</span>}
                    </td>
                    <td className="mono">{v.region}</td>
                    <td className="mono" title={v.reasons.map((r) => r.message).join("\n")}>
                      {ruleIds(v.reasons)}
                    </td>
                    <td>
                      {v.allowed_regions.length > 12 ? (
                        `${v.allowed_regions.length} regions`
                      ) : (
                        <Tags values={v.allowed_regions} />
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {p.violations.length === 0 && !datasetsToJudge(p) && <p>No dataset is stored where the policy forbids it.</p>}
            <Pager trail={trail} nextToken={p.next_page_token} label="Pages of violations" />
          </>
        )}
      </Panel>
    </>
  );
}
