import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { ApiError, get, post, type DatasetResidency, type Lineage, type LineageEdge } from "../api";
import { LineageCanvas, scenePng } from "../lineage/canvas";
import { layOut, type LayoutAnswer } from "../lineage/layout";
import { bends, NODE_SIZE, type Scene, type SceneEdge, type State } from "../lineage/scene";
import { sceneSvg } from "../lineage/svg";
import { DatasetLink, download, ErrorBox, time, useLoad } from "../util";

// Exported PNGs are at most this many pixels on a side.
const PNG_MAX_SIDE = 8000;

const STATE_LABEL: Record<State, string> = {
  allowed: "stored only where allowed",
  violation: "stored where the policy forbids it",
  undescribed: "undescribed (known only from lineage)",
  unknown: "residency not shown (loading, not in the catalog then, or needs audit:read)",
};

const STATE_OF: Record<DatasetResidency["state"], State> = {
  RESIDENCY_STATE_ALLOWED: "allowed",
  RESIDENCY_STATE_VIOLATION: "violation",
  RESIDENCY_STATE_DERIVED: "undescribed",
  RESIDENCY_STATE_UNDESCRIBED: "undescribed",
  RESIDENCY_STATE_UNKNOWN: "unknown",
};

function shortName(id: string): string {
  const trimmed = id.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1) || id;
}

/** What an edge's transform does under the policy in force: declassifies its output, claims a
 * declassification the policy does not grant its job (residency counts the edge as a plain
 * copy), or neither. */
type Declassification = "declassifies" | "not granted" | "";

const DECLASSIFICATION_NOTE: Record<Declassification, string> = {
  declassifies: " (declassifies)",
  "not granted": " (declassification not granted)",
  "": "",
};

function edgeLabel(job: string, transform: string, declassification: Declassification): string {
  return transform ? `${job} · ${transform}${DECLASSIFICATION_NOTE[declassification]}` : job;
}

function merge(answers: Lineage[]): Lineage {
  const nodes = new Map<string, Lineage["nodes"][number]>();
  const edges = new Map<string, LineageEdge>();
  let complete = true;
  let reason = "";
  for (const answer of answers) {
    for (const n of answer.nodes) if (!nodes.has(n.dataset_id)) nodes.set(n.dataset_id, n);
    for (const e of answer.edges) edges.set(`${e.input}\u0000${e.output}\u0000${e.job}`, e);
    if (!answer.complete) {
      complete = false;
      reason = answer.incomplete_reason;
    }
  }
  return { nodes: [...nodes.values()], edges: [...edges.values()], complete, incomplete_reason: reason };
}

async function lineageOf(id: string, direction: string, depth: number, asOf: string): Promise<Lineage> {
  return get<Lineage>("lineage", { dataset_id: id, direction, max_depth: depth, as_of: asOf });
}

/** Declassifying transforms of the policy in force (empty without a scope to read it). */
async function declassifyingTransforms(): Promise<Set<string>> {
  try {
    // The YAML parser (a module as large as the rest of the page) loads beside the answer, not
    // before the page's first request.
    const [policy, { parse }] = await Promise.all([get<{ policy_yaml: string }>("policy"), import("yaml")]);
    const document = parse(policy.policy_yaml) as { declassifiers?: { transform?: string }[] };
    return new Set((document.declassifiers ?? []).map((d) => d.transform ?? "").filter(Boolean));
  } catch (error) {
    if (error instanceof ApiError && error.status === 403) return new Set();
    throw error;
  }
}

/** Ids of the graph's datasets with the most downstream first: the server rebuilds a past
 * state from each one's upstream lineage, and an id upstream of an earlier one costs nothing. */
function downstreamFirst(graph: Lineage): string[] {
  const hasOutput = new Set(graph.edges.map((e) => e.input));
  const ids = graph.nodes.map((n) => n.dataset_id);
  return [...ids.filter((id) => !hasOutput.has(id)), ...ids.filter((id) => hasOutput.has(id))];
}

/** The residency state of every dataset of the graph, as of `asOf` (now when empty); null
 * without the scope to read them (audit:read). */
async function residencyStates(graph: Lineage, asOf: string): Promise<Map<string, State> | null> {
  try {
    const answer = await post<{ states: DatasetResidency[] }>("residency/states", {
      dataset_ids: downstreamFirst(graph),
      ...(asOf ? { as_of: asOf } : {}),
    });
    return new Map(answer.states.map((s) => [s.dataset_id, STATE_OF[s.state]]));
  } catch (error) {
    if (error instanceof ApiError && error.status === 403 && error.reason === "MISSING_SCOPE") return null;
    throw error;
  }
}

