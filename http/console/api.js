// The server's API as the console calls it: the token from this tab's
// sessionStorage in the Authorization header (never in a URL or a cookie),
// errors as APIError with the server's message (and the setting it is
// about, field, when the server names one).

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
    this.field = (body && typeof body.field === 'string' && body.field) || '';
  }
}

// errorText is what the user is shown of an error.
export function errorText(err) {
  if (err instanceof APIError) return err.status === 401 ? 'The server refused the token.' : err.message;
  return err && err.message ? err.message : String(err);
}

let unauthorized = () => {};

// onUnauthorized sets what happens when the server refuses a request; it
// is given the token the request carried.
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function headers(extra, t) {
  const h = { ...extra };
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// api calls the server and returns {status, data, headers}. Statuses in
// opts.accept are answers too (a sync invocation that failed is a 502
// carrying its record).
export async function api(method, path, body, opts = {}) {
  const sent = token.get();
  const init = { method, headers: headers(opts.headers, sent), signal: opts.signal };
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
    unauthorized(sent);
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
  const sent = token.get();
  const resp = await fetch('/metrics', { headers: headers({}, sent), signal });
  if (resp.status === 401) unauthorized(sent);
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
  const sent = token.get();
  const resp = await fetch(`/events${query ? `?${query}` : ''}`, { headers: headers(extra, sent), signal, cache: 'no-store' });
  if (resp.status === 401) {
    unauthorized(sent);
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
  const frames = new SSEFrames();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      for (const { id, data } of frames.push(value)) {
        // The id moves on even when an event cannot be shown, so that a
        // reconnect never asks for it again.
        try {
          if (data !== null) onEvent(JSON.parse(data));
        } finally {
          if (id !== null) onID(id);
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // whatever ended the read, the response goes
  }
}

// SSEFrames splits a stream's text into frames ({id, data}), whatever
// the chunks and whichever line ends (LF, CRLF, CR) it uses.
export class SSEFrames {
  constructor() {
    this.rest = '';
  }

  push(text) {
    let buf = this.rest + text;
    // A CR at the end may be half of a CRLF: wait for the next chunk.
    const held = buf.endsWith('\r') ? '\r' : '';
    if (held) buf = buf.slice(0, -1);
    buf = buf.replace(/\r\n?/g, '\n');
    const out = [];
    let at = 0;
    for (let end; (end = buf.indexOf('\n\n', at)) >= 0; at = end + 2) {
      let id = null;
      const data = [];
      for (const line of buf.slice(at, end).split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const name = i < 0 ? line : line.slice(0, i);
        const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (name === 'id') id = val;
        else if (name === 'data') data.push(val);
      }
      out.push({ id, data: data.length ? data.join('\n') : null });
    }
    this.rest = buf.slice(at) + held;
    return out;
  }
}
