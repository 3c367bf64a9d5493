/** The whole lineage graph as an SVG document, every label drawn: the scene painted as on the
 * screen (scene.ts), each path an SVG path. */
import { extent, paint, type PathBuilder, type PathStyle, type Painter, type Scene, type TextStyle } from "./scene";

const number = (value: number) => String(Math.round(value * 100) / 100);

function escape(text: string): string {
  return text.replace(/[<>&"]/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;" })[c]!);
}

class SvgPath implements PathBuilder {
  d: string[] = [];
  moveTo(x: number, y: number) {
    this.d.push(`M${number(x)} ${number(y)}`);
  }
  lineTo(x: number, y: number) {
    this.d.push(`L${number(x)} ${number(y)}`);
  }
  quadraticCurveTo(cx: number, cy: number, x: number, y: number) {
    this.d.push(`Q${number(cx)} ${number(cy)} ${number(x)} ${number(y)}`);
  }
  closePath() {
    this.d.push("Z");
  }
  circle(x: number, y: number, r: number) {
    this.d.push(`M${number(x + r)} ${number(y)}A${number(r)} ${number(r)} 0 1 0 ${number(x - r)} ${number(y)}A${number(r)} ${number(r)} 0 1 0 ${number(x + r)} ${number(y)}Z`);
  }
}

class SvgPainter implements Painter {
  readonly parts: string[] = [];

  path(style: PathStyle, build: (path: PathBuilder) => void) {
    const path = new SvgPath();
    build(path);
    const attributes = [
      `fill="${style.fill ?? "none"}"`,
      style.fillOpacity !== undefined ? `fill-opacity="${style.fillOpacity}"` : "",
      style.stroke ? `stroke="${style.stroke}" stroke-width="${style.width ?? 1}"` : "",
      style.dash ? `stroke-dasharray="${style.dash.join(" ")}"` : "",
    ].filter(Boolean);
    this.parts.push(`<path d="${path.d.join("")}" ${attributes.join(" ")}/>`);
  }

  text(text: string, x: number, y: number, style: TextStyle) {
    const rotate = style.angle ? ` transform="rotate(${number((style.angle * 180) / Math.PI)} ${number(x)} ${number(y)})"` : "";
    const baseline = style.baseline === "top" ? "hanging" : "central";
    this.parts.push(
      `<text x="${number(x)}" y="${number(y)}" font-size="${style.size}" text-anchor="middle" dominant-baseline="${baseline}"${rotate}>${escape(text)}</text>`,
    );
  }
}

export function sceneSvg(scene: Scene): string {
  const view = extent(scene.nodes);
  const painter = new SvgPainter();
  paint(painter, scene, { ...view, zoom: 1, allLabels: true });
  const [width, height] = [view.x2 - view.x1, view.y2 - view.y1];
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${number(width)}" height="${number(height)}" viewBox="${number(view.x1)} ${number(view.y1)} ${number(width)} ${number(height)}" font-family="system-ui, sans-serif">`,
    `<rect x="${number(view.x1)}" y="${number(view.y1)}" width="${number(width)}" height="${number(height)}" fill="#ffffff"/>`,
    // The labels' white halo, as on the screen.
    `<style>text { fill: #1b2733; stroke: rgba(255, 255, 255, 0.85); stroke-width: 3; stroke-linejoin: round; paint-order: stroke; }</style>`,
    ...painter.parts,
    "</svg>",
  ].join("\n");
}
