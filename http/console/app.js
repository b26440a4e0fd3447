// The console's shell: the token dialog, the navigation and the router.
// Each view is a function (params, ctx) that returns the view's element;
// ctx.signal ends when the user leaves the view, which stops its streams
// and timers.

import { get, token, onUnauthorized, errorText } from './api.js';
import { h, replace } from './dom.js';
import { functionsView, editFunctionView } from './functions.js';
import { invokeView } from './invoke.js';
import { invocationsView, invocationView } from './invocations.js';
import { liveView } from './live.js';
import { chartsView } from './charts.js';
import { auditView } from './audit.js';
import { loadSchema } from './schema.js';

const routes = [
  [/^\/functions$/, functionsView, 'functions'],
  [/^\/functions\/([^/]+)\/edit$/, editFunctionView, 'functions'],
  [/^\/invoke(?:\/([^/]+))?$/, invokeView, 'invoke'],
  [/^\/invocations$/, invocationsView, 'invocations'],
  [/^\/invocations\/([^/]+)$/, invocationView, 'invocations'],
  [/^\/live$/, liveView, 'live'],
  [/^\/charts$/, chartsView, 'charts'],
  [/^\/audit$/, auditView, 'audit'],
];

const view = document.getElementById('view');
let leave = null;

// route shows the view the location's hash names: #/path?query.
async function route() {
  if (leave) leave.abort();
  leave = new AbortController();
  const ctx = { signal: leave.signal };
  const hash = location.hash.replace(/^#/, '') || '/functions';
  const [path, query] = hash.split('?');
  ctx.query = new URLSearchParams(query || '');
  for (const [re, fn, tab] of routes) {
    const m = path.match(re);
    if (!m) continue;
    for (const a of document.querySelectorAll('#nav a')) {
      a.classList.toggle('active', a.getAttribute('href') === `#/${tab}`);
    }
    replace(view, h('p', { class: 'loading' }, 'Loading…'));
    try {
      const params = m.slice(1).map((p) => (p === undefined ? undefined : decodeURIComponent(p)));
      const el = await fn(params, ctx);
      if (!ctx.signal.aborted) replace(view, el);
    } catch (err) {
      if (ctx.signal.aborted || err.name === 'AbortError') return;
      replace(view, h('div', { class: 'panel' }, h('h1', null, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, errorText(err))));
    }
    return;
  }
  replace(view, h('div', { class: 'panel' }, h('h1', null, 'Not found'), h('p', null, 'No view at ', h('code', null, hash), '.')));
}

// Token: asked for once, when the server first says 401, and kept in this
// tab's sessionStorage.
const dialog = document.getElementById('token-dialog');
const tokenInput = document.getElementById('token-input');
const tokenError = document.getElementById('token-error');
const forget = document.getElementById('forget-token');
let asking = false;

function askToken(message) {
  if (asking) return;
  asking = true;
  // Nothing the view does can work meanwhile: stop its streams and timers.
  if (leave) leave.abort();
  tokenError.textContent = message || '';
  tokenError.hidden = !message;
  tokenInput.value = '';
  dialog.showModal();
}

onUnauthorized((sent) => {
  // A request that went before the token changed says nothing of the new
  // one.
  if (sent !== token.get()) return;
  token.clear();
  forget.hidden = true;
  askToken(sent ? 'The server refused that token.' : '');
});

// Nothing works without a token: Escape does not dismiss the dialog, and
// should the browser close it anyway, it opens again.
dialog.addEventListener('cancel', (e) => e.preventDefault());
dialog.addEventListener('close', () => {
  if (asking) dialog.showModal();
});
document.getElementById('token-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const t = tokenInput.value.trim();
  if (!t) {
    tokenError.textContent = 'Enter the token the server was started with (MINILAMBDA_TOKEN).';
    tokenError.hidden = false;
    return;
  }
  token.set(t);
  asking = false;
  try {
    await get('/functions');
  } catch (err) {
    if (!asking) {
      // Not a refusal (that asks again): say what went wrong.
      asking = true;
      tokenError.textContent = errorText(err);
      tokenError.hidden = false;
    }
    return;
  }
  dialog.close();
  forget.hidden = false;
  route();
});

forget.addEventListener('click', () => {
  token.clear();
  forget.hidden = true;
  askToken('');
});

window.addEventListener('hashchange', route);
forget.hidden = token.get() === '';
// The server says whether it wants a token: ask before the first call
// rather than after a refusal.
// The event types come from the server too (schema.json), before any
// view shows an event.
Promise.all([
  fetch('config.json', { cache: 'no-store' }).then((r) => r.json()).catch(() => ({})),
  loadSchema().catch(() => {}),
]).then(([cfg]) => {
  if (cfg.token_required && !token.get()) askToken('');
  else route();
});
