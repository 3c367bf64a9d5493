import { diffLines } from "diff";
import hljs from "highlight.js/lib/core";
import yamlLanguage from "highlight.js/lib/languages/yaml";
import { useMemo, useState } from "react";
import { useSearchParams } from "react-router-dom";
import { get, post, type PolicyChange, type PolicyError } from "../api";
import { DatasetLink, ErrorBox, operationName, Panel, Section, Tags, time, useLoad } from "../util";

hljs.registerLanguage("yaml", yamlLanguage);

interface Policy {
  policy_yaml: string;
  version: string;
  content_hash: string;
}

interface Activation {
  version: string;
  content_hash: string;
  activated_time?: string;
  active: boolean;
}

interface Impact {
  changes: PolicyChange[];
  errors: PolicyError[];
  version: string;
}

function Highlighted({ text }: { text: string }) {
  // highlight.js escapes the text it is given; its output is spans with classes only.
  const html = useMemo(() => hljs.highlight(text, { language: "yaml" }).value, [text]);
  return (
    <pre className="code" tabIndex={0} aria-label="Policy YAML">
      <code dangerouslySetInnerHTML={{ __html: html }} />
    </pre>
  );
}

function Diff({ before, after }: { before: string; after: string }) {
  const parts = useMemo(() => diffLines(before, after), [before, after]);
  const added = parts.filter((p) => p.added).reduce((n, p) => n + (p.count ?? 0), 0);
  const removed = parts.filter((p) => p.removed).reduce((n, p) => n + (p.count ?? 0), 0);
  return (
    <>
      <p>
        <span className="good">+{added}</span> / <span className="bad">−{removed}</span> lines
      </p>
      <pre className="code diff" tabIndex={0} aria-label="Differences between the two versions">
        {parts.map((part, i) => (
          <span key={i} className={part.added ? "ins" : part.removed ? "del" : "same"}>
            {part.value
              .replace(/\n$/, "")
              .split("\n")
              .map((line) => `${part.added ? "+ " : part.removed ? "- " : "  "}${line}`)
              .join("\n") + "\n"}
          </span>
        ))}
      </pre>
    </>
  );
}

export function PolicyPage() {
  const [params, setParams] = useSearchParams();
  const version = params.get("version") ?? "";
  const compare = params.get("compare") ?? "";
  const shown = useLoad(() => get<Policy>("policy", { version }), [version]);
  const other = useLoad(() => (compare ? get<Policy>("policy", { version: compare }) : Promise.resolve(null)), [compare]);
  const history = useLoad(() => get<{ activations: Activation[] }>("policy/versions"), []);
  const [candidate, setCandidate] = useState("");
  const [impact, setImpact] = useState<Impact | null>(null);
  const [impactError, setImpactError] = useState<unknown>();
  const [computing, setComputing] = useState(false);

  function select(values: Record<string, string>) {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(values)) {
      if (value) next.set(key, value);
      else next.delete(key);
    }
    setParams(next);
  }

  async function computeImpact() {
    setComputing(true);
    setImpactError(undefined);
    setImpact(null);
    try {
      setImpact(await post<Impact>("policy/impact", { policy_yaml: candidate }));
    } catch (error) {
      setImpactError(error);
    } finally {
      setComputing(false);
    }
  }

  const newViolations = impact?.changes.filter((c) => c.new_violations.length > 0).length ?? 0;

  return (
    <>
      <h1>Policy</h1>
      <div className="grid wide-first">
        <Section title={version ? `Version ${version}` : "In force"}>
          <Panel loaded={shown}>
            {(p) => (
              <>
                <p>
                  <span className="mono">{p.version}</span> <span className="muted mono">sha256 {p.content_hash}</span>
                </p>
                {compare && other.data ? (
                  <>
                    <h3>
                      Changes from <span className="mono">{compare}</span> to <span className="mono">{p.version}</span>
                    </h3>
                    <Diff before={other.data.policy_yaml} after={p.policy_yaml} />
                  </>
                ) : (
                  <Highlighted text={p.policy_yaml} />
                )}
              </>
            )}
          </Panel>
        </Section>
        <Section title="Version history">
          <Panel loaded={history}>
            {(h) => (
              <table className="list">
                <thead>
                  <tr>
                    <th scope="col">Version</th>
                    <th scope="col">Activated</th>
                    <th scope="col">Show</th>
                    <th scope="col">Diff</th>
                  </tr>
                </thead>
                <tbody>
                  {h.activations.map((a, i) => {
                    const previous = h.activations[i + 1];
                    return (
                      <tr key={`${a.version}-${a.activated_time}`}>
                        <td className="mono">
                          {a.version} {a.active && <span className="tag">in force</span>}
                        </td>
                        <td>{time(a.activated_time)}</td>
                        <td>
                          <button type="button" onClick={() => select({ version: a.active ? "" : a.version, compare: "" })}>
                            Show
                          </button>
                        </td>
                        <td>
                          {previous && previous.version !== a.version && (
                            <button type="button" onClick={() => select({ version: a.version, compare: previous.version })}>
                              vs {previous.version}
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
        <Section title="Candidate policy: impact before deploying">
          <p>Upload or paste a policy. Nothing is deployed: this shows what it would change.</p>
          <label className="block">
            Policy file{" "}
            <input
              type="file"
              accept=".yaml,.yml,text/yaml"
              onChange={async (e) => {
                const file = e.target.files?.[0];
                if (file) setCandidate(await file.text());
              }}
            />
          </label>
          <label className="block">
            Policy YAML
            <textarea value={candidate} onChange={(e) => setCandidate(e.target.value)} rows={10} spellCheck={false} />
          </label>
          <button type="button" onClick={computeImpact} disabled={!candidate.trim() || computing}>
            {computing ? "Computing…" : "Show impact"}
          </button>
          {impactError ? <ErrorBox error={impactError} /> : null}
          {impact && impact.errors.length > 0 && (
            <div className="notice error" role="alert">
              <strong>The candidate is invalid:</strong>
              <ul>
                {impact.errors.map((e, i) => (
                  <li key={i}>
                    line {e.line}:{e.column} <code>{e.path}</code>: {e.message}
                  </li>
                ))}
              </ul>
            </div>
          )}
          {impact && impact.errors.length === 0 && (
            <div role="status" data-testid="impact">
              <p>
                Version <span className="mono">{impact.version}</span>: {impact.changes.length} changes,{" "}
                <strong className={newViolations ? "bad" : ""}>{newViolations} datasets with new violations</strong>.
              </p>
              <table className="list">
                <thead>
                  <tr>
                    <th scope="col">Dataset</th>
                    <th scope="col">Operation</th>
                    <th scope="col">Regions added</th>
                    <th scope="col">Regions removed</th>
                    <th scope="col">New violations</th>
                  </tr>
                </thead>
                <tbody>
                  {impact.changes.map((c) => (
                    <tr key={`${c.dataset_id} ${c.operation}`}>
                      <td>
                        <DatasetLink id={c.dataset_id} />
                      </td>
                      <td>{operationName(c.operation)}</td>
                      <td>
                        <Tags values={c.added_regions} kind="region" />
                      </td>
                      <td>
                        <Tags values={c.removed_regions} kind="region" />
                      </td>
                      <td>
                        <Tags values={c.new_violations} kind="violation" />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Section>
      </div>
    </>
  );
}
