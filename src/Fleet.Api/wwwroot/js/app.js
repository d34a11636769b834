// Fleet dashboard: polls the API every 2 s (four GETs per refresh, none while the tab is hidden) and renders
// with DOM nodes only. Paths are relative, so the page also works when the API sits behind a path prefix.
import {
  h, fmtInt, fmtRate, fmtDuration, fmtClock, fmtDateTime, FINAL, statusKind, badge, shortId, fillTable, emptyRow,
} from './dom.js';
import { HttpError, getJson, newIdempotencyKey, postJson, runAction, READ_KEY, WRITE_KEY } from './api.js';
import { createChart } from './chart.js';
import { createTaskBrowser } from './browser.js';
import { createDeadLetters } from './deadletters.js';

const REFRESH_MS = 2000;
const FAILURES = 10;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = id => document.getElementById(id);
const chart = createChart($('chart'));

/** Browser clock minus server clock, from /stats generatedAt, so heartbeat ages are right on a skewed client. */
let skewMs = 0;
let lastOk = null;
let lookedUp = null; // the task shown in the lookup panel, refreshed with the rest while it is not final

// Reads need a key (a read key is enough) unless Api:ReadsRequireKey is false. The operator types it once per tab;
// it lives in sessionStorage, goes out only in the Authorization header, and never into a URL or the page (api.js).

// ---- connection state -------------------------------------------------------------------------------------------

function setConnection(state, pill, banner = '') {
  const conn = $('conn');
  conn.dataset.state = state;
  conn.textContent = pill;
  $('banner').textContent = banner;
  $('banner').hidden = !banner;
  $('banner').dataset.state = state;
  document.body.classList.toggle('stale', state === 'down');
}

function describeError(e) {
  if (e instanceof HttpError) return e.status === 401 || e.status === 403 ? 'the API needs a valid read key' : e.message;
  if (e.name === 'TimeoutError') return 'no answer within 5 s';
  return 'no connection';
}

// ---- sections ---------------------------------------------------------------------------------------------------

function setNum(node, value, format = fmtInt) {
  node.textContent = format(value);
  node.dataset.value = Number.isFinite(value) ? String(value) : '';
}

function renderStats(stats) {
  const generated = Date.parse(stats.generatedAt);
  if (Number.isFinite(generated)) skewMs = Date.now() - generated;

  setNum($('open-queued'), stats.open?.queued);
  setNum($('open-running'), stats.open?.running);
  for (const period of ['lastHour', 'last24h']) {
    for (const dd of $(`counts-${period}`).querySelectorAll('dd[data-status]')) {
      setNum(dd, stats[period]?.[dd.dataset.status]);
    }
  }
  setNum($('throughput'), stats.throughputLastMinute, fmtRate);
  chart.update(stats.series, serverNow());
  const series = Array.isArray(stats.series) ? stats.series : [];
  const total = series.reduce((sum, p) => sum + (Number(p.finished) || 0), 0);
  $('chart-summary').textContent = `${fmtInt(total)} finished in the window`;
}

const LANES = { 'fleet-cpu': ['cpuConcurrency', 'runningCpu'], 'fleet-io': ['ioConcurrency', 'runningIo'] };

/**
 * Busy slots of a lane over the live workers that consume its queue. Exact when /workers reports what each worker
 * runs (runningCpu/runningIo); otherwise estimated from RabbitMQ: a lane's unacked messages are running or waiting
 * for a free slot, so min(unacked, slots) are running.
 */
function laneUse(queue, workers) {
  const [slotsKey, runningKey] = LANES[queue.name] ?? [];
  if (!slotsKey || !workers) return null;
  const consumers = workers.filter(w => w.live && Array.isArray(w.queues) && w.queues.includes(queue.name));
  const slots = consumers.reduce((sum, w) => sum + (Number(w[slotsKey]) || 0), 0);
  if (!slots) return null;
  const exact = consumers.every(w => Number.isFinite(w[runningKey]));
  const busy = exact ? consumers.reduce((sum, w) => sum + w[runningKey], 0) : Math.min(Number(queue.unacked) || 0, slots);
  return { busy, slots, estimated: !exact };
}

