/// <reference lib="webworker" />
// Lays a lineage graph out as a left-to-right DAG (dagre) in a worker: at 2,000 datasets the
// layout takes seconds of CPU, which on the page's own thread would freeze it meanwhile.
import dagre from "@dagrejs/dagre";
import type { LayoutRequest, LayoutAnswer } from "./layout";

// Above this many datasets, dagre's crossing minimisation (sweeps over every rank, repeated)
// costs more than the graph is still readable for: its first, depth-first order is kept.
const SWEEP_LIMIT = 800;

self.onmessage = (event: MessageEvent<LayoutRequest>) => {
  const { nodes, edges, nodeSize } = event.data;
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  // longest-path ranking: network simplex (dagre's default) grows much faster than the graph
  // and takes minutes at 2,000 nodes; longest-path ranks a DAG in linear time.
  graph.setGraph({ rankdir: "LR", nodesep: 12, ranksep: 90, ranker: "longest-path" });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const id of nodes) graph.setNode(id, { width: nodeSize, height: nodeSize });
  edges.forEach(([input, output], index) => graph.setEdge(input, output, {}, String(index)));
  dagre.layout(graph, { disableOptimalOrderHeuristic: nodes.length > SWEEP_LIMIT });
  const x = new Float64Array(nodes.length);
  const y = new Float64Array(nodes.length);
  nodes.forEach((id, i) => {
    const node = graph.node(id);
    x[i] = node.x;
    y[i] = node.y;
  });
  const answer: LayoutAnswer = { x, y };
  (self as unknown as DedicatedWorkerGlobalScope).postMessage(answer, [x.buffer, y.buffer]);
};
