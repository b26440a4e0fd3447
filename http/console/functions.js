// Functions: the list, the register form, the edit form, delete. The
// server validates (one place for each rule); its message goes under the
// setting its error's field names.

import { api, get, errorText } from './api.js';
import { h, replace, field, showFieldError, fmtTime } from './dom.js';

// The settings the forms edit, with the JSON member each one is.
const settings = [
  { key: 'name', label: 'Name', type: 'text', hint: 'Letters, digits, _ . -' },
  { key: 'image', label: 'Image', type: 'text', hint: 'A tag or id the engine has, e.g. hello:latest' },
  { key: 'mode', label: 'Mode', type: 'select', options: ['cold', 'hot', 'lambda'] },
  { key: 'timeout', label: 'Timeout (s)', type: 'number' },
  { key: 'memory_mb', label: 'Memory (MiB)', type: 'number' },
  { key: 'cpus', label: 'CPUs', type: 'number', step: 'any' },
  { key: 'concurrency', label: 'Concurrency', type: 'number' },
  { key: 'max_attempts', label: 'Max attempts (async)', type: 'number' },
  { key: 'env', label: 'Environment', type: 'env', hint: 'One KEY=value a line' },
  { key: 'description', label: 'Description', type: 'text' },
];

function input(s, value) {
  const id = `fn-${s.key}`;
  if (s.type === 'select') {
    return h('select', { id, name: s.key }, s.options.map((o) => h('option', { value: o, selected: o === (value || s.options[0]) }, o)));
  }
  if (s.type === 'env') {
    const text = value ? Object.entries(value).map(([k, v]) => `${k}=${v}`).join('\n') : '';
    return h('textarea', { id, name: s.key, rows: 3, spellcheck: 'false', value: text, dataset: { initial: text } });
  }
  return h('input', { id, name: s.key, type: s.type, step: s.step, value: value === undefined || value === null ? '' : String(value), autocomplete: 'off' });
}

// readForm returns the settings the form holds, leaving out empty
// numbers (the server's default, or the current value when editing).
function readForm(form) {
  const body = {};
  for (const s of settings) {
    const el = form.elements[s.key];
    const v = el.value;
    if (s.type === 'number') {
      if (v.trim() !== '') body[s.key] = Number(v);
    } else if (s.type === 'env') {
      // Unchanged, it is not sent: a value with a line break in it (which
      // the API allows) would not survive the one-a-line form.
      if (v === el.dataset.initial && v !== '') continue;
      const env = {};
      for (const line of v.split('\n')) {
        if (!line.trim()) continue;
        const i = line.indexOf('=');
        if (i <= 0) throw Object.assign(new Error(`"${line}" is not KEY=value`), { field: s.key });
        env[line.slice(0, i).trim()] = line.slice(i + 1);
      }
      body[s.key] = env;
    } else if (v !== '' || s.key === 'description') {
      body[s.key] = v;
    }
  }
  return body;
}

