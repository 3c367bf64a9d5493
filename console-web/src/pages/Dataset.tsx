import { Link, useSearchParams } from "react-router-dom";
import { get, type Dataset, type Explanation } from "../api";
import { DatasetLink, fromLocalInput, Panel, Section, Tags, time, toLocalInput, useLoad } from "../util";

interface Revision {
  revision: string;
  time?: string;
  principal: string;
  change: string;
  dataset?: Dataset;
}

const COMPARED: (keyof Dataset)[] = [
  "name",
  "owner",
  "description",
  "classifications",
  "origins",
  "locations",
  "tags",
  "fields",
  "protection",
  "placeholder",
];

/** The fields a revision changed against the one before it. */
function changed(current?: Dataset, previous?: Dataset): string {
  if (!current) return "deleted";
  if (!previous) return "created";
  const names = COMPARED.filter((k) => JSON.stringify(current[k]) !== JSON.stringify(previous[k]));
  return names.length ? names.join(", ") : "no content change";
}

function Attributes({ own, effective, asOf }: { own: string[]; effective: Explanation["classifications"]; asOf?: string }) {
  const ownSet = new Set(own);
  return (
    <table className="list">
      <thead>
        <tr>
          <th scope="col">Value</th>
          <th scope="col">Source</th>
          <th scope="col">Lineage path that brought it</th>
        </tr>
      </thead>
      <tbody>
        {effective.map((a) => {
          const inherited = a.lineage_path.length > 1 || !ownSet.has(a.value);
          return (
            <tr key={a.value}>
              <td className="mono">{a.value}</td>
              <td>{inherited ? <span className="tag inherited">inherited</span> : <span className="tag">own</span>}</td>
              <td>
                {inherited ? (
                  <ol className="path">
                    {a.lineage_path.map((id) => (
                      <li key={id}>
                        <DatasetLink id={id} asOf={asOf} />
                      </li>
                    ))}
                  </ol>
                ) : (
                  <span className="muted">its own</span>
                )}
              </td>
            </tr>
          );
        })}
        {effective.length === 0 && (
          <tr>
            <td colSpan={3} className="muted">
              none
            </td>
          </tr>
        )}
      </tbody>
    </table>
  );
}

