// Live: the event log as it is appended, from /events. The view starts a
// little before the head, and reconnects from the last id it has, so that
// it neither misses nor repeats an event.

import { get, events, errorText } from './api.js';
import { h, replace, fmtClock, short } from './dom.js';
import { typeOf, groupOf } from './schema.js';

const keep = 500; // rows shown at most
const backlog = 25; // events shown from before the view opened

export async function liveView(_, ctx) {
  const [{ data: head }, { data: fns }] = await Promise.all([get('/audit', { signal: ctx.signal }), get('/functions', { signal: ctx.signal })]);
  // Events name functions by id; the table shows names, learnt from the
  // list and from the registrations and renames streamed.
  const names = new Map((Array.isArray(fns) ? fns : []).map((fn) => [fn.id, fn.name]));
  let last = Math.max(0, head.head_seq - backlog);
  let paused = false;
  let wait = 500; // ms before the next reconnect
  let count = 0;
  const state = h('span', { class: 'badge', id: 'live-state' }, 'connecting');
  const counter = h('span', { class: 'meta', id: 'live-count' }, '');
  const typeFilter = h('input', { id: 'live-type', placeholder: 'filter: type or function', autocomplete: 'off' });
  const pause = h('button', { type: 'button', class: 'secondary', id: 'live-pause' }, 'Pause');
  const body = h('tbody', { id: 'live-rows' });
  const held = [];

  const matches = (row) => {
    const f = typeFilter.value.trim();
    return !f || row.dataset.type.includes(f) || (row.dataset.function || '').includes(f) || (row.dataset.name || '').includes(f);
  };
  typeFilter.addEventListener('input', () => {
    for (const row of body.children) row.hidden = !matches(row);
  });
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) held.splice(0).forEach(show);
  });

  function show(row) {
    row.hidden = !matches(row);
    body.prepend(row);
    while (body.children.length > keep) body.lastElementChild.remove();
  }

  function onEvent(e) {
    wait = 500; // the stream works: back off from scratch next time
    count++;
    // The function events (registered, updated, ...) carry its name.
    const fnEvent = groupOf(e.type) === groupOf(typeOf('FunctionRegistered') || '');
    if (e.function_id && e.data && typeof e.data.name === 'string' && fnEvent) names.set(e.function_id, e.data.name);
    const fname = names.get(e.function_id) || (e.data && e.data.function_name) || '';
    counter.textContent = `${count} events · last seq ${e.seq}`;
    const row = h('tr', { dataset: { seq: e.seq, type: e.type, function: e.function_id || '', name: fname, invocation: e.invocation_id || '', time: e.time, received: Date.now() } },
      h('td', { class: 'num' }, e.seq),
      h('td', null, fmtClock(e.time)),
      h('td', null, h('span', { class: `type type-${e.type.split('.')[0]}` }, e.type)),
      h('td', { title: e.function_id || '' }, fname || (e.function_id ? h('code', null, short(e.function_id, 14)) : '')),
      h('td', null, e.invocation_id ? h('a', { href: `#/invocations/${encodeURIComponent(e.invocation_id)}` }, h('code', null, e.invocation_id)) : ''),
      h('td', null, h('code', { class: 'hash' }, short(e.hash, 12))));
    if (!paused) show(row);
    else if (held.push(row) > keep) held.shift();
  }

  (async () => {
    while (!ctx.signal.aborted) {
      let opened = 0;
      try {
        await events(last ? '' : 'from=1', last, {
          signal: ctx.signal,
          onOpen: () => {
            opened = Date.now();
            replace(state, 'live');
            state.className = 'badge status-completed';
          },
          onEvent,
          onID: (id) => { last = Number(id); },
        });
      } catch (err) {
        if (ctx.signal.aborted) return;
        state.title = errorText(err);
      }
      if (ctx.signal.aborted) return;
      // A stream that stayed up a while ended of itself (a restart, a
      // proxy): reconnect soon. One that keeps ending at once backs off.
      if (opened && Date.now() - opened > 10000) wait = 500;
      replace(state, 'reconnecting');
      state.className = 'badge status-pending';
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(wait * 2, 10000);
    }
  })();

  return h('section', { class: 'panel' },
    h('h1', null, 'Live events ', state),
    h('p', { class: 'meta' }, 'The event log as it is appended: every registration and every invocation state change, newest first.'),
    h('div', { class: 'filters' }, typeFilter, pause, counter),
    h('table', { id: 'live' },
      h('thead', null, h('tr', null, ['Seq', 'Time', 'Type', 'Function', 'Invocation', 'Hash'].map((t) => h('th', null, t)))),
      body));
}
