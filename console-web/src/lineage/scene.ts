/** What the lineage graph draws, and how: datasets and edges with their positions and styles,
 * painted through a `Painter` so the screen (canvas.ts) and the SVG export (svg.ts) draw the
 * same picture. Elements of one style are painted as one path: a 2,000-dataset graph is a
 * dozen paths, not thousands of shapes. */

export type State = "allowed" | "violation" | "undescribed" | "unknown";

export const NODE_SIZE = 22;
const VIOLATION_SIZE = 28;
const NODE_FONT = 11;
const EDGE_FONT = 9;
// Labels smaller than this on screen are not drawn: unreadable, and each costs drawing.
const NODE_LABEL_MIN_PX = 7;
const EDGE_LABEL_MIN_PX = 8;
// A character's mean width, in font sizes (a generous estimate for a sans-serif font).
const LABEL_CHAR_WIDTH = 0.62;
const ARROW_LENGTH = 7;
const ARROW_HALF_WIDTH = 3.5;
// Between parallel edges (several jobs between two datasets) at their middle.
const PARALLEL_GAP = 14;
const INK = "#1b2733";

export interface SceneNode {
  id: string;
  label: string;
  x: number;
  y: number;
  state: State;
  start: boolean;
}

export type EdgeKind = "plain" | "transform" | "declassifying";

export interface SceneEdge {
  source: number;
  target: number;
  label: string;
  kind: EdgeKind;
  // Sideways offset of the edge's middle, so parallel edges stay apart (0: straight).
  bend: number;
}

export interface Scene {
  nodes: SceneNode[];
  edges: SceneEdge[];
  selected: number;
}

/** Offsets for the edges between the same two datasets (in either direction), centred on 0. */
export function bends(edges: { source: number; target: number }[]): number[] {
  const groups = new Map<string, number[]>();
  edges.forEach(({ source, target }, i) => {
    const key = source < target ? `${source} ${target}` : `${target} ${source}`;
    const group = groups.get(key);
    if (group) group.push(i);
    else groups.set(key, [i]);
  });
  const bend = new Array<number>(edges.length).fill(0);
  for (const group of groups.values()) {
    if (group.length < 2) continue;
    group.forEach((edge, k) => {
      // The same side for the same offset whichever way an edge goes.
      const sign = edges[edge].source < edges[edge].target ? 1 : -1;
      bend[edge] = sign * (k - (group.length - 1) / 2) * PARALLEL_GAP;
    });
  }
  return bend;
}

export interface PathStyle {
  fill?: string;
  fillOpacity?: number;
  stroke?: string;
  width?: number;
  dash?: number[];
}

export interface PathBuilder {
  moveTo(x: number, y: number): void;
  lineTo(x: number, y: number): void;
  quadraticCurveTo(cx: number, cy: number, x: number, y: number): void;
  closePath(): void;
  circle(x: number, y: number, r: number): void;
}

export interface TextStyle {
  size: number;
  // Radians, about (x, y).
  angle?: number;
  // "top": the text hangs below y; "middle": centred on y.
  baseline: "top" | "middle";
}

export interface Painter {
  path(style: PathStyle, build: (path: PathBuilder) => void): void;
  text(text: string, x: number, y: number, style: TextStyle): void;
}

/** The part of the graph to paint, in graph coordinates, and the zoom it is seen at. */
export interface View {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  zoom: number;
  // Draw every label whatever its size on screen (exports).
  allLabels?: boolean;
}

const NODE_FILL: Record<State, string> = {
  allowed: "#2e7d32",
  violation: "#c62828",
  undescribed: "#bdbdbd",
  unknown: "#78909c",
};

const EDGE_STYLE: Record<EdgeKind, PathStyle & { width: number }> = {
  plain: { stroke: "#607d8b", width: 1.5 },
  transform: { stroke: "#455a64", width: 2 },
  declassifying: { stroke: "#6a1b9a", width: 3, dash: [6, 4] },
};

