/** Horizontal bars for counts, largest first (an accessible table underneath). */
export function Bars({ counts, label, limit = 12 }: { counts: [string, number][]; label: string; limit?: number }) {
  const shown = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, limit);
  const max = Math.max(1, ...shown.map(([, n]) => n));
  if (!shown.length) return <p className="muted">None.</p>;
  return (
    <table className="bars">
      <caption className="visually-hidden">{label}</caption>
      <tbody>
        {shown.map(([name, n]) => (
          <tr key={name}>
            <th scope="row" className="mono">
              {name}
            </th>
            <td>
              <meter min={0} max={max} value={n} aria-label={`${name}: ${n}`} />
            </td>
            <td className="num">{n}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export interface Bucket {
  start_time?: string;
  allow: string | number;
  deny: string | number;
}

/** ALLOW/DENY per bucket as stacked columns. */
export function DecisionRate({ buckets }: { buckets: Bucket[] }) {
  const width = 720;
  const height = 140;
  const values = buckets.map((b) => [Number(b.allow), Number(b.deny)] as const);
  const max = Math.max(1, ...values.map(([a, d]) => a + d));
  const step = width / Math.max(1, buckets.length);
  const allow = values.reduce((n, [a]) => n + a, 0);
  const deny = values.reduce((n, [, d]) => n + d, 0);
  return (
    <figure className="rate">
      <svg viewBox={`0 0 ${width} ${height + 16}`} role="img" aria-label={`${allow} ALLOW and ${deny} DENY decisions in the last hour`}>
        {values.map(([a, d], i) => {
          const ha = (a / max) * height;
          const hd = (d / max) * height;
          return (
            <g key={i}>
              <rect x={i * step + 1} y={height - ha} width={Math.max(1, step - 2)} height={ha} className="allow" />
              <rect x={i * step + 1} y={height - ha - hd} width={Math.max(1, step - 2)} height={hd} className="deny" />
              <title>
                {buckets[i].start_time}: {a} allow, {d} deny
              </title>
            </g>
          );
        })}
        <line x1={0} x2={width} y1={height} y2={height} className="axis" />
        <text x={0} y={height + 14} className="tick">
          −60 min
        </text>
        <text x={width} y={height + 14} textAnchor="end" className="tick">
          now
        </text>
      </svg>
      <figcaption>
        <span className="legend-swatch allow" /> ALLOW {allow} · <span className="legend-swatch deny" /> DENY {deny}
      </figcaption>
    </figure>
  );
}
