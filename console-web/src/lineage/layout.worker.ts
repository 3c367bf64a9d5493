/// <reference lib="webworker" />
// Lays a lineage graph out as a left-to-right DAG in a worker, off the page's thread: dagre
// for the graphs it lays out in well under a second, the layered layout of layered.ts (the same
// columns, rows ordered by a cheaper heuristic) for larger ones.
import dagre from "@dagrejs/dagre";
import type { LayoutRequest, LayoutAnswer } from "./layout";
import { layered } from "./layered";

// dagre's cost grows faster than the graph (its crossing minimisation sweeps every column,
// dummy nodes included, many times): a few hundred datasets take it a few hundred ms.
const DAGRE_LIMIT = 400;
const NODE_SEP = 12;
const RANK_SEP = 90;

function withDagre({ nodes, edges, nodeSize }: LayoutRequest): LayoutAnswer {
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  // longest-path ranking: network simplex (dagre's default) grows much faster than the graph;
  // longest-path ranks a DAG in linear time.
  graph.setGraph({ rankdir: "LR", nodesep: NODE_SEP, ranksep: RANK_SEP, ranker: "longest-path" });
  graph.setDefaultEdgeLabel(() => ({}));
  for (const id of nodes) graph.setNode(id, { width: nodeSize, height: nodeSize });
  edges.forEach(([input, output], index) => graph.setEdge(input, output, {}, String(index)));
  dagre.layout(graph);
  const x = new Float64Array(nodes.length);
  const y = new Float64Array(nodes.length);
  nodes.forEach((id, i) => {
    const node = graph.node(id);
    x[i] = node.x;
    y[i] = node.y;
  });
  return { x, y };
}

self.onmessage = (event: MessageEvent<LayoutRequest>) => {
  const request = event.data;
  const answer =
    request.nodes.length > DAGRE_LIMIT
      ? layered(request.nodes, request.edges, { rank: RANK_SEP + request.nodeSize, node: NODE_SEP + request.nodeSize })
      : withDagre(request);
  (self as unknown as DedicatedWorkerGlobalScope).postMessage(answer, [answer.x.buffer, answer.y.buffer]);
};
