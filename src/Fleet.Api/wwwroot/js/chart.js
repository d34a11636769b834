// The throughput chart: tasks finished per second, one point per bucket of /stats "series", drawn as inline SVG.
import { svg, fmtRate, fmtClock, fmtInt } from './dom.js';

const HEIGHT = 220;
const PAD = { left: 44, right: 14, top: 14, bottom: 26 };
const MINUTE = 60_000;

/**
 * Draws into `container` and keeps it drawn at the container's width. Each call to update() redraws with new data.
 * The container carries the figures as data attributes (data-total, data-peak, data-last, data-points), so tests
 * and scripts can read what the chart shows without parsing SVG.
 */
export function createChart(container, { windowMs = 15 * MINUTE } = {}) {
  let last = null;
  new ResizeObserver(() => last && draw(container, last, windowMs)).observe(container);
  return {
    update(series, serverNow) {
      last = { series: Array.isArray(series) ? series : [], serverNow };
      draw(container, last, windowMs);
    },
  };
}

/** Fills the window with buckets (missing buckets are 0), whatever the bucket size the API uses. */
function toBuckets(series, serverNow, windowMs) {
  const points = series
    .map(p => ({ t: Date.parse(p.t), n: Number(p.finished) || 0 }))
    .filter(p => Number.isFinite(p.t))
    .sort((a, b) => a.t - b.t);
  let bucketMs = 5000;
  for (let i = 1; i < points.length; i++) {
    const d = points[i].t - points[i - 1].t;
    if (d > 0 && d < bucketMs) bucketMs = d;
  }
  const bySlot = new Map(points.map(p => [Math.floor(p.t / bucketMs), p.n]));
  // The window ends with the latest complete bucket (the one still filling is not drawn, so the line never
  // dips to zero at the right edge just because the current 5 s are not over yet).
  const newest = points.length ? Math.floor(points[points.length - 1].t / bucketMs) : -Infinity;
  const lastSlot = Math.max(newest, Math.floor(serverNow / bucketMs) - 1);
  const count = Math.round(windowMs / bucketMs);
  const buckets = [];
  for (let slot = lastSlot - count + 1; slot <= lastSlot; slot++) {
    const n = bySlot.get(slot) ?? 0;
    buckets.push({ t: slot * bucketMs, n, rate: n / (bucketMs / 1000) });
  }
  return { buckets, bucketMs, end: (lastSlot + 1) * bucketMs };
}

/** The smallest of 1, 2, 5 x 10^k at or above `v` (at least 1). */
function niceCeil(v) {
  if (!(v > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map(m => m * p).find(c => c >= v);
}

function axisLabel(v) {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function draw(container, { series, serverNow }, windowMs) {
  const { buckets, bucketMs, end } = toBuckets(series, serverNow, windowMs);
  const total = series.reduce((sum, p) => sum + (Number(p.finished) || 0), 0);
  const peak = buckets.reduce((m, b) => Math.max(m, b.rate), 0);
  const current = buckets.length ? buckets[buckets.length - 1].rate : 0;
  container.dataset.total = String(total);
  container.dataset.peak = String(peak);
  container.dataset.last = String(current);
  container.dataset.points = String(series.length);
  container.setAttribute('aria-label',
    `Tasks finished per second over the last ${Math.round(windowMs / MINUTE)} minutes: ${fmtInt(total)} tasks in all, ` +
    `peak ${fmtRate(peak)} per second, latest ${fmtRate(current)} per second.`);

  const width = Math.max(280, container.clientWidth);
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const yMax = niceCeil(peak);
  const start = end - windowMs;
  const x = t => PAD.left + ((t - start) / windowMs) * plotW;
  const y = r => PAD.top + plotH - (r / yMax) * plotH;

  const root = svg('svg', { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, 'aria-hidden': 'true', focusable: 'false' });

  for (const frac of [0, 0.5, 1]) {
    const gy = y(yMax * frac);
    root.append(
      svg('line', { class: 'grid', x1: PAD.left, x2: width - PAD.right, y1: gy, y2: gy }),
      svg('text', { class: 'axis', x: PAD.left - 6, y: gy + 4, 'text-anchor': 'end' }, axisLabel(yMax * frac)));
  }
  for (const minutesAgo of [15, 10, 5, 0]) {
    const tx = x(end - minutesAgo * MINUTE);
    const anchor = minutesAgo === 15 ? 'start' : minutesAgo === 0 ? 'end' : 'middle';
    root.append(svg('text', { class: 'axis', x: tx, y: HEIGHT - 8, 'text-anchor': anchor }, minutesAgo ? `−${minutesAgo} min` : 'now'));
  }

  if (buckets.length) {
    // A point sits at the middle of its bucket; the line is a step, so a burst reads as the bucket it fell in.
    const pts = [];
    for (const b of buckets) {
      pts.push([x(b.t), y(b.rate)], [x(b.t + bucketMs), y(b.rate)]);
    }
    const line = pts.map(([px, py], i) => `${i ? 'L' : 'M'}${px.toFixed(1)},${py.toFixed(1)}`).join('');
    const base = y(0).toFixed(1);
    root.append(
      svg('path', { class: 'area', d: `${line}L${pts[pts.length - 1][0].toFixed(1)},${base}L${pts[0][0].toFixed(1)},${base}Z` }),
      svg('path', { class: 'line', d: line }));
  }

  // Hover read-out: a guide line and the bucket's time and rate.
  const guide = svg('line', { class: 'guide', y1: PAD.top, y2: PAD.top + plotH, visibility: 'hidden' });
  const label = svg('text', { class: 'readout', y: PAD.top + 10, visibility: 'hidden' });
  const hit = svg('rect', { class: 'hit', x: PAD.left, y: PAD.top, width: plotW, height: plotH });
  hit.addEventListener('pointermove', e => {
    const box = root.getBoundingClientRect();
    const t = start + ((e.clientX - box.left - PAD.left) / plotW) * windowMs;
    const b = buckets.find(k => t >= k.t && t < k.t + bucketMs);
    if (!b) return;
    const gx = x(b.t + bucketMs / 2);
    guide.setAttribute('x1', gx);
    guide.setAttribute('x2', gx);
    label.textContent = `${fmtClock(new Date(b.t).toISOString())} · ${fmtRate(b.rate)}/s (${fmtInt(b.n)})`;
    const right = gx > PAD.left + plotW / 2;
    label.setAttribute('x', right ? gx - 6 : gx + 6);
    label.setAttribute('text-anchor', right ? 'end' : 'start');
    guide.setAttribute('visibility', 'visible');
    label.setAttribute('visibility', 'visible');
  });
  hit.addEventListener('pointerleave', () => {
    guide.setAttribute('visibility', 'hidden');
    label.setAttribute('visibility', 'hidden');
  });
  root.append(guide, label, hit);
  container.replaceChildren(root);
}