// functionForm returns a form for settings fn (empty to register); submit
// is called with the body and returns the function saved.
function functionForm(fn, submitLabel, submit) {
  const inputs = {};
  const general = h('p', { class: 'error', role: 'alert', id: 'form-error', hidden: true });
  const form = h('form', { class: 'grid-form', novalidate: true, id: 'function-form' },
    settings.map((s) => {
      inputs[s.key] = input(s, fn ? fn[s.key] : undefined);
      return field(s.label, inputs[s.key], s.hint);
    }),
    general,
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'function-submit' }, submitLabel)));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of Object.values(inputs)) showFieldError(el, '');
    general.hidden = true;
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await submit(readForm(form));
    } catch (err) {
      const msg = errorText(err);
      // The setting the server named ("env", or "env.KEY" for a value),
      // when the form has it.
      const el = err.field ? inputs[err.field] || inputs[err.field.split('.')[0]] : null;
      if (el) {
        showFieldError(el, msg);
        el.focus();
      } else {
        general.textContent = msg;
        general.hidden = false;
      }
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

// codeCell shows what a function runs: its image, or, for a zip package,
// the package type, runtime and code hash (Lambda's CodeSha256) above the
// image the server built from it.
function codeCell(fn) {
  if (!fn.package) return h('td', null, h('code', null, fn.image));
  const p = fn.package;
  return h('td', { class: 'package' },
    h('span', { class: 'badge', title: `${p.code_size} bytes, on ${p.base_image}` }, `Zip · ${p.runtime}`), ' ',
    h('code', { title: 'CodeSha256' }, `sha256 ${p.code_sha256.slice(0, 12)}…`),
    h('br'), h('code', { class: 'meta' }, fn.image));
}

// packageMeta is the edit view's line about a zip package.
function packageMeta(fn) {
  if (!fn.package) return `package type Image · ${fn.image}`;
  const p = fn.package;
  return `package type Zip · runtime ${p.runtime} on ${p.base_image} · CodeSha256 ${p.code_sha256} · ${p.code_size} bytes`;
}

// deployMeta is the edit view's line about what the Lambda API's deploy
// operations set: tags, the function URL's auth, the async destinations.
function deployMeta(fn) {
  const tags = Object.entries(fn.tags || {}).map(([k, v]) => `${k}=${v}`).join(', ');
  const d = fn.destinations || {};
  return [
    `tags ${tags || 'none'}`,
    `URL ${fn.http_trigger ? `/hooks/${fn.name}/ (auth ${fn.http_trigger.auth})` : 'none'}`,
    `on success → ${d.on_success || 'nothing'}`,
    `on failure → ${d.on_failure || 'nothing'}`,
  ].join(' · ');
}

export async function functionsView(_, ctx) {
  const { data } = await get('/functions', { signal: ctx.signal });
  const fns = Array.isArray(data) ? data : [];
  const rows = fns.map((fn) => {
    const del = h('button', { type: 'button', class: 'danger', dataset: { action: 'delete', name: fn.name } }, 'Delete');
    del.addEventListener('click', async () => {
      if (del.dataset.armed !== 'yes') {
        del.dataset.armed = 'yes';
        del.textContent = 'Confirm delete';
        return;
      }
      del.disabled = true;
      try {
        await api('DELETE', `/functions/${encodeURIComponent(fn.id)}`);
        row.remove();
      } catch (err) {
        del.disabled = false;
        del.textContent = 'Delete';
        del.dataset.armed = '';
        row.after(h('tr', { class: 'row-error' }, h('td', { colspan: 7, class: 'error', role: 'alert' }, errorText(err))));
      }
    });
    const row = h('tr', { dataset: { function: fn.name } },
      h('td', null, h('a', { href: `#/invocations?function=${encodeURIComponent(fn.name)}` }, fn.name)),
      codeCell(fn),
      h('td', null, fn.mode || 'cold'),
      h('td', { class: 'num' }, `${fn.timeout} s`),
      h('td', { class: 'num' }, `${fn.memory_mb} MiB`),
      h('td', null, fmtTime(fn.updated_at)),
      h('td', { class: 'row-actions' },
        h('a', { class: 'button', href: `#/invoke/${encodeURIComponent(fn.name)}` }, 'Invoke'),
        h('a', { class: 'button', href: `#/functions/${encodeURIComponent(fn.name)}/edit` }, 'Edit'),
        del));
    return row;
  });
  const table = fns.length
    ? h('table', { id: 'functions' },
      h('thead', null, h('tr', null, ['Name', 'Code', 'Mode', 'Timeout', 'Memory', 'Updated', ''].map((t) => h('th', null, t)))),
      h('tbody', null, rows))
    : h('p', { class: 'empty' }, 'No functions yet: register one below.');
  const form = functionForm(null, 'Register', async (body) => {
    await api('POST', '/functions', body);
    location.hash = '#/functions';
    window.dispatchEvent(new HashChangeEvent('hashchange')); // same hash: show the list again
  });
  return h('div', null,
    h('section', { class: 'panel' }, h('h1', null, 'Functions'), table),
    h('section', { class: 'panel' }, h('h2', null, 'Register a function'), form));
}

export async function editFunctionView([name], ctx) {
  const { data: fn } = await get(`/functions/${encodeURIComponent(name)}`, { signal: ctx.signal });
  const saved = h('p', { class: 'ok', role: 'status', id: 'saved', hidden: true });
  const form = functionForm(fn, 'Save', async (body) => {
    const { data } = await api('PUT', `/functions/${encodeURIComponent(fn.id)}`, body);
    replace(saved, `Saved: version ${data.version}.`);
    saved.hidden = false;
    if (data.name !== name) location.hash = `#/functions/${encodeURIComponent(data.name)}/edit`;
  });
  return h('section', { class: 'panel' },
    h('h1', null, 'Edit ', h('code', null, fn.name)),
    h('p', { class: 'meta' }, `id ${fn.id} · version ${fn.version} · registered ${fmtTime(fn.created_at)}`),
    h('p', { class: 'meta', id: 'package' }, packageMeta(fn)),
    h('p', { class: 'meta', id: 'deploy' }, deployMeta(fn)),
    form, saved,
    h('p', null, h('a', { href: '#/functions' }, '← Functions')));
}
