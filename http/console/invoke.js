// Invoke: a JSON editor for the event, sync or async, and the outcome:
// result, logs, and a link to the invocation's timeline. An async
// invocation is followed until it ends.

import { api, get, errorText } from './api.js';
import { h, replace, field, showFieldError, fmtMS, pretty, statusBadge } from './dom.js';

const sleep = (ms, signal) => new Promise((resolve) => {
  const t = setTimeout(resolve, ms);
  signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
});

// outcome shows an invocation record.
export function outcome(inv) {
  return h('div', { class: 'outcome', id: 'outcome', dataset: { invocation: inv.invocation_id, status: inv.status } },
    h('p', { class: 'meta' }, statusBadge(inv.status), ' ',
      inv.duration !== undefined && inv.status !== 'PENDING' && inv.status !== 'RUNNING' ? fmtMS(inv.duration) : '',
      inv.attempts > 1 ? ` · ${inv.attempts} attempts` : '',
      inv.error ? ` · ${inv.error_type || 'error'}: ${inv.error}` : '',
      ' · ', h('a', { href: `#/invocations/${encodeURIComponent(inv.invocation_id)}`, id: 'timeline-link' }, 'timeline')),
    h('h3', null, 'Result'),
    h('pre', { class: 'result', id: 'result' }, pretty(inv.result)),
    h('h3', null, 'Logs'),
    h('pre', { class: 'logs', id: 'logs' }, inv.logs || ''));
}

export async function invokeView([name], ctx) {
  const { data } = await get('/functions', { signal: ctx.signal });
  const fns = Array.isArray(data) ? data : [];
  if (!fns.length) {
    return h('section', { class: 'panel' }, h('h1', null, 'Invoke'), h('p', { class: 'empty' }, 'No functions yet. ', h('a', { href: '#/functions' }, 'Register one'), '.'));
  }
  const select = h('select', { id: 'invoke-function' }, fns.map((fn) => h('option', { value: fn.name, selected: fn.name === name }, fn.name)));
  select.addEventListener('change', () => history.replaceState(null, '', `#/invoke/${encodeURIComponent(select.value)}`));
  const editor = h('textarea', { id: 'invoke-event', class: 'code', rows: 10, spellcheck: 'false', value: '{\n  \n}' });
  const sync = h('input', { type: 'radio', name: 'kind', value: 'sync', id: 'kind-sync', checked: true });
  const async = h('input', { type: 'radio', name: 'kind', value: 'async', id: 'kind-async' });
  const submit = h('button', { type: 'submit', id: 'invoke-submit' }, 'Invoke');
  const out = h('div', { id: 'invoke-out' });

  // The event must be JSON before it goes: checked as it is typed.
  const check = () => {
    try {
      JSON.parse(editor.value);
      showFieldError(editor, '');
      submit.disabled = false;
      return true;
    } catch (err) {
      showFieldError(editor, `Not JSON: ${err.message}`);
      submit.disabled = true;
      return false;
    }
  };
  editor.addEventListener('input', check);
  const format = h('button', { type: 'button', class: 'secondary' }, 'Format');
  format.addEventListener('click', () => {
    if (check()) editor.value = JSON.stringify(JSON.parse(editor.value), null, 2);
  });

  const form = h('form', { novalidate: true, id: 'invoke-form' },
    field('Function', select),
    field('Event (JSON)', editor),
    h('fieldset', { class: 'inline' }, h('legend', null, 'Invocation'),
      h('label', { for: 'kind-sync' }, sync, ' Sync: wait for the result'),
      h('label', { for: 'kind-async' }, async, ' Async: queue it')),
    h('div', { class: 'actions' }, submit, format));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!check()) return;
    const event = JSON.parse(editor.value);
    const path = `/invoke/${encodeURIComponent(select.value)}${async.checked ? '/async' : ''}`;
    submit.disabled = true;
    replace(out, h('p', { class: 'loading' }, async.checked ? 'Queueing…' : 'Running…'));
    try {
      const { data: inv } = await api('POST', path, { event }, { accept: [502, 504], signal: ctx.signal });
      if (!async.checked) {
        replace(out, outcome(inv));
        return;
      }
      replace(out, h('p', { class: 'meta' }, `Queued as ${inv.invocation_id}; waiting for it to end…`));
      for (let wait = 200; !ctx.signal.aborted; wait = Math.min(wait * 2, 2000)) {
        const { data: rec } = await get(`/invocations/${encodeURIComponent(inv.invocation_id)}`, { signal: ctx.signal });
        replace(out, outcome(rec));
        if (rec.status === 'COMPLETED' || rec.status === 'FAILED') break;
        await sleep(wait, ctx.signal);
      }
    } catch (err) {
      if (err.name !== 'AbortError') replace(out, h('p', { class: 'error', role: 'alert' }, errorText(err)));
    } finally {
      submit.disabled = false;
    }
  });
  return h('section', { class: 'panel' }, h('h1', null, 'Invoke'), form, out);
}
