// The task browser: GET /tasks with the filter's status, type, batch and submitted range, newest first, a page at a
// time through the answer's `next` cursor; a row opens the task. The bulk requeue sends the same filter (but the
// range, which it cannot take) to POST /tasks/requeue.
import { h, fmtInt, fmtClock, fmtDateTime, FINAL, statusKind, badge, shortId, fillTable, emptyRow, report } from './dom.js';
import { getJson, postJson, runAction } from './api.js';

const PAGE = 25;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = id => document.getElementById(id);

/** datetime-local text (the browser's zone) -> epoch ms; '' -> null. */
function localTime(value) {
  if (!value) return null;
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? t : NaN;
}

export function createTaskBrowser({ openTask }) {
  const table = $('tasks');
  const note = $('tasks-note');
  let query = null; // the filter the rows were loaded with, and where the next page starts
  let seq = 0;
  let loaded = false; // once a page came back; before that, each refresh that reaches the API tries again

  function readFilter() {
    const status = $('f-status').value;
    const type = $('f-type').value.trim();
    const batchId = $('f-batch').value.trim();
    const from = localTime($('f-from').value);
    const to = localTime($('f-to').value);
    if (Number.isNaN(from) || Number.isNaN(to)) return { error: 'The submitted range needs a date and a time.' };
    if (from !== null && to !== null && from > to) return { error: '"Submitted from" is after "to".' };
    if (batchId && !UUID.test(batchId)) return { error: 'A batch id is a UUID.' };
    const params = new URLSearchParams();
    if (status) params.set('status', status);
    if (type) params.set('type', type);
    if (batchId) params.set('batchId', batchId);
    // "to" is a minute the operator picked, included: the API's submittedUntil is exclusive.
    if (from !== null) params.set('submittedSince', new Date(from).toISOString());
    if (to !== null) params.set('submittedUntil', new Date(to + 1).toISOString());
    return { status, type, batchId, from, to, params, next: null };
  }

  function row(t) {
    return h('tr', { 'data-task': t.id, 'data-status': t.status },
      h('td', { class: 'nowrap', title: fmtDateTime(t.submittedAt) }, fmtClock(t.submittedAt)),
      h('td', null, badge(t.status, statusKind[t.status] ?? 'muted')),
      h('td', null, h('code', null, t.type)),
      h('td', { class: 'r num' }, fmtInt(t.attempts)),
      h('td', null, t.batchId ? h('code', { title: t.batchId }, shortId(t.batchId)) : '–'),
      h('td', { class: 'msg', title: t.errorMessage ?? '' }, t.errorMessage ?? ''),
      h('td', null, h('button', { type: 'button', class: 'link', 'aria-label': `Open task ${t.id}`, title: t.id,
        onclick: () => openTask(t.id) }, shortId(t.id))));
  }

  /** Loads the first page of a new filter, or (more) the page after the rows shown. */
  async function load(more = false, keepNote = false) {
    if (!more) {
      const filter = readFilter();
      if (filter.error) {
        report(note, false, filter.error);
        return;
      }
      query = filter;
      updateBulk();
    }
    const mine = ++seq;
    const q = query;
    table.setAttribute('aria-busy', 'true');
    try {
      const params = new URLSearchParams(q.params);
      params.set('limit', String(PAGE));
      if (more && q.next) params.set('after', q.next);
      const page = await getJson(`tasks?${params}`);
      const next = page.next ?? null;
      const items = Array.isArray(page.items) ? page.items : [];
      if (mine !== seq) return;
      q.next = next;
      q.shown = (more ? q.shown : 0) + items.length;
      fillTable(table, items.map(row), emptyRow(7, 'No task matches the filter.'), more);
      $('tasks-more').hidden = !next;
      $('tasks-summary').textContent = `${fmtInt(q.shown)} shown${next ? ', more to load' : ''}`;
      if (!more && !keepNote) note.textContent = '';
      loaded = true;
    } catch (e) {
      if (mine !== seq) return;
      report(note, false, `Could not list tasks: ${e.message}`);
    } finally {
      if (mine === seq) table.removeAttribute('aria-busy');
    }
  }

  /**
   * Requeue these: the filter's final tasks (all four final states when it names none). POST /tasks/requeue selects
   * by finish time, not submit time, so with a submitted range the button says so instead of requeueing the wrong set.
   */
  function bulkStatuses() {
    if (!query) return [];
    const named = query.status ? query.status.split(',') : [...FINAL];
    return named.filter(s => FINAL.has(s));
  }

  function updateBulk() {
    const button = $('bulk-requeue');
    const statuses = bulkStatuses();
    const ranged = query && (query.from !== null || query.to !== null);
    button.disabled = statuses.length === 0 || ranged;
    button.title = ranged ? 'Clear the submitted range: a bulk requeue selects by status, type and batch only'
      : statuses.length === 0 ? 'Only final tasks can be requeued' : `Requeue the ${statuses.join(', ')} tasks of this filter`;
  }

  $('task-filter').addEventListener('submit', e => {
    e.preventDefault();
    load();
  });
  $('task-filter').addEventListener('reset', () => setTimeout(load)); // after the form has cleared its fields
  $('tasks-more').addEventListener('click', () => load(true));
  $('bulk-requeue').addEventListener('click', e => {
    const statuses = bulkStatuses();
    if (statuses.length === 0) return;
    const body = { status: statuses };
    if (query.type) body.type = query.type;
    if (query.batchId) body.batchId = query.batchId;
    const what = [`status ${statuses.join(', ')}`, query.type && `type ${query.type}`, query.batchId && `batch ${query.batchId}`]
      .filter(Boolean).join(', ');
    if (!confirm(`Requeue every task with ${what}, each as a new task (at most 1,000, the earliest finished first)? ` +
      'Tasks requeued before are skipped.')) return;
    runAction(e.currentTarget, note, () => postJson('tasks/requeue', body), r => {
      load(false, true);
      return r.count === 0 ? 'Nothing to requeue: no final task of this filter that was not requeued before.'
        : `Requeued ${fmtInt(r.count)} task${r.count === 1 ? '' : 's'} as new tasks.`;
    });
  });

  return {
    /** The first load, once the page has a working key; later ones come from the form. */
    loadOnce() {
      if (!loaded && !table.hasAttribute('aria-busy')) load();
    },
    reload: () => load(),
  };
}