function meter(use, label = '') {
  if (!use) return h('span', { class: 'hint' }, '–');
  const pct = Math.min(100, Math.round((use.busy / use.slots) * 100));
  const text = `${label}${fmtInt(use.busy)} / ${fmtInt(use.slots)}`;
  const bar = h('span', { class: 'meter', role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': use.slots, 'aria-valuenow': use.busy,
    'aria-label': `${label}${use.busy} of ${use.slots} slots busy${use.estimated ? ' (estimated)' : ''}` }, h('span'));
  bar.firstChild.style.width = `${pct}%`;
  return h('span', { class: 'use', title: use.estimated ? 'estimated from unacked messages' : null }, bar, text);
}

function renderQueues(stats, workers) {
  const queues = Array.isArray(stats.queues) ? stats.queues : [];
  // A message in an _error queue could not even be read by a worker: worth a colour.
  const dead = q => q.name.endsWith('_error') && Number(q.ready) > 0;
  const rows = queues.map(q => h('tr', { 'data-queue': q.name, 'data-paused': q.paused === true ? 'true' : 'false' },
    h('th', { scope: 'row' }, h('code', null, q.name), q.paused ? [' ', badge('paused', 'warn')] : null),
    h('td', { class: dead(q) ? 'r num bad' : 'r num', title: dead(q) ? 'unreadable messages, see the worker log' : null }, fmtInt(q.ready)),
    h('td', { class: 'r num' }, fmtInt(q.unacked)),
    h('td', { class: 'r num' }, fmtInt(q.consumers)),
    h('td', { class: 'r' }, meter(laneUse(q, workers))),
    h('td', { class: 'r' }, laneButton(q))));
  const none = stats.queuesError ? `Queue depths unavailable: ${stats.queuesError}` : 'No queue reported.';
  fillTable($('queues'), rows, emptyRow(6, none));
}

/**
 * Pause or Resume for a lane or a worker group's queue (its dispatch queue follows it; the error queues have no such thing). The state is
 * the `paused` flag /stats gives each queue; an API without it shows Pause only.
 */
function laneButton(q) {
  // The queues of fleet.queues (the lanes, and worker groups' queues) come with their lane.
  if (!q.lane && !LANES[q.name]) return null;
  const note = $('queues-note');
  if (q.paused) {
    return h('button', { type: 'button', class: 'small', 'aria-label': `Resume ${q.name}`, onclick: e =>
      runAction(e.currentTarget, note, () => postJson(`queues/${encodeURIComponent(q.name)}/resume`), () => {
        loop();
        return `${q.name} resumed: workers take its tasks again within a few seconds.`;
      }) }, 'Resume');
  }
  return h('button', { type: 'button', class: 'small secondary', 'aria-label': `Pause ${q.name}`, onclick: e => {
    const reason = prompt(`Pause ${q.name}? No worker takes its tasks until it is resumed; running ones finish.\nReason (optional):`, '');
    if (reason === null) return;
    runAction(e.currentTarget, note,
      () => postJson(`queues/${encodeURIComponent(q.name)}/pause`, reason.trim() ? { reason: reason.trim() } : undefined), () => {
        loop();
        return `${q.name} paused.`;
      });
  } }, 'Pause');
}

function workerBadge(w) {
  if (w.state === 'stopped') return badge('stopped', 'muted');
  if (!w.live) return badge(`stale · ${w.state}`, 'warn');
  return badge(w.state, w.state === 'running' ? 'ok' : 'info');
}

/** Whether the worker runs a process lane: child processes for some task types (an older API reports no slots). */
function hasProcessLane(w) {
  return Number(w.processSlots) > 0;
}

/** A worker's busy slots per lane, when /workers reports them; the process lane's as of its last heartbeat. */
function workerUse(w) {
  if (!w.live || !Number.isFinite(w.runningCpu) || !Number.isFinite(w.runningIo)) return h('span', { class: 'hint' }, '–');
  return h('span', { class: 'stack' },
    meter({ busy: w.runningCpu, slots: w.cpuConcurrency }, 'cpu '),
    meter({ busy: w.runningIo, slots: w.ioConcurrency }, 'io '),
    hasProcessLane(w) && Number.isFinite(w.processBusy) ? meter({ busy: w.processBusy, slots: w.processSlots }, 'proc ') : null);
}

/** The process lane's child processes: started (first ones and replacements), killed by the worker, died by themselves. */
function workerChildren(w) {
  if (!hasProcessLane(w)) return h('span', { class: 'hint' }, '–');
  const trouble = (Number(w.processKills) || 0) + (Number(w.processDeaths) || 0) > 0;
  return h('span', {
    class: trouble ? 'warn' : null,
    title: 'killed: at a time limit or cancel, or over the memory limit; died: crashed by themselves',
  }, `${fmtInt(w.processChildrenStarted)} started · ${fmtInt(w.processKills)} killed · ${fmtInt(w.processDeaths)} died`);
}