export function DatasetPage() {
  const [params, setParams] = useSearchParams();
  const id = params.get("id") ?? "";
  const asOf = params.get("as_of") ?? "";
  const dataset = useLoad(() => get<{ dataset: Dataset }>("dataset", { id, as_of: asOf }), [id, asOf]);
  const explanation = useLoad(() => get<Explanation>("explain", { dataset_id: id, as_of: asOf }), [id, asOf]);
  const revisions = useLoad(() => get<{ revisions: Revision[]; next_page_token: string }>("dataset/revisions", { id }), [id]);

  function pick(value: string) {
    const next = new URLSearchParams(params);
    if (value) next.set("as_of", value);
    else next.delete("as_of");
    setParams(next);
  }

  return (
    <>
      <h1 className="mono break">{id}</h1>
      <form
        className="filters"
        onSubmit={(e) => {
          e.preventDefault();
          pick(fromLocalInput(String(new FormData(e.currentTarget).get("as_of") ?? "")));
        }}
      >
        <label>
          As of (UTC) <input name="as_of" type="datetime-local" step={1} defaultValue={toLocalInput(asOf)} key={asOf} />
        </label>
        <button type="submit">Show</button>
        {asOf && (
          <button type="button" onClick={() => pick("")}>
            Now
          </button>
        )}
        <Link to={`/lineage?id=${encodeURIComponent(id)}${asOf ? `&as_of=${encodeURIComponent(asOf)}` : ""}`}>Lineage graph</Link>
        <Link to={`/decisions?dataset_id=${encodeURIComponent(id)}`}>Decisions</Link>
        <Link to={`/access?dataset_id=${encodeURIComponent(id)}`}>Access</Link>
      </form>
      {asOf && <p className="notice">As it was at {time(asOf)}, under the policy in force then.</p>}
      <div className="grid">
        <Section title="Description">
          <Panel loaded={dataset}>
            {({ dataset: d }) => (
              <dl className="facts">
                <dt>Name</dt>
                <dd>{d.name || <span className="muted">none</span>}</dd>
                <dt>Owner</dt>
                <dd>{d.owner}</dd>
                <dt>Description</dt>
                <dd>{d.description}</dd>
                {d.placeholder && (
                  <>
                    <dt>Described</dt>
                    <dd className="bad">No: known only from lineage (a placeholder)</dd>
                  </>
                )}
                <dt>Locations</dt>
                <dd>
                  <Tags values={d.locations} kind="region" />
                </dd>
                <dt>Protection</dt>
                <dd>
                  <Tags
                    values={[
                      d.protection?.encrypted_at_rest ? "encrypted at rest" : "",
                      d.protection?.field_level_encrypted ? "field-level encrypted" : "",
                      d.protection?.tokenized ? "tokenized" : "",
                    ].filter(Boolean)}
                  />
                </dd>
                <dt>Fields</dt>
                <dd>
                  {d.fields.map((f) => (
                    <div key={f.name}>
                      <span className="mono">{f.name}</span> <Tags values={f.classifications} kind="label" />
                    </div>
                  ))}
                </dd>
                <dt>Revision</dt>
                <dd>
                  {d.revision} by {d.updated_by || "—"} at {time(d.update_time)}
                </dd>
              </dl>
            )}
          </Panel>
        </Section>
        <Section title="Where it may go">
          <Panel loaded={explanation}>
            {(e) => (
              <dl className="facts">
                <dt>Store in</dt>
                <dd>
                  <Tags values={e.store_regions} kind="region" />
                </dd>
                <dt>Process in</dt>
                <dd>
                  <Tags values={e.process_regions} kind="region" />
                </dd>
                <dt>Policy</dt>
                <dd className="mono">{e.policy_version}</dd>
                {e.inherited_only && (
                  <>
                    <dt>Judged</dt>
                    <dd>by what it inherits (undescribed; derived from described datasets)</dd>
                  </>
                )}
                {e.unapproved_declassifications.length > 0 && (
                  <>
                    <dt>Not honoured</dt>
                    <dd>
                      <ul className="plain">
                        {e.unapproved_declassifications.map((u) => (
                          <li key={`${u.input} ${u.output} ${u.job}`}>
                            <span className="mono">{u.job}</span> claims <em>{u.transform}</em> on <DatasetLink id={u.input} asOf={asOf} /> →{" "}
                            <DatasetLink id={u.output} asOf={asOf} />, which the policy does not grant it: {u.classifications.join(", ")} kept
                          </li>
                        ))}
                      </ul>
                    </dd>
                  </>
                )}
              </dl>
            )}
          </Panel>
        </Section>
        <Section title="Classifications: own and effective">
          <Panel loaded={explanation}>
            {(e) => <Attributes own={dataset.data?.dataset.classifications ?? []} effective={e.classifications} asOf={asOf} />}
          </Panel>
        </Section>
        <Section title="Origins: own and effective">
          <Panel loaded={explanation}>
            {(e) => <Attributes own={dataset.data?.dataset.origins ?? []} effective={e.origins} asOf={asOf} />}
          </Panel>
        </Section>
        <Section title="Revision history">
          <Panel loaded={revisions}>
            {(r) => (
              <table className="list">
                <thead>
                  <tr>
                    <th scope="col">Revision</th>
                    <th scope="col">When</th>
                    <th scope="col">Who</th>
                    <th scope="col">What changed</th>
                    <th scope="col">View</th>
                  </tr>
                </thead>
                <tbody>
                  {r.revisions.map((rev, i) => {
                    const previous = r.revisions.slice(i + 1).find((x) => x.dataset || x.change === "REVISION_CHANGE_DELETED");
                    return (
                      <tr key={`${rev.revision}-${rev.change}`}>
                        <td className="num">{rev.revision}</td>
                        <td>{time(rev.time)}</td>
                        <td>{rev.principal || <span className="muted">unknown</span>}</td>
                        <td>{rev.change === "REVISION_CHANGE_CREATED" ? "created" : changed(rev.dataset, previous?.dataset)}</td>
                        <td>
                          {rev.dataset && rev.time && (
                            <button type="button" onClick={() => pick(rev.time!)}>
                              as of then
                            </button>
                          )}
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            )}
          </Panel>
        </Section>
      </div>
    </>
  );
}
