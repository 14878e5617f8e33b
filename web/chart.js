// A small SVG line chart of connections and users over time (no library).

const NS = "http://www.w3.org/2000/svg";

function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** The smallest "nice" maximum (1, 2, 2.5 or 5 × 10^k per tick) covering `max` in `ticks` steps. */
export function niceMax(max, ticks = 4) {
  const raw = Math.max(max, ticks) / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw && Number.isInteger(s)) ?? 10 * mag;
  return step * ticks;
}

function timeLabel(ms, withSeconds) {
  const d = new Date(ms);
  const hh = String(d.getHours()).padStart(2, "0");
  const mm = String(d.getMinutes()).padStart(2, "0");
  const ss = String(d.getSeconds()).padStart(2, "0");
  return withSeconds ? `${hh}:${mm}:${ss}` : `${hh}:${mm}`;
}

/**
 * Draws `samples` (`[{at: ms, connections, users}]`, oldest first) into `svg`,
 * sized to its box. The time axis spans the samples, at least `minSpanMs`.
 */
export function renderChart(svg, samples, { now = Date.now(), minSpanMs = 30_000 } = {}) {
  const width = Math.max(200, Math.round(svg.clientWidth || svg.getBoundingClientRect().width || 600));
  const height = Math.max(120, Math.round(svg.clientHeight || 220));
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const pad = { left: 40, right: 14, top: 12, bottom: 26 };
  const w = width - pad.left - pad.right;
  const h = height - pad.top - pad.bottom;

  const t1 = samples.length ? Math.max(now, samples[samples.length - 1].at) : now;
  const t0 = Math.min(samples[0]?.at ?? t1, t1 - minSpanMs);
  const top = niceMax(Math.max(0, ...samples.flatMap((s) => [s.connections, s.users])));
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * w;
  const y = (v) => pad.top + h - (v / top) * h;

  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i;
    svg.append(svgEl("line", { class: "grid-line", x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }));
    svg.append(svgEl("text", { class: "axis-label", x: pad.left - 8, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  const withSeconds = t1 - t0 < 10 * 60_000;
  const ticks = Math.max(2, Math.min(6, Math.floor(w / 110)));
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + ((t1 - t0) / ticks) * i;
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    svg.append(svgEl("text", { class: "axis-label", x: x(t), y: height - 6, "text-anchor": anchor }, timeLabel(t, withSeconds)));
  }

  if (samples.length === 0) {
    svg.append(svgEl("text", { class: "axis-label", x: pad.left + w / 2, y: pad.top + h / 2, "text-anchor": "middle" }, "Collecting samples (one every 5 s)…"));
    return;
  }

  const line = (key) => samples.map((s, i) => `${i ? "L" : "M"}${x(s.at).toFixed(1)},${y(s[key]).toFixed(1)}`).join("");
  const first = samples[0];
  const last = samples[samples.length - 1];
  svg.append(
    svgEl("path", {
      class: "area-connections",
      d: `${line("connections")}L${x(last.at).toFixed(1)},${y(0)}L${x(first.at).toFixed(1)},${y(0)}Z`,
    }),
  );
  svg.append(svgEl("path", { class: "series-connections", d: line("connections") }));
  svg.append(svgEl("path", { class: "series-users", d: line("users") }));
  if (samples.length <= 40) {
    for (const s of samples) {
      svg.append(svgEl("circle", { class: "point-connections", cx: x(s.at), cy: y(s.connections), r: 3 }));
      svg.append(svgEl("circle", { class: "point-users", cx: x(s.at), cy: y(s.users), r: 3 }));
    }
  }
}