function renderWorkers(workers) {
  const rows = workers.map(w => {
    const age = serverNow() - Date.parse(w.lastSeenAt);
    return h('tr', { 'data-worker': w.id, class: w.live ? null : 'dim' },
      h('th', { scope: 'row' }, h('code', { title: `host ${w.host}, pid ${w.pid}` }, w.id)),
      h('td', null, (w.queues ?? []).join(', ')),
      h('td', { class: 'nowrap lanes' },
        `cpu ${fmtInt(w.cpuConcurrency)} · io ${fmtInt(w.ioConcurrency)}${hasProcessLane(w) ? ` · proc ${fmtInt(w.processSlots)}` : ''}`),
      h('td', null, workerUse(w)),
      h('td', null, workerChildren(w)),
      h('td', null, workerBadge(w)),
      h('td', { class: 'r nowrap', title: fmtDateTime(w.lastSeenAt) }, age < 100 ? 'just now' : `${fmtDuration(age)} ago`),
      h('td', { class: 'r num' }, fmtInt(w.tasksSucceeded)),
      h('td', { class: 'r num' }, fmtInt(w.tasksFailed)),
      h('td', { class: 'r num' }, fmtInt(w.tasksSkipped)));
  });
  fillTable($('workers'), rows, emptyRow(10, 'No worker has reported in the last hour.'));
  const live = workers.filter(w => w.live);
  const cpu = live.reduce((s, w) => s + (Number(w.cpuConcurrency) || 0), 0);
  const io = live.reduce((s, w) => s + (Number(w.ioConcurrency) || 0), 0);
  const proc = live.reduce((s, w) => s + (Number(w.processSlots) || 0), 0);
  $('workers-summary').textContent =
    `${live.length} live of ${workers.length} · ${fmtInt(cpu)} cpu + ${fmtInt(io)} io${proc ? ` + ${fmtInt(proc)} proc` : ''} slots`;
}

function renderFailures(page) {
  const items = Array.isArray(page?.items) ? page.items : [];
  const rows = items.map(t => h('tr', { 'data-task': t.id },
    h('td', { class: 'nowrap', title: fmtDateTime(t.finishedAt) }, fmtClock(t.finishedAt)),
    h('td', null, h('code', null, t.type)),
    h('td', null, t.errorType ?? '–'),
    h('td', { class: 'msg', title: t.errorMessage ?? '' }, t.errorMessage ?? ''),
    h('td', null, h('button', { type: 'button', class: 'link', 'aria-label': `Look up task ${t.id}`, title: t.id,
      onclick: () => showFromList(t.id) }, shortId(t.id)))));
  fillTable($('failures'), rows, emptyRow(5, 'No failed task.'));
}

function renderSchedules(schedules) {
  const rows = schedules.map(s => h('tr', { 'data-schedule': s.name, class: s.paused ? 'dim' : null },
    h('th', { scope: 'row' }, h('code', null, s.name)),
    h('td', null, h('code', null, s.cron)),
    h('td', null, s.timeZone),
    h('td', null, h('code', null, s.task?.type ?? '–')),
    h('td', null, s.paused ? badge('paused', 'muted') : badge('active', 'ok')),
    // The exact times ride along as attributes: the text is local time to the second.
    h('td', { class: 'nowrap next', 'data-time': s.nextFireAt }, s.nextFireAt ? fmtDateTime(s.nextFireAt) : '–'),
    h('td', { class: 'nowrap last', 'data-time': s.lastFiredAt }, s.lastFiredAt ? fmtDateTime(s.lastFiredAt) : '–'),
    h('td', null, s.lastTaskId
      ? h('button', { type: 'button', class: 'link', 'aria-label': `Look up task ${s.lastTaskId}`, title: s.lastTaskId,
        onclick: () => showFromList(s.lastTaskId) }, shortId(s.lastTaskId))
      : '–')));
  fillTable($('schedules'), rows, emptyRow(8, 'No schedule.'));
  const active = schedules.filter(s => !s.paused).length;
  $('schedules-summary').textContent = `${active} active of ${schedules.length}`;
}