export function LineagePage() {
  const [params, setParams] = useSearchParams();
  const id = params.get("id") ?? "";
  const asOf = params.get("as_of") ?? "";
  const depth = Number(params.get("depth") ?? "3") || 3;
  const direction = params.get("direction") ?? "DIRECTION_BOTH";
  const [expansions, setExpansions] = useState<Lineage[]>([]);
  const [selected, setSelected] = useState("");
  const [slider, setSlider] = useState<number | null>(null);
  const [layout, setLayout] = useState<{ running: boolean; error: unknown }>({ running: false, error: null });
  const [laidOut, setLaidOut] = useState<{ graph: Lineage; positions: LayoutAnswer } | null>(null);
  // The tables of a 2,000-node graph are thousands of rows: built only when opened; so are the
  // picker's options, when the picker is first used.
  const [tablesOpen, setTablesOpen] = useState({ nodes: false, edges: false });
  const [pickerUsed, setPickerUsed] = useState(false);
  const container = useRef<HTMLDivElement>(null);
  const drawing = useRef<LineageCanvas | null>(null);

  const graph = useLoad(() => (id ? lineageOf(id, direction, depth, asOf) : Promise.resolve(null)), [id, direction, depth, asOf]);
  // The graph now bounds the time slider, whatever instant is shown.
  const current = useLoad(
    () => (id && asOf ? lineageOf(id, direction, depth, "") : Promise.resolve(null)),
    [id, direction, depth, asOf !== ""],
  );
  const declassifying = useLoad(declassifyingTransforms, []);

  useEffect(() => {
    setExpansions([]);
    setSelected("");
  }, [id, asOf, depth, direction]);

  const shown = useMemo(() => (graph.data ? merge([graph.data, ...expansions]) : null), [graph.data, expansions]);
  // Colours as of the graph's own time: the residency states of the datasets shown, then.
  const states = useLoad(() => (shown ? residencyStates(shown, asOf) : Promise.resolve(new Map<string, State>())), [shown]);

  const stateOf = (nodeId: string): State => states.data?.get(nodeId) ?? "unknown";
  const declassificationOf = (edge: LineageEdge): Declassification =>
    edge.unapproved_declassification
      ? "not granted"
      : edge.transform && declassifying.data?.has(edge.transform)
        ? "declassifies"
        : "";

  // Laid out in a worker; drawn once the layout and the residency colours are both in.
  useEffect(() => {
    if (!shown) return;
    const abort = new AbortController();
    setLaidOut(null);
    setLayout({ running: true, error: null });
    const request = {
      nodes: shown.nodes.map((n) => n.dataset_id),
      edges: shown.edges.map((e): [string, string] => [e.input, e.output]),
      nodeSize: NODE_SIZE,
    };
    layOut(request, abort.signal).then(
      (positions) => {
        setLaidOut({ graph: shown, positions });
        setLayout({ running: false, error: null });
      },
      (error) => {
        if (!abort.signal.aborted) setLayout({ running: false, error });
      },
    );
    return () => abort.abort();
  }, [shown]);

  // What is drawn: the laid-out graph, coloured, its declassifying edges marked, the selection.
  const scene = useMemo((): Scene | null => {
    if (!laidOut) return null;
    const { graph: drawn, positions } = laidOut;
    const index = new Map(drawn.nodes.map((n, i) => [n.dataset_id, i]));
    const known = drawn.edges.filter((e) => index.has(e.input) && index.has(e.output));
    const ends = known.map((e) => ({ source: index.get(e.input)!, target: index.get(e.output)! }));
    const bend = bends(ends);
    return {
      nodes: drawn.nodes.map((n, i) => ({
        id: n.dataset_id,
        label: shortName(n.dataset_id),
        x: positions.x[i],
        y: positions.y[i],
        state: stateOf(n.dataset_id),
        start: n.dataset_id === id,
      })),
      edges: known.map((e, i): SceneEdge => {
        const declassification = declassificationOf(e);
        const kind = declassification === "declassifies" ? "declassifying" : e.transform ? "transform" : "plain";
        return { ...ends[i], label: edgeLabel(e.job, e.transform, declassification), kind, bend: bend[i] };
      }),
      selected: index.get(selected) ?? -1,
    };
  }, [laidOut, states.data, declassifying.data, selected, id]);

  useEffect(() => {
    const element = container.current;
    if (!scene || laidOut?.graph !== shown || states.loading || !element) return;
    const instance = new LineageCanvas(element, scene, setSelected);
    drawing.current = instance;
    // Laid out and drawn: read by bench/console_bench.py.
    element.dataset.ready = String(scene.nodes.length);
    element.dataset.readyAt = String(Math.round(performance.now()));
    return () => {
      delete element.dataset.ready;
      instance.destroy();
      drawing.current = null;
    };
  }, [laidOut, states.loading]);

  // Colours, declassifying edges and the selection change the picture, not the layout or view.
  useEffect(() => {
    if (scene) drawing.current?.update(scene);
  }, [scene]);

  useEffect(() => {
    if (selected && scene) drawing.current?.centre(scene.selected);
  }, [selected]);

  const times = ((asOf ? current.data : graph.data)?.edges ?? []).map((e) => Date.parse(e.record_time ?? "")).filter((t) => !Number.isNaN(t));
  const earliest = times.length ? Math.min(...times) - 60_000 : Date.now() - 3_600_000;
  const latest = Date.now();
  const position = slider ?? (asOf ? Date.parse(asOf) : latest);

  function setParam(values: Record<string, string>) {
    const next = new URLSearchParams(params);
    for (const [key, value] of Object.entries(values)) {
      if (value) next.set(key, value);
      else next.delete(key);
    }
    setParams(next);
  }

  function commitSlider(value: number) {
    setSlider(null);
    setParam({ as_of: value >= latest - 1000 ? "" : new Date(value).toISOString() });
  }

  async function expand(dir: "DIRECTION_UPSTREAM" | "DIRECTION_DOWNSTREAM") {
    if (!selected) return;
    const more = await lineageOf(selected, dir, 1, asOf);
    setExpansions((previous) => [...previous, more]);
  }

  async function exportAs(kind: "svg" | "png") {
    if (!scene) return;
    const name = `lineage-${shortName(id)}${asOf ? `-${asOf}` : ""}.${kind}`;
    // An export is the whole graph, every label drawn.
    if (kind === "svg") download(new Blob([sceneSvg(scene)], { type: "image/svg+xml" }), name);
    else download(await scenePng(scene, PNG_MAX_SIDE), name);
  }

  function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setParam({ id: String(form.get("id") ?? "").trim(), depth: String(form.get("depth") ?? "3"), direction: String(form.get("direction")) });
  }

  return (
    <>
      <h1>Lineage</h1>
      <form className="filters" onSubmit={submit} key={`${id}-${depth}-${direction}`}>
        <label>
          Dataset <input name="id" defaultValue={id} size={50} required />
        </label>
        <label>
          Direction
          <select name="direction" defaultValue={direction}>
            <option value="DIRECTION_BOTH">both</option>
            <option value="DIRECTION_UPSTREAM">upstream</option>
            <option value="DIRECTION_DOWNSTREAM">downstream</option>
          </select>
        </label>
        <label>
          Depth <input name="depth" type="number" min={1} max={50} defaultValue={depth} />
        </label>
        <button type="submit">Show</button>
      </form>
      {!id && <p>Pick a dataset, or open one from the <Link to="/datasets">datasets</Link> page.</p>}
      {graph.error ? <ErrorBox error={graph.error} /> : null}
      {states.error ? (
        <div className="notice" role="status">
          <strong>Residency colours {asOf ? `as of ${time(asOf)}` : ""} cannot be shown</strong>:{" "}
          {states.error instanceof ApiError ? states.error.message : String(states.error)}
        </div>
      ) : null}
      {states.data === null && (
        <p className="muted">Residency colours need the scope audit:read, which this session does not hold.</p>
      )}
      {id && (
        <div className="timeline">
          <label htmlFor="as-of-slider">
            As of: <strong>{asOf || slider ? time(new Date(position).toISOString()) : "now"}</strong>
          </label>
          <input
            id="as-of-slider"
            type="range"
            min={earliest}
            max={latest}
            step={1000}
            value={Math.min(Math.max(position, earliest), latest)}
            onChange={(e) => setSlider(Number(e.target.value))}
            onPointerUp={(e) => commitSlider(Number((e.target as HTMLInputElement).value))}
            onKeyUp={(e) => commitSlider(Number((e.target as HTMLInputElement).value))}
            aria-valuetext={asOf ? time(asOf) : "now"}
          />
          <button type="button" onClick={() => commitSlider(latest)} disabled={!asOf}>
            Now
          </button>
        </div>
      )}
      {shown && !shown.complete && (
        <p className="notice incomplete" role="status">
          <strong>Incomplete graph</strong>: the traversal stopped at its {shown.incomplete_reason} limit; datasets and edges beyond it are not
          shown. Lower the depth or start from another dataset.
        </p>
      )}
      {shown && (
        <div className="graph-tools">
          <label>
            Selected
            <select
              value={selected}
              onChange={(e) => setSelected(e.target.value)}
              onFocus={() => setPickerUsed(true)}
              onPointerDown={() => setPickerUsed(true)}
              aria-label="Select a dataset in the graph"
            >
              <option value="">(click a node, or pick one)</option>
              {(pickerUsed ? shown.nodes.map((n) => n.dataset_id) : selected ? [selected] : []).map((option) => (
                <option key={option} value={option}>
                  {option}
                </option>
              ))}
            </select>
          </label>
          <button type="button" disabled={!selected} onClick={() => expand("DIRECTION_UPSTREAM")}>
            Expand upstream
          </button>
          <button type="button" disabled={!selected} onClick={() => expand("DIRECTION_DOWNSTREAM")}>
            Expand downstream
          </button>
          <button type="button" onClick={() => drawing.current?.fit()}>
            Fit
          </button>
          <button type="button" onClick={() => exportAs("svg")}>
            Export SVG
          </button>
          <button type="button" onClick={() => exportAs("png")}>
            Export PNG
          </button>
          {selected && (
            <span>
              <DatasetLink id={selected} asOf={asOf} />
            </span>
          )}
        </div>
      )}
      {shown && (
        <>
          {layout.running && (
            <p className="muted" role="status">
              Laying out {shown.nodes.length} datasets…
            </p>
          )}
          {layout.error ? <ErrorBox error={layout.error} /> : null}
          <div
            ref={container}
            className="graph"
            role="img"
            aria-label={`Lineage graph of ${id}: ${shown.nodes.length} datasets, ${shown.edges.length} edges`}
            data-nodes={shown.nodes.length}
            data-edges={shown.edges.length}
          />
          <ul className="legend" aria-label="Legend">
            {(Object.keys(STATE_LABEL) as State[]).map((s) => (
              <li key={s}>
                <span className={`dot ${s}`} /> {STATE_LABEL[s]}
              </li>
            ))}
            <li>
              <span className="line declassifying" /> declassifying transform
            </li>
          </ul>
          {asOf && (
            <p className="muted">
              Datasets, edges and residency colours as of {time(asOf)}: the catalog and lineage of then, under the
              policy in force then.
            </p>
          )}
          <details onToggle={(e) => setTablesOpen((t) => ({ ...t, nodes: (e.target as HTMLDetailsElement).open }))}>
            <summary>Datasets as a table ({shown.nodes.length})</summary>
            <table className="list" data-testid="node-table">
              <thead>
                <tr>
                  <th scope="col">Dataset</th>
                  <th scope="col">Depth</th>
                  <th scope="col">Residency</th>
                </tr>
              </thead>
              <tbody>
                {tablesOpen.nodes && shown.nodes.map((n) => (
                  <tr key={n.dataset_id}>
                    <td>
                      <DatasetLink id={n.dataset_id} asOf={asOf} />
                    </td>
                    <td className="num">{n.depth}</td>
                    <td>
                      <span className={`dot ${stateOf(n.dataset_id)}`} /> {STATE_LABEL[stateOf(n.dataset_id)]}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
          <details onToggle={(e) => setTablesOpen((t) => ({ ...t, edges: (e.target as HTMLDetailsElement).open }))}>
            <summary>Edges as a table ({shown.edges.length})</summary>
            <table className="list" data-testid="edge-table">
              <thead>
                <tr>
                  <th scope="col">Input</th>
                  <th scope="col">Output</th>
                  <th scope="col">Job</th>
                  <th scope="col">Transform</th>
                  <th scope="col">Recorded</th>
                </tr>
              </thead>
              <tbody>
                {tablesOpen.edges && shown.edges.map((e) => (
                  <tr key={`${e.input} ${e.output} ${e.job}`}>
                    <td>
                      <DatasetLink id={e.input} asOf={asOf} />
                    </td>
                    <td>
                      <DatasetLink id={e.output} asOf={asOf} />
                    </td>
                    <td className="mono">{e.job}</td>
                    <td>
                      {e.transform}
                      {DECLASSIFICATION_NOTE[declassificationOf(e)]}
                    </td>
                    <td>{time(e.record_time)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </details>
        </>
      )}
    </>
  );
}
