// Building the page from nodes, never from markup: everything a user or a
// function supplied goes in as text. The server's Content-Security-Policy
// enforces it too (Trusted Types: an HTML sink throws).

const properties = new Set(['value', 'checked', 'selected', 'disabled', 'hidden', 'open', 'readOnly']);

// h returns a new element. attrs: "on<event>" handlers, "class",
// "dataset", a few properties, the rest attributes; children: nodes,
// strings (as text), arrays of them, or null.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (properties.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replace swaps el's children for new ones.
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { hour12: false });
}

// fmtClock is a time of day to the millisecond, for events close together.
export function fmtClock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleTimeString(undefined, { hour12: false, fractionalSecondDigits: 3 });
}

export function fmtMS(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60000).toFixed(1)} min`;
}

export function short(id, n = 12) {
  if (!id) return '';
  return id.length > n ? id.slice(0, n) + '…' : id;
}

// pretty shows a function's result: indented when it is JSON.
export function pretty(text) {
  if (text === undefined || text === null) return '';
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return String(text);
  }
}

export function statusBadge(status) {
  return h('span', { class: `badge status-${String(status).toLowerCase()}` }, status);
}

// field is a labelled input with a place for its error.
export function field(label, input, hint) {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, '-')}`;
  input.id = id;
  const err = h('p', { class: 'field-error', id: `${id}-error`, role: 'alert', hidden: true });
  input.setAttribute('aria-describedby', err.id);
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, hint ? h('p', { class: 'hint' }, hint) : null, err);
}

// showFieldError puts msg under input, or clears it when msg is empty.
export function showFieldError(input, msg) {
  const err = document.getElementById(`${input.id}-error`);
  if (!err) return;
  err.textContent = msg || '';
  err.hidden = !msg;
  if (msg) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}
