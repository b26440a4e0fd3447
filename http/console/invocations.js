// Invocations: the filterable, paged list, and one invocation with its
// timeline read from the event log.

import { get } from './api.js';
import { h, fmtTime, fmtClock, fmtMS, short, statusBadge } from './dom.js';
import { outcome } from './invoke.js';
import { typeOf } from './schema.js';

const statuses = ['', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED'];

function hashFor(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v) p.set(k, v);
  const s = p.toString();
  return `#/invocations${s ? `?${s}` : ''}`;
}

// toLocal and fromLocal convert between RFC 3339 and a datetime-local
// input's value, which is the browser's local time without a zone.
function toLocal(iso) {
  const d = new Date(iso);
  if (!iso || isNaN(d)) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function fromLocal(v) {
  const d = new Date(v);
  return v && !isNaN(d) ? d.toISOString() : '';
}

export async function invocationsView(_, ctx) {
  const q = ctx.query;
  const filter = {
    function: q.get('function') || '',
    status: q.get('status') || '',
    trace_id: q.get('trace_id') || '',
    after: q.get('after') || '',
    before: q.get('before') || '',
    limit: q.get('limit') || '20',
  };
  const cursor = q.get('cursor') || '';
  // The cursors of the pages before this one, for Previous.
  const back = (q.get('back') || '').split(',').filter(Boolean);
  const params = new URLSearchParams({ limit: filter.limit });
  for (const k of ['function', 'status', 'trace_id', 'after', 'before']) if (filter[k]) params.set(k, filter[k]);
  if (cursor) params.set('cursor', cursor);
  const [{ data: page }, { data: fns }] = await Promise.all([
    get(`/invocations?${params}`, { signal: ctx.signal }),
    get('/functions', { signal: ctx.signal }),
  ]);

  const fnSelect = h('select', { id: 'filter-function', name: 'function' },
    h('option', { value: '' }, 'All functions'),
    (Array.isArray(fns) ? fns : []).map((fn) => h('option', { value: fn.name, selected: fn.name === filter.function || fn.id === filter.function }, fn.name)));
  const statusSelect = h('select', { id: 'filter-status', name: 'status' },
    statuses.map((s) => h('option', { value: s, selected: s === filter.status }, s || 'Any status')));
  const trace = h('input', { id: 'filter-trace', name: 'trace_id', value: filter.trace_id, placeholder: 'trace id', autocomplete: 'off' });
  // From / before, in the browser's time zone; the API takes RFC 3339.
  const after = h('input', { id: 'filter-after', name: 'after', type: 'datetime-local', step: 1, value: toLocal(filter.after), title: 'requested at or after' });
  const before = h('input', { id: 'filter-before', name: 'before', type: 'datetime-local', step: 1, value: toLocal(filter.before), title: 'requested before' });
  const limit = h('select', { id: 'filter-limit', name: 'limit' }, ['20', '50', '100'].map((n) => h('option', { value: n, selected: n === filter.limit }, `${n} a page`)));
  const form = h('form', { class: 'filters', novalidate: true },
    fnSelect, statusSelect, trace, h('label', { for: 'filter-after' }, 'from'), after, h('label', { for: 'filter-before' }, 'before'), before,
    limit, h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = hashFor({
      function: fnSelect.value, status: statusSelect.value, trace_id: trace.value.trim(),
      after: fromLocal(after.value), before: fromLocal(before.value), limit: limit.value,
    });
  });

  const invs = page.invocations || [];
  const rows = invs.map((inv) => h('tr', { dataset: { invocation: inv.invocation_id } },
    h('td', null, fmtTime(inv.created_at)),
    h('td', null, inv.function_name),
    h('td', null, statusBadge(inv.status)),
    h('td', { class: 'num' }, inv.status === 'COMPLETED' || inv.status === 'FAILED' ? fmtMS(inv.duration) : ''),
    h('td', null, inv.async ? 'async' : 'sync'),
    h('td', null, h('a', { href: `#/invocations/${encodeURIComponent(inv.invocation_id)}` }, h('code', null, inv.invocation_id)))));
  const table = invs.length
    ? h('table', { id: 'invocations' },
      h('thead', null, h('tr', null, ['Created', 'Function', 'Status', 'Duration', 'Kind', 'Invocation'].map((t) => h('th', null, t)))),
      h('tbody', null, rows))
    : h('p', { class: 'empty' }, 'No invocations match.');
  const pager = h('div', { class: 'pager' },
    back.length || cursor
      ? h('a', { class: 'button', id: 'page-prev', href: hashFor({ ...filter, cursor: back.at(-1) === '-' ? '' : back.at(-1), back: back.slice(0, -1).join(',') }) }, '← Newer')
      : null,
    page.next_cursor
      ? h('a', { class: 'button', id: 'page-next', href: hashFor({ ...filter, cursor: page.next_cursor, back: [...back, cursor || '-'].join(',') }) }, 'Older →')
      : null);
  return h('section', { class: 'panel' }, h('h1', null, 'Invocations'), form, table, pager);
}

