import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import svg from "cytoscape-svg";
import { useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { parse } from "yaml";
import { ApiError, get, post, type DatasetResidency, type Lineage, type LineageEdge } from "../api";
import { layOut, type Positions } from "../lineage/layout";
import { DatasetLink, download, ErrorBox, time, useLoad } from "../util";

cytoscape.use(svg);

const NODE_SIZE = 22;
const MIN_ZOOM = 0.05;
const MAX_ZOOM = 1.6;
// Above this many datasets the graph is drawn light: straight edges, and labels only on what is
// in view once zoomed in far enough to read them (at 2,000 datasets and 3,000 edges most labels
// are too small to read, and each costs styling, measuring and drawing).
const LARGE_GRAPH = 400;
// Node labels are 11 px and hidden below 7 px on screen (min-zoomed-font-size).
const LABEL_ZOOM = 7 / 11;

type State = "allowed" | "violation" | "undescribed" | "unknown";

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

/** The viewport that shows every node: Cytoscape's own fit first measures every label of the
 * graph, which at 2,000 nodes costs seconds of the page's thread. */
function viewportOf(positions: Positions, width: number, height: number): { zoom: number; pan: { x: number; y: number } } {
  let [left, top, right, bottom] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const { x, y } of Object.values(positions)) {
    [left, top, right, bottom] = [Math.min(left, x), Math.min(top, y), Math.max(right, x), Math.max(bottom, y)];
  }
  if (left > right) return { zoom: 1, pan: { x: 0, y: 0 } };
  // Room for a node and the label under it on every side, and a margin as Fit leaves.
  const room = 3 * NODE_SIZE;
  const margin = 20;
  const scale = Math.min((width - 2 * margin) / (right - left + 2 * room), (height - 2 * margin) / (bottom - top + 2 * room));
  const zoom = Math.min(Math.max(scale, MIN_ZOOM), MAX_ZOOM);
  return { zoom, pan: { x: width / 2 - (zoom * (left + right)) / 2, y: height / 2 - (zoom * (top + bottom)) / 2 } };
}

/** Labels, on a large graph, only the datasets in view and their edges, once zoomed in far
 * enough to read them; follows the viewport (a moment after it stops moving). */
function labelWhatIsInView(cy: Core) {
  let pending = 0;
  const update = () => {
    pending = 0;
    if (cy.destroyed()) return;
    const { x1, y1, x2, y2 } = cy.extent();
    const inView =
      cy.zoom() < LABEL_ZOOM
        ? cy.collection()
        : cy.nodes().filter((node) => {
            const { x, y } = node.position();
            return x >= x1 && x <= x2 && y >= y1 && y <= y2;
          });
    const wanted = inView.union(inView.connectedEdges());
    cy.batch(() => {
      cy.$(".labelled").difference(wanted).removeClass("labelled");
      wanted.addClass("labelled");
    });
  };
  cy.on("viewport", () => {
    window.clearTimeout(pending);
    pending = window.setTimeout(update, 150);
  });
}

