import { useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { get, type Decision, type DecisionProof } from "../api";
import { DatasetLink, ErrorBox, operationName, Outcome, Panel, Section, Tags, time, useLoad } from "../util";

interface Replay {
  original: Decision;
  replayed: Decision;
  matches: boolean;
}

function Reasons({ decision }: { decision: Decision }) {
  return (
    <ol className="reasons">
      {decision.reasons.map((r, i) => (
        <li key={i}>
          <span className="tag">{r.code}</span> {r.rule_id && <strong className="mono">{r.rule_id}</strong>}{" "}
          {r.citation && <em>({r.citation})</em>}
          <p>{r.message}</p>
          {r.lineage_path.length > 0 && (
            <div>
              Lineage path:
              <ol className="path">
                {r.lineage_path.map((id) => (
                  <li key={id}>
                    <DatasetLink id={id} />
                  </li>
                ))}
              </ol>
            </div>
          )}
        </li>
      ))}
      {decision.reasons.length === 0 && <li className="muted">No reasons (an ALLOW needs none).</li>}
    </ol>
  );
}

function differences(a: Decision, b: Decision): string[] {
  const found = [];
  if (a.outcome !== b.outcome) found.push(`outcome ${a.outcome} → ${b.outcome}`);
  if (JSON.stringify(a.allowed_regions) !== JSON.stringify(b.allowed_regions)) found.push("allowed regions differ");
  const reasons = (d: Decision) => d.reasons.map((r) => `${r.code} ${r.rule_id} ${r.message}`).sort().join("\n");
  if (reasons(a) !== reasons(b)) found.push("reasons differ");
  return found;
}

export function DecisionPage() {
  const [params] = useSearchParams();
  const id = params.get("id") ?? "";
  const decision = useLoad(() => get<{ decision: Decision; proof: DecisionProof }>("decision", { decision_id: id }), [id]);
  const log = useLoad(() => get<{ head_line: string; head_hash: string; chain_ok: boolean }>("decisions/log"), [id]);
  const [replay, setReplay] = useState<Replay | null>(null);
  const [replayError, setReplayError] = useState<unknown>();
  const [replaying, setReplaying] = useState(false);

  async function runReplay() {
    setReplaying(true);
    setReplayError(undefined);
    try {
      setReplay(await get<Replay>("decision/replay", { decision_id: id }));
    } catch (error) {
      setReplayError(error);
    } finally {
      setReplaying(false);
    }
  }

  return (
    <>
      <h1>
        Decision <span className="mono">{id}</span>
      </h1>
      <Panel loaded={decision}>
        {({ decision: d, proof }) => (
          <div className="grid">
            <Section title="What was decided">
              <dl className="facts">
                <dt>Outcome</dt>
                <dd>
                  <Outcome outcome={d.outcome} />
                </dd>
                <dt>Dataset</dt>
                <dd>
                  <DatasetLink id={d.dataset_id} />
                </dd>
                <dt>Operation</dt>
                <dd>
                  {operationName(d.operation)} in <span className="mono">{d.region}</span>
                </dd>
                <dt>Allowed regions</dt>
                <dd>
                  <Tags values={d.allowed_regions} kind="region" />
                </dd>
                <dt>Decided</dt>
                <dd>{time(d.decide_time)}</dd>
                <dt>Policy version</dt>
                <dd className="mono">{d.policy_version}</dd>
                <dt>Catalog revision</dt>
                <dd>{d.catalog_revision}</dd>
                {d.inherited_only && (
                  <>
                    <dt>Judged</dt>
                    <dd>by what it inherits: an undescribed dataset derived from described ones</dd>
                  </>
                )}
              </dl>
              <Link to={`/decisions?dataset_id=${encodeURIComponent(d.dataset_id)}`}>Other decisions on this dataset</Link>
            </Section>
            <Section title="Why">
              <Reasons decision={d} />
            </Section>
            <Section title="Replay">
              <p>Re-evaluates the decision with the policy version and the catalog of its time.</p>
              <button type="button" onClick={runReplay} disabled={replaying}>
                {replaying ? "Replaying…" : "Replay"}
              </button>
              {replayError ? <ErrorBox error={replayError} /> : null}
              {replay && (
                <div role="status" className={`notice ${replay.matches ? "ok" : "error"}`}>
                  {replay.matches ? (
                    <p>
                      <strong>Match</strong>: the replay gives the same outcome, allowed regions and reasons.
                    </p>
                  ) : (
                    <>
                      <p>
                        <strong>Mismatch</strong>: {differences(replay.original, replay.replayed).join("; ")}.
                      </p>
                      <p>Replayed outcome:</p>
                      <Outcome outcome={replay.replayed.outcome} />
                      <Reasons decision={replay.replayed} />
                    </>
                  )}
                </div>
              )}
            </Section>
            <Section title="Decision log">
              <dl className="facts" data-testid="proof">
                <dt>Logged</dt>
                <dd>
                  line {proof.line_seq} of replica <span className="mono">{proof.replica_id}</span>, hash{" "}
                  <span className="mono break">{proof.line_hash}</span>
                </dd>
                <dt>Verified</dt>
                {proof.checkpoint_verified ? (
                  <dd className="good">
                    the chain from this line reaches the checkpoint at line {proof.checkpoint_seq} (hash{" "}
                    <span className="mono break">{proof.checkpoint_hash}</span>), signed {time(proof.checkpoint_time)} with
                    key <span className="mono">{proof.checkpoint_key_id}</span>; its signature verified
                  </dd>
                ) : (
                  <dd>
                    no signed checkpoint covers this line yet: it is held by the chain this server verified when it started
                    and has extended since (a checkpoint follows within the configured interval)
                  </dd>
                )}
              </dl>
              <Panel loaded={log}>
                {(l) => (
                  <dl className="facts">
                    <dt>Writer</dt>
                    <dd className={l.chain_ok ? "good" : "bad"}>{l.chain_ok ? "healthy" : "the log writer has failed"}</dd>
                    <dt>Head</dt>
                    <dd>
                      line {l.head_line}, hash <span className="mono break">{l.head_hash}</span>
                    </dd>
                  </dl>
                )}
              </Panel>
              <p className="muted">
                Anyone holding the log and the checkpoint public key can check it again:{" "}
                <code>domicile audit verify</code>.
              </p>
            </Section>
          </div>
        )}
      </Panel>
    </>
  );
}