// What a timeline entry says about its event, by type (named as the
// server's schema names them).
function describe(e) {
  const d = e.data || {};
  switch (e.type) {
    case typeOf('InvocationQueued'):
      return [d.async ? 'async' : 'sync', `function ${d.function_name} v${d.function_version}`,
        d.executed_version ? `version ${d.executed_version}` : '', d.alias ? `alias ${d.alias}` : '',
        d.trace_id ? `trace ${d.trace_id}` : '', d.schedule_id ? `schedule ${d.schedule_id}` : ''];
    case typeOf('InvocationStarted'):
      return [`attempt ${d.attempt}`, d.container_id ? `container ${short(d.container_id)}` : '', d.image_digest ? `image ${short(d.image_digest, 19)}` : ''];
    case typeOf('InvocationCompleted'):
    case typeOf('InvocationFailed'):
    case typeOf('InvocationTimedOut'):
      return [`attempt ${d.attempt}`, `ran ${fmtMS(d.duration_ms)}`, d.exit_code !== undefined ? `exit ${d.exit_code}` : '',
        d.init_duration ? `init ${fmtMS(d.init_duration)}` : '', d.error_type ? `${d.error_type}: ${d.error || ''}` : ''];
    case typeOf('InvocationRetried'):
      return [`attempt ${d.attempt} failed`, d.reason, d.duration_ms ? `ran ${fmtMS(d.duration_ms)}` : '', `next not before ${fmtClock(d.not_before)}`];
    case typeOf('InvocationCallback'):
      return [`callback ${d.url}`, d.status_code ? `HTTP ${d.status_code}` : '', `${d.attempts} attempts`, d.error || ''];
    default:
      return [];
  }
}

function timeline(events) {
  if (!events.length) return h('p', { class: 'empty' }, 'No events.');
  const t0 = Date.parse(events[0].time);
  let prev = t0;
  return h('ol', { class: 'timeline', id: 'timeline' }, events.map((e) => {
    const t = Date.parse(e.time);
    const item = h('li', { class: `ev ev-${e.type.split('.').pop()}`, dataset: { type: e.type, seq: e.seq } },
      h('div', { class: 'ev-head' },
        h('span', { class: 'ev-type' }, e.type.slice(e.type.indexOf('.') + 1)), // "queued": the group goes without saying
        h('span', { class: 'ev-at' }, `+${fmtMS(t - t0) || '0 ms'}`),
        t !== prev ? h('span', { class: 'ev-gap' }, `(${fmtMS(t - prev)} after the previous)`) : null,
        h('span', { class: 'ev-seq' }, `seq ${e.seq}`)),
      h('div', { class: 'ev-body' }, describe(e).filter(Boolean).join(' · ')),
      h('div', { class: 'ev-meta' }, fmtTime(e.time), ' · hash ', h('code', null, short(e.hash, 16))));
    prev = t;
    return item;
  }));
}

export async function invocationView([id], ctx) {
  const path = `/invocations/${encodeURIComponent(id)}`;
  const [{ data: inv }, { data: tl }] = await Promise.all([
    get(path, { signal: ctx.signal }),
    get(`${path}/events`, { signal: ctx.signal }),
  ]);
  const facts = [
    ['Function', `${inv.function_name} (version ${inv.function_version}, ${inv.executed_version || '$LATEST'})`],
    ['Kind', inv.async ? 'async' : 'sync'],
    ['Attempts', inv.attempts],
    ['Created', fmtTime(inv.created_at)],
    ['Started', fmtTime(inv.started_at)],
    ['Ended', fmtTime(inv.completed_at)],
    ['Container', inv.container_id || ''],
    ['Image digest', inv.image_digest || ''],
    ['Trace', inv.trace_id || ''],
  ].filter(([, v]) => v !== '' && v !== undefined);
  return h('div', null,
    h('section', { class: 'panel' },
      h('h1', null, 'Invocation ', h('code', null, inv.invocation_id)),
      h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, String(v))])),
      outcome(inv)),
    h('section', { class: 'panel' }, h('h2', null, 'Timeline from the event log'), timeline(tl.events || [])));
}
