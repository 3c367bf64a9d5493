import { type FormEvent } from "react";
import { useSearchParams } from "react-router-dom";
import { get, type Dataset, type Region } from "../api";
import { Pager, usePageTrail } from "../components/Pager";
import { DatasetLink, fromLocalInput, Panel, Tags, toLocalInput, useLoad } from "../util";

const FILTERS = ["query", "classification", "origin", "region", "owner"] as const;

export function DatasetsPage() {
  const [params, setParams] = useSearchParams();
  const trail = usePageTrail();
  const key = params.toString();
  const regions = useLoad(() => get<{ regions: Region[] }>("regions"), []);
  const page = useLoad(
    () =>
      get<{ datasets: Dataset[]; next_page_token: string }>("datasets", {
        ...Object.fromEntries(FILTERS.map((f) => [f, params.get(f)])),
        as_of: params.get("as_of"),
        page_token: params.get("page_token"),
        page_size: 50,
      }),
    [key],
  );

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const next = new URLSearchParams();
    for (const f of FILTERS) {
      const value = String(form.get(f) ?? "").trim();
      if (value) next.set(f, value);
    }
    const asOf = fromLocalInput(String(form.get("as_of") ?? ""));
    if (asOf) next.set("as_of", asOf);
    setParams(next);
  }


  const asOf = params.get("as_of") ?? "";
  return (
    <>
      <h1>Datasets</h1>
      <form className="filters" onSubmit={submit} role="search" aria-label="Filter datasets">
        <label>
          Text <input name="query" type="search" defaultValue={params.get("query") ?? ""} placeholder="id, name or description" />
        </label>
        <label>
          Classification <input name="classification" defaultValue={params.get("classification") ?? ""} placeholder="PII matches PII.*" />
        </label>
        <label>
          Origin <input name="origin" defaultValue={params.get("origin") ?? ""} placeholder="DE" size={4} />
        </label>
        <label>
          Region
          <select name="region" defaultValue={params.get("region") ?? ""}>
            <option value="">any</option>
            {regions.data?.regions.map((r) => (
              <option key={r.id} value={r.id}>
                {r.id}
              </option>
            ))}
          </select>
        </label>
        <label>
          Owner <input name="owner" defaultValue={params.get("owner") ?? ""} />
        </label>
        <label>
          As of (UTC) <input name="as_of" type="datetime-local" step={1} defaultValue={toLocalInput(asOf)} />
        </label>
        <button type="submit">Search</button>
      </form>
      <Panel loaded={page}>
        {(p) => (
          <>
            <table className="list">
              <caption className="visually-hidden">Datasets</caption>
              <thead>
                <tr>
                  <th scope="col">Dataset</th>
                  <th scope="col">Owner</th>
                  <th scope="col">Classifications</th>
                  <th scope="col">Origins</th>
                  <th scope="col">Locations</th>
                </tr>
              </thead>
              <tbody>
                {p.datasets.map((d) => (
                  <tr key={d.id}>
                    <td>
                      <DatasetLink id={d.id} asOf={asOf} />
                      <div className="muted">{d.name}</div>
                    </td>
                    <td>{d.owner}</td>
                    <td>
                      <Tags values={d.classifications} kind="label" />
                    </td>
                    <td>
                      <Tags values={d.origins} />
                    </td>
                    <td>
                      <Tags values={d.locations} kind="region" />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {p.datasets.length === 0 && <p>No dataset matches.</p>}
            <Pager trail={trail} nextToken={p.next_page_token} label="Pages of datasets" />
          </>
        )}
      </Panel>
    </>
  );
}
