/** The lineage graph on a canvas: the scene (scene.ts) redrawn on each change of the view,
 * panned by dragging, zoomed by the wheel, a dataset selected by a click. Drawing every
 * element in view costs a few milliseconds at 2,000 datasets, so nothing is cached. */
import { extent, nodeAt, paint, type PathBuilder, type PathStyle, type Painter, type Scene, type TextStyle } from "./scene";

const MIN_ZOOM = 0.05;
const MAX_ZOOM = 1.6;
const FIT_MARGIN = 20;
// A press that moves less than this (px) is a click, not a drag.
const CLICK_SLOP = 4;
const CENTRE_MS = 200;
const FONT = "system-ui, sans-serif";

class CanvasPath implements PathBuilder {
  constructor(private readonly context: CanvasRenderingContext2D) {}
  moveTo(x: number, y: number) {
    this.context.moveTo(x, y);
  }
  lineTo(x: number, y: number) {
    this.context.lineTo(x, y);
  }
  quadraticCurveTo(cx: number, cy: number, x: number, y: number) {
    this.context.quadraticCurveTo(cx, cy, x, y);
  }
  closePath() {
    this.context.closePath();
  }
  circle(x: number, y: number, r: number) {
    this.context.moveTo(x + r, y);
    this.context.arc(x, y, r, 0, 2 * Math.PI);
  }
}

/** Paints on a 2D context (transformed to graph coordinates by the caller). */
export class CanvasPainter implements Painter {
  private readonly builder: CanvasPath;
  constructor(private readonly context: CanvasRenderingContext2D) {
    this.builder = new CanvasPath(context);
  }

  path(style: PathStyle, build: (path: PathBuilder) => void) {
    const c = this.context;
    c.beginPath();
    build(this.builder);
    if (style.fill) {
      c.globalAlpha = style.fillOpacity ?? 1;
      c.fillStyle = style.fill;
      c.fill();
      c.globalAlpha = 1;
    }
    if (style.stroke) {
      c.strokeStyle = style.stroke;
      c.lineWidth = style.width ?? 1;
      c.setLineDash(style.dash ?? []);
      c.stroke();
    }
  }

  text(text: string, x: number, y: number, style: TextStyle) {
    const c = this.context;
    c.save();
    c.translate(x, y);
    if (style.angle) c.rotate(style.angle);
    c.font = `${style.size}px ${FONT}`;
    c.textAlign = "center";
    c.textBaseline = style.baseline;
    // A white halo keeps the text readable over edges.
    c.lineWidth = 3;
    c.lineJoin = "round";
    c.setLineDash([]);
    c.strokeStyle = "rgba(255, 255, 255, 0.85)";
    c.strokeText(text, 0, 0);
    c.fillStyle = "#1b2733";
    c.fillText(text, 0, 0);
    c.restore();
  }
}

interface Viewport {
  zoom: number;
  x: number;
  y: number;
}

export class LineageCanvas {
  private readonly canvas: HTMLCanvasElement;
  private readonly context: CanvasRenderingContext2D;
  private readonly resizes: ResizeObserver;
  private readonly removeListeners: () => void;
  private viewport: Viewport = { zoom: 1, x: 0, y: 0 };
  private frame = 0;
  private animation = 0;
  private scene: Scene;

  constructor(
    private readonly container: HTMLElement,
    scene: Scene,
    private readonly onSelect: (id: string) => void,
  ) {
    this.scene = scene;
    this.canvas = document.createElement("canvas");
    container.append(this.canvas);
    this.context = this.canvas.getContext("2d")!;
    this.resize();
    this.fit();
    this.resizes = new ResizeObserver(() => {
      this.resize();
      this.redraw();
    });
    this.resizes.observe(container);
    this.removeListeners = this.listen();
  }

  /** A new scene for the same graph (colours, selection): redrawn, the view kept. */
  update(scene: Scene) {
    this.scene = scene;
    this.redraw();
  }

  /** Shows the whole graph. */
  fit() {
    const { x1, y1, x2, y2 } = extent(this.scene.nodes);
    const { width, height } = this.size();
    const scale = Math.min((width - 2 * FIT_MARGIN) / (x2 - x1 || 1), (height - 2 * FIT_MARGIN) / (y2 - y1 || 1));
    const zoom = clamp(scale, MIN_ZOOM, MAX_ZOOM);
    this.viewport = { zoom, x: width / 2 - (zoom * (x1 + x2)) / 2, y: height / 2 - (zoom * (y1 + y2)) / 2 };
    this.redraw();
  }

  /** Moves the view so the dataset is in its centre, smoothly. */
  centre(index: number) {
    const node = this.scene.nodes[index];
    if (!node) return;
    const { width, height } = this.size();
    const from = { ...this.viewport };
    const to = { zoom: from.zoom, x: width / 2 - from.zoom * node.x, y: height / 2 - from.zoom * node.y };
    const started = performance.now();
    cancelAnimationFrame(this.animation);
    const step = (now: number) => {
      const t = Math.min(1, (now - started) / CENTRE_MS);
      this.viewport = { zoom: to.zoom, x: from.x + (to.x - from.x) * t, y: from.y + (to.y - from.y) * t };
      this.redraw();
      if (t < 1) this.animation = requestAnimationFrame(step);
    };
    this.animation = requestAnimationFrame(step);
  }