function renderLimits(limits) {
  const rows = limits.map(l => h('tr', { 'data-limit': `${l.scope}/${l.key}`, class: l.blockedReason ? null : 'dim' },
    h('td', null, l.scope),
    h('th', { scope: 'row' }, h('code', null, l.key)),
    h('td', { class: 'num' }, l.perSecond ?? '–'),
    h('td', { class: 'num' }, l.burst ?? '–'),
    h('td', { class: 'num' }, l.maxRunning ?? '–'),
    // blockedReason is the dispatcher's word: rate-limit or concurrency-limit while the limit holds tasks back.
    h('td', null, l.blockedReason ? badge(l.blockedReason, 'warn') : badge('open', 'ok')),
    h('td', { class: 'nowrap since', 'data-time': l.blockedSince }, l.blockedSince ? fmtDateTime(l.blockedSince) : '–')));
  fillTable($('limits'), rows, emptyRow(7, 'No limit.'));
  const blocked = limits.filter(l => l.blockedReason).length;
  $('limits-summary').textContent = `${blocked} holding tasks back of ${limits.length}`;
}

function showFromList(id) {
  lookup(id);
  $('lookup-id').scrollIntoView({ block: 'nearest', behavior: 'smooth' });
}

function serverNow() {
  return Date.now() - skewMs;
}

// ---- task lookup ------------------------------------------------------------------------------------------------

function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

/** A button that opens another task (a chain link, the task this one reruns); the id in full as its title. */
function taskLink(id, label) {
  return h('button', { type: 'button', class: 'link', 'aria-label': `${label} ${id}`, title: id, onclick: () => lookup(id) }, shortId(id));
}

/** Cancel while the task is open, Requeue once it is final; each needs the operator key (cancel: an admin key). */
function taskActions(t) {
  const note = $('task-action');
  const final = FINAL.has(t.status);
  // One key per rendered button: pressing it again after a lost answer does not run the task a third time.
  const requeueKey = newIdempotencyKey();
  return h('div', { class: 'actions' },
    final ? null : h('button', { type: 'button', class: 'secondary', onclick: e => {
      if (!confirm(`Cancel task ${t.id}? A queued task never runs; a running one is stopped.`)) return;
      runAction(e.currentTarget, note, () => postJson(`tasks/${encodeURIComponent(t.id)}/cancel`), r => {
        lookup(t.id, false);
        return r?.cancelRequested ? 'Cancel requested: the worker stops it.' : 'Cancelled.';
      });
    } }, 'Cancel'),
    final ? h('button', { type: 'button', onclick: e =>
      runAction(e.currentTarget, note, () => postJson(`tasks/${encodeURIComponent(t.id)}/requeue`, undefined, requeueKey), r => {
        lookup(r.id);
        return `Requeued as a new task ${r.id}.`;
      }) }, 'Requeue') : null);
}

