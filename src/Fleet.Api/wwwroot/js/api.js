// The page's HTTP calls. Two keys, each typed by the operator and kept in this tab's sessionStorage only: the read
// key for the polling GETs, and an operator key (write scope; admin to cancel) for the buttons that change things.
// Keys go out only in the Authorization header, never into a URL or the page.

export const READ_KEY = 'fleet.apiKey';
export const WRITE_KEY = 'fleet.writeKey';
const TIMEOUT_MS = 5000;

export class HttpError extends Error {
  constructor(status, detail) {
    super(detail ? `HTTP ${status}: ${detail}` : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }

  /** The key was missing, wrong, or lacks the route's scope. */
  get refused() {
    return this.status === 401 || this.status === 403;
  }
}

/** The API's own words from a problem+json answer: detail or title, and each invalid field with its reason. */
async function problemText(response) {
  try {
    const problem = await response.json();
    const fields = Object.entries(problem.errors ?? {}).map(([field, reasons]) =>
      `${field}: ${Array.isArray(reasons) ? reasons.join(' ') : reasons}`);
    return [problem.detail || problem.title || '', ...fields].filter(Boolean).join(' ');
  } catch {
    return ''; // not problem+json
  }
}

async function call(method, path, key, body, timeout, idempotencyKey) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (idempotencyKey) headers['Idempotency-Key'] = idempotencyKey;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    signal: AbortSignal.timeout(timeout),
  });
  if (!response.ok) throw new HttpError(response.status, await problemText(response));
  return response.status === 204 ? null : response.json();
}

export function getJson(path) {
  return call('GET', path, sessionStorage.getItem(READ_KEY), undefined, TIMEOUT_MS);
}

/**
 * A write with the operator key, or the read key when none was given (an operator may have signed in with a key
 * that can write already). Longer timeout than reads: a bulk requeue or a replay of a whole queue takes a while.
 */
export function postJson(path, body, idempotencyKey) {
  const key = sessionStorage.getItem(WRITE_KEY) || sessionStorage.getItem(READ_KEY);
  return call('POST', path, key, body, 60_000, idempotencyKey);
}

/**
 * A fresh Idempotency-Key for one button: a retry of the same button (its answer lost to a timeout) gets the first
 * answer back instead of creating a second task. getRandomValues, unlike randomUUID, also works over plain http.
 */
export function newIdempotencyKey() {
  return 'dashboard-' + Array.from(crypto.getRandomValues(new Uint8Array(16)), b => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Runs one operator action from `button`: disabled while it runs (a double click sends one request), the outcome
 * written into `note` by `done(result)` or, on failure, the API's own reason. A refusal for want of scope opens
 * the operator-key panel, since that is the fix.
 */
export async function runAction(button, note, action, done) {
  if (button) button.disabled = true;
  note.dataset.state = 'busy';
  try {
    const result = await action();
    note.className = 'note ok';
    note.dataset.state = 'ok';
    note.textContent = done(result);
  } catch (e) {
    note.className = 'note bad';
    note.dataset.state = 'failed';
    let text = e instanceof HttpError ? e.message : e.name === 'TimeoutError' ? 'no answer within 60 s' : 'no connection';
    if (e instanceof HttpError && e.refused) {
      text += ' Enter an operator key above.';
      const panel = document.getElementById('operator');
      panel.open = true;
      panel.scrollIntoView({ block: 'nearest' });
    }
    note.textContent = `Failed: ${text}`;
  } finally {
    if (button) button.disabled = false;
  }
}
