// Dead letters: the lanes' _error queues (GET /dead-letters), each message with its fault; replay or discard one,
// or all of a queue (POST /dead-letters/replay|discard). Loaded on demand, not every 2 s: a listing takes the
// messages off the queue and puts them back, which marks them redelivered.
import { h, fmtInt, fmtClock, fmtDateTime, fillTable, emptyRow, report } from './dom.js';
import { getJson, postJson, runAction } from './api.js';

const LIMIT = 100;
const $ = id => document.getElementById(id);

export function createDeadLetters() {
  const table = $('dead-letters');
  const note = $('dead-note');
  let loaded = false;
  let seq = 0;

  /** One request to replay or discard, then the listing again; the count and any id not found in the note. */
  function take(button, action, queue, selection, confirmText) {
    if (confirmText && !confirm(confirmText)) return;
    runAction(button, note, () => postJson(`dead-letters/${action}`, { queue, ...selection }), r => {
      load(true);
      const verb = action === 'replay' ? 'Replayed' : 'Discarded';
      const missing = r.notFound?.length ? ` Not found (taken meanwhile?): ${r.notFound.join(', ')}.` : '';
      return `${verb} ${fmtInt(r.count)} from ${r.queue}.${missing}`;
    });
  }

  function queueRow(q) {
    const empty = !q.exists || !(Number(q.messages) > 0);
    return h('tr', { 'data-queue': q.queue },
      h('th', { scope: 'row' }, h('code', null, q.queue)),
      h('td', { class: 'r num' }, q.exists ? fmtInt(q.messages) : '–'),
      h('td', { class: 'r nowrap' },
        h('button', { type: 'button', class: 'small', disabled: empty, 'aria-label': `Replay all of ${q.queue}`,
          onclick: e => take(e.currentTarget, 'replay', q.queue, { all: true },
            `Replay all ${fmtInt(q.messages)} dead letters of ${q.queue} to their queue?`) }, 'Replay all'),
        ' ',
        h('button', { type: 'button', class: 'small danger', disabled: empty, 'aria-label': `Discard all of ${q.queue}`,
          onclick: e => take(e.currentTarget, 'discard', q.queue, { all: true },
            `Discard all ${fmtInt(q.messages)} dead letters of ${q.queue} for good?`) }, 'Discard all')));
  }

  function letterRow(d) {
    return h('tr', { 'data-message': d.messageId, 'data-queue': d.queue },
      h('td', null, h('code', null, d.queue)),
      h('td', { class: 'nowrap', title: d.faultedAt ? fmtDateTime(d.faultedAt) : '' }, d.faultedAt ? fmtClock(d.faultedAt) : '–'),
      h('td', null, h('code', { class: 'id' }, d.messageId)),
      h('td', null, d.exceptionType ? h('code', null, d.exceptionType) : '–'),
      h('td', { class: 'msg', title: d.reason ?? '' }, d.reason ?? ''),
      h('td', null, h('details', { class: 'body' }, h('summary', null, `${fmtInt(d.bodyBytes)} bytes${d.bodyEncoding === 'base64' ? ', base64' : ''}`),
        h('pre', { class: 'json' }, d.body, d.bodyTruncated ? '\n…' : ''))),
      h('td', { class: 'r nowrap' },
        h('button', { type: 'button', class: 'small', 'aria-label': `Replay ${d.messageId}`,
          onclick: e => take(e.currentTarget, 'replay', d.queue, { messageIds: [d.messageId] }) }, 'Replay'),
        ' ',
        h('button', { type: 'button', class: 'small danger', 'aria-label': `Discard ${d.messageId}`,
          onclick: e => take(e.currentTarget, 'discard', d.queue, { messageIds: [d.messageId] },
            `Discard dead letter ${d.messageId} of ${d.queue} for good?`) }, 'Discard')));
  }

  async function load(keepNote = false) {
    const mine = ++seq;
    table.setAttribute('aria-busy', 'true');
    try {
      const list = await getJson(`dead-letters?limit=${LIMIT}`);
      if (mine !== seq) return;
      const queues = Array.isArray(list.queues) ? list.queues : [];
      const letters = Array.isArray(list.deadLetters) ? list.deadLetters : [];
      fillTable($('dead-queues'), queues.map(queueRow), emptyRow(3, 'No error queue.'));
      fillTable(table, letters.map(letterRow), emptyRow(7, 'No dead letter.'));
      const total = queues.reduce((sum, q) => sum + (Number(q.messages) || 0), 0);
      $('dead-summary').textContent = `${fmtInt(total)} waiting${list.truncated ? `, the first ${LIMIT} shown` : ''}`;
      if (!keepNote) note.textContent = '';
      loaded = true;
    } catch (e) {
      if (mine !== seq) return;
      report(note, false, `Could not list dead letters: ${e.message}`);
    } finally {
      if (mine === seq) table.removeAttribute('aria-busy');
    }
  }

  $('dead-refresh').addEventListener('click', () => load());

  return {
    loadOnce() {
      if (!loaded && !table.hasAttribute('aria-busy')) load();
    },
  };
}