function renderTask(t) {
  const submitted = Date.parse(t.submittedAt);
  const started = Date.parse(t.startedAt);
  const finished = Date.parse(t.finishedAt);
  const fields = [
    ['Type', h('code', null, t.type)],
    ['Queue', h('code', null, t.queue)],
    ['Attempts', fmtInt(t.attempts)],
    ['Worker', t.workerId ? h('code', null, t.workerId) : '–'],
    ['Batch', t.batchId ? h('code', null, t.batchId) : '–'],
    ['Submitted', fmtDateTime(t.submittedAt)],
    ['Started', t.startedAt ? fmtDateTime(t.startedAt) : '–'],
    ['Finished', t.finishedAt ? fmtDateTime(t.finishedAt) : '–'],
    ['Waited', Number.isFinite(started) ? fmtDuration(started - submitted) : '–'],
    ['Ran', Number.isFinite(finished) && Number.isFinite(started) ? fmtDuration(finished - started) : '–'],
    // The rest only when set: most tasks have none of them.
    t.waitingFor ? ['Waiting for', badge(t.waitingFor, 'info')] : null,
    t.notBefore ? ['Not before', fmtDateTime(t.notBefore)] : null,
    t.priority ? ['Priority', fmtInt(t.priority)] : null,
    t.tenant ? ['Tenant', h('code', null, t.tenant)] : null,
    t.scheduleName ? ['Schedule', h('code', null, t.scheduleName)] : null,
    t.uniqueKey ? ['Unique key', h('code', null, t.uniqueKey)] : null,
    t.afterTaskId ? ['After task', taskLink(t.afterTaskId, 'Open the task before')] : null,
    t.nextTaskId ? ['Next task', taskLink(t.nextTaskId, 'Open the next task')] : null,
    t.afterBatchId ? ['After batch', h('code', null, t.afterBatchId)] : null,
    t.requeuedFrom ? ['Requeued from', taskLink(t.requeuedFrom, 'Open the task it reruns')] : null,
  ].filter(Boolean);
  // What its handler last reported (written by the worker about once a second); absent when it reported nothing.
  if (Number.isFinite(t.progress)) {
    fields.push(['Progress', h('span', { class: 'progress', title: t.progressAt ? `reported ${fmtDateTime(t.progressAt)}` : null },
      h('progress', { value: t.progress, max: 1 }), ` ${Math.round(t.progress * 100)}%`, t.progressNote ? ` · ${t.progressNote}` : '')]);
  }
  return h('article', { class: 'task', 'data-task': t.id, 'data-status': t.status },
    h('h3', null, badge(t.status, statusKind[t.status] ?? 'muted'), ' ', h('code', null, t.id)),
    taskActions(t),
    h('dl', { class: 'fields' }, fields.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    t.errorType || t.errorMessage
      ? h('div', { class: 'error' }, h('h4', null, t.errorType ?? 'Error'), h('p', null, t.errorMessage ?? ''))
      : null,
    t.result !== undefined && t.result !== null ? h('div', null, h('h4', null, 'Result'), json(t.result)) : null,
    executions(t.executions),
    h('details', null, h('summary', null, 'Payload'), json(t.payload ?? null)));
}

let lookupSeq = 0;

/** One row per execution (fleet.task_attempts), when the API sends them. */
function executions(list) {
  if (!Array.isArray(list) || list.length === 0) return null;
  const ms = v => (Number.isFinite(v) ? fmtDuration(v) : '–');
  return h('div', { class: 'scroll' }, h('h4', null, 'Executions'), h('table', { class: 'compact executions' },
    h('thead', null, h('tr', null, ['#', 'Worker', 'Outcome', 'Wall', 'CPU', 'Queue wait', 'Error'].map((c, i) =>
      h('th', { scope: 'col', class: i >= 3 && i < 6 ? 'r' : null }, c)))),
    h('tbody', null, list.map(e => h('tr', { 'data-attempt': e.attempt },
      h('td', { class: 'num' }, fmtInt(e.attempt)),
      h('td', null, h('code', null, e.workerId)),
      h('td', { title: e.errorMessage ?? '' }, badge(e.outcome ?? 'running', statusKind[e.outcome] ?? 'info')),
      h('td', { class: 'r num' }, ms(e.wallMs)),
      h('td', { class: 'r num' }, ms(e.cpuMs)),
      h('td', { class: 'r num' }, ms(e.queueWaitMs)),
      h('td', { class: 'msg', title: e.errorMessage ?? '' }, e.errorMessage ?? ''))))));
}

/** Shows one task. `fromUser` (a search or a click) also fills the box and the address; a refresh does neither. */
async function lookup(id, fromUser = true) {
  id = String(id).trim();
  const out = $('lookup-result');
  if (fromUser) {
    $('lookup-id').value = id;
    history.replaceState(null, '', `#task=${encodeURIComponent(id)}`);
  }
  const seq = ++lookupSeq;
  if (!UUID.test(id)) {
    lookedUp = null;
    out.replaceChildren(h('p', { class: 'note bad' }, 'A task id is a UUID, like 0192f5c1-7d3e-7a10-9c4b-5e2f8a1b3c4d.'));
    return;
  }
  out.setAttribute('aria-busy', 'true');
  try {
    const task = await getJson(`tasks/${encodeURIComponent(id)}`);
    if (seq !== lookupSeq) return; // a newer lookup started meanwhile
    lookedUp = FINAL.has(task.status) ? null : id;
    out.replaceChildren(renderTask(task));
  } catch (e) {
    if (seq !== lookupSeq) return;
    // Refused for want of a key: the refresh after the key form retries it (a #task= link opened before sign-in).
    lookedUp = e instanceof HttpError && (e.status === 401 || e.status === 403) ? id : null;
    const text = e instanceof HttpError && e.status === 404 ? `No task with id ${id}.` : `Lookup failed: ${describeError(e)}.`;
    out.replaceChildren(h('p', { class: 'note bad' }, text));
  } finally {
    if (seq === lookupSeq) out.removeAttribute('aria-busy');
  }
}

$('lookup').addEventListener('submit', e => {
  e.preventDefault();
  lookup($('lookup-id').value);
});

$('key-form').addEventListener('submit', e => {
  e.preventDefault();
  sessionStorage.setItem(READ_KEY, $('key-input').value.trim());
  $('key-input').value = '';
  loop();
});

// The operator key: typed here, used by the buttons only (api.js postJson), forgotten with the tab or on Forget.
function showWriteKeyState() {
  const set = Boolean(sessionStorage.getItem(WRITE_KEY));
  $('operator').dataset.key = set ? 'set' : 'none';
  $('write-key-state').textContent = set ? 'set for this tab' : 'none: the buttons send the read key';
  $('write-key-forget').hidden = !set;
}

$('write-key-form').addEventListener('submit', e => {
  e.preventDefault();
  const key = $('write-key-input').value.trim();
  if (key) sessionStorage.setItem(WRITE_KEY, key);
  $('write-key-input').value = '';
  $('operator').open = false;
  showWriteKeyState();
});

$('write-key-forget').addEventListener('click', () => {
  sessionStorage.removeItem(WRITE_KEY);
  showWriteKeyState();
});

const openTask = id => showFromList(id);
const browser = createTaskBrowser({ openTask });
const deadLetters = createDeadLetters();

// ---- the refresh loop -------------------------------------------------------------------------------------------

async function refresh() {
  const [stats, workers, failures, schedules, limits] = await Promise.allSettled([
    getJson('stats'), getJson('workers'), getJson(`tasks?status=failed&limit=${FAILURES}`), getJson('schedules'), getJson('limits'),
  ]);
  const results = [stats, workers, failures, schedules, limits];
  const okWorkers = workers.status === 'fulfilled' && Array.isArray(workers.value) ? workers.value : null;

  if (stats.status === 'fulfilled') {
    renderStats(stats.value);
    renderQueues(stats.value, okWorkers);
  }
  if (okWorkers) renderWorkers(okWorkers);
  if (failures.status === 'fulfilled') renderFailures(failures.value);
  if (schedules.status === 'fulfilled' && Array.isArray(schedules.value)) renderSchedules(schedules.value);
  if (limits.status === 'fulfilled' && Array.isArray(limits.value)) renderLimits(limits.value);

  const failed = results.filter(r => r.status === 'rejected');
  $('key-form').hidden = !failed.some(r => r.reason instanceof HttpError && (r.reason.status === 401 || r.reason.status === 403));
  if (failed.length === 0) {
    lastOk = new Date();
    setConnection('live', 'Live');
  } else if (failed.length === results.length) {
    const since = lastOk ? `The figures below are from ${fmtClock(lastOk.toISOString())}.` : 'Nothing loaded yet.';
    setConnection('down', 'API unreachable',
      `API unreachable (${describeError(failed[0].reason)}). ${since} Retrying every ${REFRESH_MS / 1000} s.`);
  } else {
    lastOk = new Date();
    setConnection('partial', 'Partly updated', `Some of the page could not be refreshed: ${describeError(failed[0].reason)}.`);
  }
  $('updated').textContent = lastOk ? `Updated ${fmtClock(lastOk.toISOString())}.` : '';

  // The task browser and the dead letters load once the API answers (after sign-in), then on demand only: a list
  // that reorders itself every 2 s under the operator's pointer is no use, and each dead-letter listing reads the
  // error queues on the broker.
  if (failed.length < results.length) {
    browser.loadOnce();
    deadLetters.loadOnce();
  }

  if (lookedUp) await lookup(lookedUp, false);
}

let timer = 0;
let refreshing = false;
async function loop() {
  clearTimeout(timer);
  if (refreshing) return;
  refreshing = true;
  try {
    await refresh();
  } catch (e) {
    // An answer the page cannot draw: say so and keep polling rather than stop with an error in the console.
    setConnection('partial', 'Display error', `Could not show the latest data: ${e.message}`);
  } finally {
    refreshing = false;
    // The next refresh starts 2 s after this one ended, so a slow API never gets overlapping requests; a hidden
    // tab stops polling until it is shown again.
    if (!document.hidden) timer = setTimeout(loop, REFRESH_MS);
  }
}

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) loop();
});

showWriteKeyState();
const fromHash = new URLSearchParams(location.hash.slice(1)).get('task');
if (fromHash) lookup(fromHash);
loop();