  destroy() {
    cancelAnimationFrame(this.frame);
    cancelAnimationFrame(this.animation);
    this.resizes.disconnect();
    this.removeListeners();
    this.canvas.remove();
  }

  private size(): { width: number; height: number } {
    return { width: this.container.clientWidth, height: this.container.clientHeight };
  }

  private resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = this.size();
    this.canvas.width = Math.max(1, Math.round(width * ratio));
    this.canvas.height = Math.max(1, Math.round(height * ratio));
  }

  /** Draws on the next frame (once, however many changes come before it). */
  private redraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw() {
    const ratio = this.canvas.width / Math.max(1, this.container.clientWidth);
    const { zoom, x, y } = this.viewport;
    const c = this.context;
    c.setTransform(1, 0, 0, 1, 0, 0);
    c.clearRect(0, 0, this.canvas.width, this.canvas.height);
    c.setTransform(ratio * zoom, 0, 0, ratio * zoom, ratio * x, ratio * y);
    const { width, height } = this.size();
    paint(new CanvasPainter(c), this.scene, { x1: -x / zoom, y1: -y / zoom, x2: (width - x) / zoom, y2: (height - y) / zoom, zoom });
  }

  /** Graph coordinates of a pointer event. */
  private at(event: MouseEvent): { x: number; y: number } {
    const box = this.canvas.getBoundingClientRect();
    const { zoom, x, y } = this.viewport;
    return { x: (event.clientX - box.left - x) / zoom, y: (event.clientY - box.top - y) / zoom };
  }

  private listen(): () => void {
    const canvas = this.canvas;
    let press: { x: number; y: number; viewX: number; viewY: number; moved: boolean } | null = null;
    const down = (event: PointerEvent) => {
      if (event.button !== 0) return;
      canvas.setPointerCapture(event.pointerId);
      press = { x: event.clientX, y: event.clientY, viewX: this.viewport.x, viewY: this.viewport.y, moved: false };
    };
    const move = (event: PointerEvent) => {
      if (!press) {
        const { x, y } = this.at(event);
        canvas.style.cursor = nodeAt(this.scene.nodes, x, y, 2 / this.viewport.zoom) >= 0 ? "pointer" : "grab";
        return;
      }
      const [dx, dy] = [event.clientX - press.x, event.clientY - press.y];
      if (!press.moved && Math.hypot(dx, dy) < CLICK_SLOP) return;
      press.moved = true;
      cancelAnimationFrame(this.animation);
      this.viewport = { ...this.viewport, x: press.viewX + dx, y: press.viewY + dy };
      canvas.style.cursor = "grabbing";
      this.redraw();
    };
    const up = (event: PointerEvent) => {
      if (!press) return;
      const click = !press.moved;
      press = null;
      canvas.style.cursor = "grab";
      if (!click) return;
      const { x, y } = this.at(event);
      const index = nodeAt(this.scene.nodes, x, y, 3 / this.viewport.zoom);
      if (index >= 0) this.onSelect(this.scene.nodes[index].id);
    };
    const wheel = (event: WheelEvent) => {
      event.preventDefault();
      cancelAnimationFrame(this.animation);
      const box = canvas.getBoundingClientRect();
      const [px, py] = [event.clientX - box.left, event.clientY - box.top];
      const { zoom, x, y } = this.viewport;
      const scale = event.deltaMode === WheelEvent.DOM_DELTA_LINE ? 33 : 1;
      const next = clamp(zoom * Math.exp((-event.deltaY * scale) / 500), MIN_ZOOM, MAX_ZOOM);
      // The point under the pointer stays put.
      this.viewport = { zoom: next, x: px - ((px - x) / zoom) * next, y: py - ((py - y) / zoom) * next };
      this.redraw();
    };
    canvas.addEventListener("pointerdown", down);
    canvas.addEventListener("pointermove", move);
    canvas.addEventListener("pointerup", up);
    canvas.addEventListener("pointercancel", up);
    canvas.addEventListener("wheel", wheel, { passive: false });
    return () => {
      canvas.removeEventListener("pointerdown", down);
      canvas.removeEventListener("pointermove", move);
      canvas.removeEventListener("pointerup", up);
      canvas.removeEventListener("pointercancel", up);
      canvas.removeEventListener("wheel", wheel);
    };
  }
}

/** The whole graph as a PNG, every label drawn, at most `maxSide` pixels on a side. */
export function scenePng(scene: Scene, maxSide: number): Promise<Blob> {
  const { x1, y1, x2, y2 } = extent(scene.nodes);
  const scale = Math.min(2, maxSide / Math.max(x2 - x1, y2 - y1, 1));
  const canvas = document.createElement("canvas");
  canvas.width = Math.max(1, Math.ceil((x2 - x1) * scale));
  canvas.height = Math.max(1, Math.ceil((y2 - y1) * scale));
  const c = canvas.getContext("2d")!;
  c.fillStyle = "#ffffff";
  c.fillRect(0, 0, canvas.width, canvas.height);
  c.setTransform(scale, 0, 0, scale, -x1 * scale, -y1 * scale);
  paint(new CanvasPainter(c), scene, { x1, y1, x2, y2, zoom: scale, allLabels: true });
  return new Promise((resolve, reject) => canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error("the PNG could not be made"))), "image/png"));
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}
