// The server's API as the console calls it: the token from this tab's
// sessionStorage in the Authorization header (never in a URL or a cookie),
// errors as APIError with the server's message.

const tokenKey = 'minilambda.token';

export const token = {
  get: () => sessionStorage.getItem(tokenKey) || '',
  set: (t) => sessionStorage.setItem(tokenKey, t),
  clear: () => sessionStorage.removeItem(tokenKey),
};

export class APIError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// errorText is what the user is shown of an error.
export function errorText(err) {
  if (err instanceof APIError) return err.status === 401 ? 'The server refused the token.' : err.message;
  return err && err.message ? err.message : String(err);
}

let unauthorized = () => {};

// onUnauthorized sets what happens when the server refuses the token.
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function headers(extra) {
  const h = { ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// api calls the server and returns {status, data, headers}. Statuses in
// opts.accept are answers too (a sync invocation that failed is a 502
// carrying its record).
export async function api(method, path, body, opts = {}) {
  const init = { method, headers: headers(opts.headers), signal: opts.signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (resp.status === 401) {
    unauthorized();
    throw new APIError(401, (data && data.error) || 'the server wants its API token', data);
  }
  if (!resp.ok && !(opts.accept || []).includes(resp.status)) {
    throw new APIError(resp.status, (data && data.error) || text || resp.statusText, data);
  }
  return { status: resp.status, data: data ?? text, headers: resp.headers };
}

export const get = (path, opts) => api('GET', path, undefined, opts);

// metrics returns /metrics in Prometheus' text format.
export async function metrics(signal) {
  const resp = await fetch('/metrics', { headers: headers(), signal });
  if (resp.status === 401) unauthorized();
  if (!resp.ok) throw new APIError(resp.status, `metrics: ${resp.status}`);
  return resp.text();
}

// events reads /events (Server-Sent Events) with fetch, since EventSource
// cannot send the token, and calls onEvent with each event and onID with
// each id, the event's seq. It ends when the stream does: the caller
// reconnects from the last id.
export async function events(query, lastID, { signal, onEvent, onID, onOpen }) {
  const extra = { Accept: 'text/event-stream' };
  if (lastID) extra['Last-Event-ID'] = String(lastID);
  const resp = await fetch(`/events${query ? `?${query}` : ''}`, { headers: headers(extra), signal, cache: 'no-store' });
  if (resp.status === 401) {
    unauthorized();
    throw new APIError(401, 'the server wants its API token');
  }
  if (!resp.ok) {
    const text = await resp.text();
    let msg = text;
    try {
      msg = JSON.parse(text).error;
    } catch {
      // not JSON: the text is the message
    }
    throw new APIError(resp.status, msg || resp.statusText);
  }
  if (onOpen) onOpen();
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let id = null;
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (name === 'id') id = val;
        else if (name === 'data') data.push(val);
      }
      if (data.length) onEvent(JSON.parse(data.join('\n')));
      if (id !== null) onID(id);
    }
  }
}
