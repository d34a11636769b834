// Small DOM and formatting helpers. Every piece of data reaches the page as a text node or an attribute value,
// never as markup: there is no innerHTML anywhere in the dashboard.

/** Builds an element: h('td', { class: 'r', title: x }, 'text', childNode, ...). Strings become text nodes. */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Same as h() for SVG elements. */
export function svg(tag, attrs, ...children) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  setAttrs(node, attrs);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });

/** 12345 -> "12,345"; anything that is not a finite number -> "–". */
export function fmtInt(n) {
  return Number.isFinite(n) ? integer.format(n) : '–';
}

/** A rate with precision that suits its size: 0.25, 3.4, 128. */
export function fmtRate(n) {
  if (!Number.isFinite(n)) return '–';
  const digits = n === 0 ? 0 : n < 10 ? 2 : n < 100 ? 1 : 0;
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A duration in milliseconds as "850 ms", "4.2 s", "3 min 5 s", "2 h 10 min". */
export function fmtDuration(ms) {
  if (!Number.isFinite(ms)) return '–';
  if (ms < 0) ms = 0;
  if (ms < 10) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

const clock = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
// sv-SE formats as ISO-like "2026-11-30 14:03:07", which reads the same everywhere.
const dateTime = new Intl.DateTimeFormat('sv-SE', {
  year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

/** ISO time -> "14:03:07" (local). */
export function fmtClock(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? clock.format(t) : '–';
}

/** ISO time -> "2026-11-30 14:03:07" (local), for tooltips and details. */
export function fmtDateTime(iso) {
  const t = Date.parse(iso);
  return Number.isFinite(t) ? dateTime.format(t) : '–';
}

// ---- shared by the panels --------------------------------------------------------------------------------------

export const FINAL = new Set(['succeeded', 'failed', 'timed_out', 'cancelled']);
export const statusKind = { succeeded: 'ok', failed: 'bad', timed_out: 'warn', cancelled: 'muted', running: 'info', queued: 'info' };

export function badge(text, kind) {
  return h('span', { class: `badge ${kind}` }, text);
}

export function shortId(id) {
  return `…${String(id).slice(-8)}`;
}

/** Replaces a table's rows and labels each cell with its column's heading (narrow windows show rows as cards). */
export function fillTable(table, rows, empty, append = false) {
  const labels = [...table.tHead.rows[0].cells].map(c => c.textContent.trim());
  for (const row of rows) [...row.cells].forEach((cell, i) => cell.setAttribute('data-label', labels[i] ?? ''));
  if (append) table.tBodies[0].append(...rows);
  else table.tBodies[0].replaceChildren(...(rows.length ? rows : [empty]));
}

export function emptyRow(span, text) {
  return h('tr', { class: 'empty' }, h('td', { colspan: span }, text));
}

/** Shows the outcome of an operator action in `note` (a role=status element): ok or failed, with the API's words. */
export function report(note, ok, text) {
  note.textContent = text;
  note.dataset.state = ok ? 'ok' : 'failed';
  note.className = `note ${ok ? 'ok' : 'bad'}`;
}