function edgeLabel(job: string, transform: string, declassifies: boolean): string {
  return transform ? `${job} · ${transform}${declassifies ? " (declassifies)" : ""}` : job;
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
    const policy = await get<{ policy_yaml: string }>("policy");
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
  // Counts graphs drawn, so restyling follows a redraw.
  const [drawn, setDrawn] = useState(0);
  const [layout, setLayout] = useState<{ running: boolean; error: unknown }>({ running: false, error: null });
  const [laidOut, setLaidOut] = useState<{ graph: Lineage; positions: Positions } | null>(null);
  // The tables of a 2,000-node graph are thousands of rows: built only when opened; so are the
  // picker's options, when the picker is first used.
  const [tablesOpen, setTablesOpen] = useState({ nodes: false, edges: false });
  const [pickerUsed, setPickerUsed] = useState(false);
  const container = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);

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
  const declassifies = (transform: string): boolean => !!transform && (declassifying.data?.has(transform) ?? false);

  // Laid out in a worker; drawn once the layout and the residency colours are both in, so a
  // 2,000-node graph is not styled twice.
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

  useEffect(() => {
    const element = container.current;
    if (!laidOut || laidOut.graph !== shown || states.loading || !element) return;
    const instance = draw(element, laidOut.graph, laidOut.positions);
    cy.current = instance;
    setDrawn((n) => n + 1);
    // Laid out and drawn: read by bench/console_bench.py.
    element.dataset.ready = String(laidOut.graph.nodes.length);
    element.dataset.readyAt = String(Math.round(performance.now()));
    return () => {
      delete element.dataset.ready;
      instance.destroy();
      cy.current = null;
    };
  }, [laidOut, states.loading]);

  function draw(element: HTMLDivElement, shown: Lineage, positions: Positions): Core {
    const large = shown.nodes.length > LARGE_GRAPH;
    const labelled = large ? "" : "labelled";
    const elements: ElementDefinition[] = [
      ...shown.nodes.map((n) => ({
        data: { id: n.dataset_id, label: shortName(n.dataset_id), placeholder: n.placeholder, state: stateOf(n.dataset_id) },
        classes: [n.dataset_id === id ? "start" : "", labelled].join(" "),
      })),
      ...shown.edges.map((e) => ({
        data: {
          id: `${e.input}\u0000${e.output}\u0000${e.job}`,
          source: e.input,
          target: e.output,
          job: e.job,
          transform: e.transform,
          label: edgeLabel(e.job, e.transform, declassifies(e.transform)),
        },
        classes: [e.transform ? "transform" : "", declassifies(e.transform) ? "declassifying" : "", labelled].join(" "),
      })),
    ];
    const instance = cytoscape({
      container: element,
      elements,
      textureOnViewport: true,
      hideEdgesOnViewport: large,
      minZoom: MIN_ZOOM,
      maxZoom: MAX_ZOOM,
      style: [
        {
          selector: "node",
          style: {
            "font-size": 11,
            "min-zoomed-font-size": 7,
            "text-valign": "bottom",
            "text-margin-y": 4,
            width: NODE_SIZE,
            height: NODE_SIZE,
            "border-width": 2,
            "border-color": "#1b2733",
          },
        },
        { selector: 'node[state = "allowed"]', style: { "background-color": "#2e7d32" } },
        { selector: 'node[state = "violation"]', style: { "background-color": "#c62828", shape: "diamond", width: 28, height: 28 } },
        { selector: 'node[state = "undescribed"]', style: { "background-color": "#bdbdbd", "border-style": "dashed" } },
        { selector: 'node[state = "unknown"]', style: { "background-color": "#78909c" } },
        { selector: "node.start", style: { "border-width": 5, "border-color": "#0b5cad" } },
        { selector: "node:selected", style: { "overlay-color": "#f2a900", "overlay-opacity": 0.35 } },
        { selector: ".labelled", style: { label: "data(label)" } },
        {
          selector: "edge",
          style: {
            width: 1.5,
            // Bezier edges keep the parallel edges of several jobs apart, at a cost per edge.
            "curve-style": large ? "straight" : "bezier",
            "target-arrow-shape": "triangle",
            "line-color": "#607d8b",
            "target-arrow-color": "#607d8b",
            "font-size": 9,
            "min-zoomed-font-size": 8,
            "text-rotation": "autorotate",
            "text-background-color": "#fff",
            "text-background-opacity": 0.8,
          },
        },
        { selector: "edge.transform", style: { "line-color": "#455a64", width: 2 } },
        {
          selector: "edge.declassifying",
          style: { "line-style": "dashed", "line-color": "#6a1b9a", "target-arrow-color": "#6a1b9a", width: 3 },
        },
      ],
      ...viewportOf(positions, element.clientWidth, element.clientHeight),
      layout: { name: "preset", positions, fit: false },
    });
    instance.on("tap", "node", (event) => setSelected(event.target.id()));
    if (large) labelWhatIsInView(instance);
    return instance;
  }

  // Residency colours and declassifying edges arrive on their own: restyle what changed, do not
  // lay out again.
  useEffect(() => {
    const instance = cy.current;
    if (!instance) return;
    instance.batch(() => {
      instance.nodes().forEach((node) => {
        const state = stateOf(node.id());
        if (node.data("state") !== state) node.data("state", state);
      });
      instance.edges().forEach((edge) => {
        const transform: string = edge.data("transform");
        const declassifying = declassifies(transform);
        if (edge.hasClass("declassifying") === declassifying) return;
        edge.toggleClass("declassifying", declassifying);
        edge.data("label", edgeLabel(edge.data("job"), transform, declassifying));
      });
    });
  }, [drawn, states.data, declassifying.data]);

  useEffect(() => {
    const instance = cy.current;
    if (!instance || !selected) return;
    instance.$(":selected").unselect();
    const node = instance.getElementById(selected);
    node.select();
    instance.animate({ center: { eles: node } }, { duration: 200 });
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
    const instance = cy.current;
    if (!instance) return;
    const name = `lineage-${shortName(id)}${asOf ? `-${asOf}` : ""}.${kind}`;
    // An export is the whole graph: every label, also those a large graph leaves out of view
    // (measured by the renderer before its next frame, which the export waits for).
    const unlabelled = instance.elements().not(".labelled");
    instance.batch(() => unlabelled.addClass("labelled"));
    if (unlabelled.nonempty()) await new Promise((frame) => requestAnimationFrame(frame));
    try {
      if (kind === "svg") {
        const text = (instance as any).svg({ full: true, bg: "#ffffff" }) as string;
        download(new Blob([text], { type: "image/svg+xml" }), name);
      } else {
        download(instance.png({ full: true, output: "blob", bg: "#ffffff", maxWidth: 8000 }) as unknown as Blob, name);
      }
    } finally {
      instance.batch(() => unlabelled.removeClass("labelled"));
    }
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
          <button type="button" onClick={() => cy.current?.fit(undefined, 20)}>
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
                    <td>{e.transform}</td>
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