function radius(node: SceneNode): number {
  return (node.state === "violation" ? VIOLATION_SIZE : NODE_SIZE) / 2;
}

function addNodeShape(path: PathBuilder, node: SceneNode, grow = 0) {
  const r = radius(node) + grow;
  if (node.state === "violation") {
    path.moveTo(node.x, node.y - r);
    path.lineTo(node.x + r, node.y);
    path.lineTo(node.x, node.y + r);
    path.lineTo(node.x - r, node.y);
    path.closePath();
  } else {
    path.circle(node.x, node.y, r);
  }
}

interface EdgeGeometry {
  // Start, control point (the middle for a straight edge) and end, on the nodes' outlines.
  sx: number;
  sy: number;
  cx: number;
  cy: number;
  ex: number;
  ey: number;
  // Unit direction the edge arrives in.
  dx: number;
  dy: number;
}

function edgeGeometry(edge: SceneEdge, nodes: SceneNode[]): EdgeGeometry | null {
  const from = nodes[edge.source];
  const to = nodes[edge.target];
  const length = Math.hypot(to.x - from.x, to.y - from.y);
  if (length === 0) return null;
  const [ux, uy] = [(to.x - from.x) / length, (to.y - from.y) / length];
  // A quadratic curve whose middle is `bend` to the side has its control point at twice that.
  const cx = (from.x + to.x) / 2 - uy * edge.bend * 2;
  const cy = (from.y + to.y) / 2 + ux * edge.bend * 2;
  const toward = (x: number, y: number, fx: number, fy: number, r: number): [number, number] => {
    const d = Math.hypot(fx - x, fy - y) || 1;
    return [x + ((fx - x) / d) * r, y + ((fy - y) / d) * r];
  };
  const [sx, sy] = toward(from.x, from.y, cx, cy, radius(from));
  const [ex, ey] = toward(to.x, to.y, cx, cy, radius(to) + 1);
  const d = Math.hypot(ex - cx, ey - cy) || 1;
  return { sx, sy, cx, cy, ex, ey, dx: (ex - cx) / d, dy: (ey - cy) / d };
}

function inView(view: View, x1: number, y1: number, x2: number, y2: number): boolean {
  return Math.max(x1, x2) >= view.x1 && Math.min(x1, x2) <= view.x2 && Math.max(y1, y2) >= view.y1 && Math.min(y1, y2) <= view.y2;
}

/** Paints the scene's part in view: edges with their arrowheads and labels, then datasets and
 * theirs (labels only when readable at this zoom). */
