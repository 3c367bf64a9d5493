import { geoCentroid, geoNaturalEarth1, geoPath } from "d3-geo";
import type { Feature, FeatureCollection, Geometry } from "geojson";
import countries from "i18n-iso-countries";
import { useEffect, useMemo, useState } from "react";
import { feature } from "topojson-client";

export interface RegionLoad {
  region: string;
  country: string;
  datasets: number;
  classified: number;
  violations: number;
}

const WIDTH = 960;
const HEIGHT = 480;
const SHADES = ["#e8eef3", "#c6dbef", "#9ecae1", "#6baed6", "#3182bd", "#08519c"];

function shade(count: number, max: number): string {
  if (count <= 0 || max <= 0) return SHADES[0];
  return SHADES[Math.min(SHADES.length - 1, 1 + Math.floor((count / max) * (SHADES.length - 2)))];
}

/** Countries shaded by the regulated (classified) datasets their regions hold; one marker
 * per region, ringed in red when the region holds violations. */
export function WorldMap({ regions }: { regions: RegionLoad[] }) {
  // The country shapes (100 kB) load after the page has painted.
  const [shapes, setShapes] = useState<Feature<Geometry, { name: string }>[]>([]);
  useEffect(() => {
    import("world-atlas/countries-110m.json").then((world) => {
      const topology = world.default as any;
      setShapes((feature(topology, topology.objects.countries) as unknown as FeatureCollection<Geometry, { name: string }>).features);
    });
  }, []);
  const projection = useMemo(() => geoNaturalEarth1().fitSize([WIDTH, HEIGHT], { type: "Sphere" }), []);
  const path = geoPath(projection);

  const byCountry = new Map<string, number>();
  for (const r of regions) {
    const numeric = countries.alpha2ToNumeric(r.country);
    if (numeric) byCountry.set(numeric, (byCountry.get(numeric) ?? 0) + r.classified);
  }
  const max = Math.max(0, ...byCountry.values());
  const shapeById = new Map(shapes.map((s) => [String(s.id), s]));
  const seen = new Map<string, number>();
  const markers = regions.flatMap((r) => {
    const shape: Feature | undefined = shapeById.get(countries.alpha2ToNumeric(r.country) ?? "");
    if (!shape) return [];
    const point = projection(geoCentroid(shape));
    if (!point) return [];
    const index = seen.get(r.country) ?? 0;
    seen.set(r.country, index + 1);
    const angle = index * 2.4;
    return [{ ...r, x: point[0] + Math.cos(angle) * 9 * Math.sqrt(index), y: point[1] + Math.sin(angle) * 9 * Math.sqrt(index) }];
  });
  const totalClassified = regions.reduce((n, r) => n + r.classified, 0);
  const violating = regions.filter((r) => r.violations > 0).length;

  return (
    <figure className="map">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        role="img"
        aria-label={`World map: ${totalClassified} regulated dataset copies in ${regions.length} regions; ${violating} regions hold violations.`}
      >
        <path d={path({ type: "Sphere" }) ?? ""} className="sphere" />
        {shapes.map((s) => (
          <path key={String(s.id)} d={path(s) ?? ""} fill={shade(byCountry.get(String(s.id)) ?? 0, max)} className="country">
            <title>
              {s.properties.name}: {byCountry.get(String(s.id)) ?? 0} regulated datasets
            </title>
          </path>
        ))}
        {markers.map((m) => (
          <circle
            key={m.region}
            cx={m.x}
            cy={m.y}
            r={3 + Math.min(9, Math.sqrt(m.datasets))}
            className={m.violations > 0 ? "marker violating" : "marker"}
          >
            <title>
              {m.region}: {m.datasets} datasets ({m.classified} classified), {m.violations} violations
            </title>
          </circle>
        ))}
      </svg>
      <figcaption>
        <span className="legend-swatch low" /> few <span className="legend-swatch high" /> many regulated datasets ·{" "}
        <span className="legend-ring" /> region with violations
      </figcaption>
    </figure>
  );
}
