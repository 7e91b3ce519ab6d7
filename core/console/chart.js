// A small line chart in SVG: a few series over the last N readings, the scale's top and the
// newest figures printed as text (series differ by dash pattern, not only by colour).

import { h, svg } from "./ui.js";

const W = 320;
const H = 110;
const PAD = { left: 4, right: 4, top: 14, bottom: 4 };

export class LineChart {
  /**
   * `series`: [{label}] (up to three); `format(value)` prints a figure; `points`: readings
   * kept. `id` names the figure for tests and links.
   */
  constructor({ id, title, series, format, points = 60 }) {
    this.series = series;
    this.format = format;
    this.points = points;
    this.values = series.map(() => []);
    this.plot = svg("g");
    this.top = svg("text", { x: PAD.left, y: 10, class: "axis" }, "");
    this.svg = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, preserveAspectRatio: "none" },
      svg("line", { x1: 0, x2: W, y1: PAD.top, y2: PAD.top, class: "grid" }),
      svg("line", { x1: 0, x2: W, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "grid" }),
      this.top, this.plot);
    this.figures = [];
    this.el = h("figure", { class: "chart", id },
      h("figcaption", null, h("strong", null, title),
        h("ul", { class: "legend" }, this.series.map((s, i) => this.legend(s, i)))),
      this.svg);
  }

  legend(s, i) {
    const key = svg("svg", { width: 24, height: 8, "aria-hidden": "true" }, svg("line", { x1: 0, x2: 24, y1: 4, y2: 4, class: `s${i}` }));
    const figure = h("strong", { "data-series": i }, "—");
    this.figures[i] = figure;
    return h("li", null, key, ` ${s.label} now: `, figure);
  }

  /** Adds one reading per series (null: no figure this time). */
  push(readings) {
    readings.forEach((v, i) => {
      const values = this.values[i];
      values.push(v);
      if (values.length > this.points) values.shift();
      this.figures[i].textContent = v === null || v === undefined ? "—" : this.format(v);
    });
    this.draw();
  }

  draw() {
    const all = this.values.flat().filter((v) => v !== null && v !== undefined);
    const max = niceMax(Math.max(0, ...all));
    this.top.textContent = `top: ${this.format(max)}`;
    const x = (i) => PAD.left + (i * (W - PAD.left - PAD.right)) / Math.max(1, this.points - 1);
    const y = (v) => H - PAD.bottom - (v / max) * (H - PAD.top - PAD.bottom);
    const lines = this.values.map((values, s) => {
      // Newest at the right edge.
      const offset = this.points - values.length;
      const segments = [];
      let current = [];
      values.forEach((v, i) => {
        if (v === null || v === undefined) {
          if (current.length) segments.push(current);
          current = [];
        } else {
          current.push(`${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`);
        }
      });
      if (current.length) segments.push(current);
      return segments.map((points) =>
        points.length === 1
          ? svg("circle", { cx: points[0].split(",")[0], cy: points[0].split(",")[1], r: 2, class: `s${s}` })
          : svg("polyline", { points: points.join(" "), class: `s${s}` }));
    });
    this.plot.replaceChildren(...lines.flat());
  }
}

/** A round number at or above `v` for the scale's top (1, 2, 5 × 10^n). */
function niceMax(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= v) return step * power;
  }
  return 10 * power;
}
