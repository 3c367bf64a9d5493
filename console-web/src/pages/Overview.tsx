import { Link } from "react-router-dom";
import { get, type Region, type ViolationList } from "../api";
import { Bars, DecisionRate, type Bucket } from "../components/Bars";
import { datasetsToJudge, JudgingNotice, useReadWhileJudging } from "../components/Judging";
import { WorldMap, type RegionLoad } from "../components/WorldMap";
import { DatasetLink, Panel, ruleIds, Section, useLoad } from "../util";

interface Summary {
  datasets: string;
  classifications: { value: string; datasets: string }[];
  origins: { value: string; datasets: string }[];
  regions: { region: string; datasets: string; classified: string }[];
}

export function OverviewPage() {
  const summary = useLoad(() => get<Summary>("datasets/summary"), []);
  const regions = useLoad(() => get<{ regions: Region[] }>("regions"), []);
  const violations = useLoad(() => get<ViolationList>("violations", { page_size: 15 }), []);
  useReadWhileJudging(violations);
  const rate = useLoad(() => get<{ buckets: Bucket[]; complete: boolean }>("decisions/summary"), []);
  const policy = useLoad(() => get<{ version: string; content_hash: string }>("policy"), []);

  const loads: RegionLoad[] = [];
  if (summary.data && regions.data) {
    const country = new Map(regions.data.regions.map((r) => [r.id, r.country]));
    const violating = new Map((violations.data?.regions ?? []).map((r) => [r.region, Number(r.violations)]));
    for (const r of summary.data.regions) {
      loads.push({
        region: r.region,
        country: country.get(r.region) ?? "",
        datasets: Number(r.datasets),
        classified: Number(r.classified),
        violations: violating.get(r.region) ?? 0,
      });
    }
  }

  return (
    <>
      <h1>Overview</h1>
      <div className="grid">
        <Section title="Where regulated data lives" wide>
          <Panel loaded={summary}>
            {() => (
              <>
                <WorldMap regions={loads} />
                <table>
                  <caption className="visually-hidden">Datasets per region</caption>
                  <thead>
                    <tr>
                      <th scope="col">Region</th>
                      <th scope="col">Datasets</th>
                      <th scope="col">Classified</th>
                      <th scope="col">Violations</th>
                    </tr>
                  </thead>
                  <tbody>
                    {loads.map((r) => (
                      <tr key={r.region}>
                        <th scope="row">
                          <Link to={`/datasets?region=${encodeURIComponent(r.region)}`} className="mono">
                            {r.region}
                          </Link>
                        </th>
                        <td className="num">{r.datasets}</td>
                        <td className="num">{r.classified}</td>
                        <td className={`num ${r.violations ? "bad" : ""}`}>
                          {r.violations ? <Link to={`/violations?region=${encodeURIComponent(r.region)}`}>{r.violations}</Link> : 0}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </>
            )}
          </Panel>
        </Section>
        <Section title="Catalog">
          <Panel loaded={summary}>
            {(s) => (
              <>
                <p>
                  <strong>{s.datasets}</strong> datasets the router judges (described, or derived from described ones).{" "}
                  <Link to="/datasets">Browse the catalog</Link>.
                </p>
                <h3>By effective classification</h3>
                <Bars label="Datasets by classification" counts={s.classifications.map((c) => [c.value, Number(c.datasets)])} />
                <h3>By origin jurisdiction</h3>
                <Bars label="Datasets by origin" counts={s.origins.map((c) => [c.value, Number(c.datasets)])} />
              </>
            )}
          </Panel>
        </Section>
        <Section title="Current violations">
          <Panel loaded={violations}>
            {(v) =>
              v.violations.length === 0 && !datasetsToJudge(v) ? (
                <p>No dataset is stored where the policy forbids it.</p>
              ) : (
                <>
                  <JudgingNotice list={v} />
                  <p>
                    <strong className="bad">{v.total}</strong> copies stored where the policy forbids it.{" "}
                    <Link to="/violations">All violations</Link>
                  </p>
                  <ul className="plain">
                    {v.violations.map((x) => (
                      <li key={`${x.dataset_id} ${x.region}`}>
                        <DatasetLink id={x.dataset_id} /> in <span className="mono">{x.region}</span>:{" "}
                        <span className="mono">{ruleIds(x.reasons)}</span>
                      </li>
                    ))}
                  </ul>
                </>
              )
            }
          </Panel>
        </Section>
        <Section title="Decisions per minute (last hour)">
          <Panel loaded={rate}>
            {(r) => (
              <>
                <DecisionRate buckets={r.buckets} />
                {!r.complete && <p className="notice">The log is too large to count the whole hour; older minutes are undercounted.</p>}
                <Link to="/decisions">Search decisions</Link>
              </>
            )}
          </Panel>
        </Section>
        <Section title="Policy in force">
          <Panel loaded={policy}>
            {(p) => (
              <p>
                Version <Link to="/policy" className="mono">{p.version}</Link>{" "}
                <span className="muted mono">sha256 {p.content_hash.slice(0, 12)}</span>
              </p>
            )}
          </Panel>
        </Section>
      </div>
    </>
  );
}