export function paint(painter: Painter, scene: Scene, view: View) {
  const { nodes, edges } = scene;
  // A node is in view with its label's room around it.
  const margin = 4 * NODE_SIZE;
  const nodeShown = (n: SceneNode) => n.x >= view.x1 - margin && n.x <= view.x2 + margin && n.y >= view.y1 - margin && n.y <= view.y2 + margin;
  const shownEdges: { edge: SceneEdge; g: EdgeGeometry }[] = [];
  for (const edge of edges) {
    const from = nodes[edge.source];
    const to = nodes[edge.target];
    const sideways = Math.abs(edge.bend) * 2;
    if (!inView(view, Math.min(from.x, to.x) - sideways, Math.min(from.y, to.y) - sideways, Math.max(from.x, to.x) + sideways, Math.max(from.y, to.y) + sideways)) continue;
    const g = edgeGeometry(edge, nodes);
    if (g) shownEdges.push({ edge, g });
  }

  for (const kind of ["plain", "transform", "declassifying"] as EdgeKind[]) {
    const ofKind = shownEdges.filter(({ edge }) => edge.kind === kind);
    if (!ofKind.length) continue;
    const style = EDGE_STYLE[kind];
    painter.path(style, (path) => {
      for (const { edge, g } of ofKind) {
        // The line stops at the arrowhead's base.
        const [bx, by] = [g.ex - g.dx * ARROW_LENGTH, g.ey - g.dy * ARROW_LENGTH];
        path.moveTo(g.sx, g.sy);
        if (edge.bend) path.quadraticCurveTo(g.cx, g.cy, bx, by);
        else path.lineTo(bx, by);
      }
    });
    painter.path({ fill: style.stroke }, (path) => {
      for (const { g } of ofKind) {
        const [bx, by] = [g.ex - g.dx * ARROW_LENGTH, g.ey - g.dy * ARROW_LENGTH];
        path.moveTo(g.ex, g.ey);
        path.lineTo(bx - g.dy * ARROW_HALF_WIDTH, by + g.dx * ARROW_HALF_WIDTH);
        path.lineTo(bx + g.dy * ARROW_HALF_WIDTH, by - g.dx * ARROW_HALF_WIDTH);
        path.closePath();
      }
    });
  }

  if (view.allLabels || view.zoom * EDGE_FONT >= EDGE_LABEL_MIN_PX) {
    for (const { edge, g } of shownEdges) {
      if (!edge.label) continue;
      // The curve's middle; the text reads left to right whichever way the edge goes.
      const x = (g.sx + 2 * g.cx + g.ex) / 4;
      const y = (g.sy + 2 * g.cy + g.ey) / 4;
      let angle = Math.atan2(g.ey - g.sy, g.ex - g.sx);
      if (angle > Math.PI / 2) angle -= Math.PI;
      else if (angle < -Math.PI / 2) angle += Math.PI;
      painter.text(edge.label, x, y, { size: EDGE_FONT, angle, baseline: "middle" });
    }
  }
  const shownNodes = nodes.filter(nodeShown);
  for (const state of Object.keys(NODE_FILL) as State[]) {
    const ofState = shownNodes.filter((n) => n.state === state);
    if (!ofState.length) continue;
    painter.path({ fill: NODE_FILL[state], stroke: INK, width: 2, dash: state === "undescribed" ? [4, 3] : undefined }, (path) => {
      for (const node of ofState) addNodeShape(path, node);
    });
  }
  const start = shownNodes.filter((n) => n.start);
  if (start.length) painter.path({ stroke: "#0b5cad", width: 5 }, (path) => start.forEach((n) => addNodeShape(path, n)));
  const selected = nodes[scene.selected];
  if (selected && nodeShown(selected)) {
    painter.path({ fill: "#f2a900", fillOpacity: 0.35 }, (path) => addNodeShape(path, selected, 6));
  }

  if (view.allLabels || view.zoom * NODE_FONT >= NODE_LABEL_MIN_PX) {
    for (const node of shownNodes) painter.text(node.label, node.x, node.y + radius(node) + 4, { size: NODE_FONT, baseline: "top" });
  }
}

/** The graph's extent in graph coordinates, room for the datasets' labels included (their
 * width estimated: an export cannot measure text). */
export function extent(nodes: SceneNode[]): { x1: number; y1: number; x2: number; y2: number } {
  let [x1, y1, x2, y2] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const { x, y, label } of nodes) {
    const half = Math.max(NODE_SIZE, label.length * NODE_FONT * LABEL_CHAR_WIDTH) / 2;
    [x1, y1, x2, y2] = [Math.min(x1, x - half), Math.min(y1, y), Math.max(x2, x + half), Math.max(y2, y)];
  }
  if (x1 > x2) return { x1: 0, y1: 0, x2: 0, y2: 0 };
  const room = NODE_SIZE;
  return { x1: x1 - room, y1: y1 - 2 * room, x2: x2 + room, y2: y2 + 2 * room };
}

/** The dataset drawn at (x, y), graph coordinates, within `slack` of its outline; -1 for none. */
export function nodeAt(nodes: SceneNode[], x: number, y: number, slack: number): number {
  let best = -1;
  let bestDistance = Infinity;
  nodes.forEach((node, i) => {
    const distance = Math.hypot(node.x - x, node.y - y);
    if (distance <= radius(node) + slack && distance < bestDistance) [best, bestDistance] = [i, distance];
  });
  return best;
}
