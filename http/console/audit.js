// Audit: where the log's hash chain ends, and a verification of it from
// the first event, run by the server while it goes on appending.

import { api, get, errorText } from './api.js';
import { h, replace, fmtMS, fmtTime } from './dom.js';

export async function auditView(_, ctx) {
  const { data: head } = await get('/audit', { signal: ctx.signal });
  const headSeq = h('dd', { id: 'audit-seq' }, String(head.head_seq));
  const headHash = h('dd', null, h('code', { id: 'audit-hash', class: 'hash' }, head.head_hash));
  const result = h('div', { id: 'audit-result', role: 'status' });
  const button = h('button', { type: 'button', id: 'audit-verify' }, 'Verify the log');
  const refresh = async () => {
    const { data } = await get('/audit', { signal: ctx.signal });
    replace(headSeq, String(data.head_seq));
    replace(headHash, h('code', { id: 'audit-hash', class: 'hash' }, data.head_hash));
  };
  button.addEventListener('click', async () => {
    button.disabled = true;
    replace(result, h('p', { class: 'loading' }, 'Verifying every event from seq 1…'));
    try {
      const { data: v } = await api('POST', '/audit/verify', undefined, { signal: ctx.signal });
      replace(result, v.ok
        ? h('p', { class: 'ok', dataset: { ok: 'true' } }, `Verified: ${v.events} events, ${v.checked}; the chain ends in `, h('code', { class: 'hash' }, v.head_hash), ` (${fmtMS(v.duration_ms)}, at ${fmtTime(v.verified_at)}).`)
        : h('p', { class: 'error', dataset: { ok: 'false' } }, `Verification FAILED: ${v.error}`));
      await refresh();
    } catch (err) {
      if (!ctx.signal.aborted) replace(result, h('p', { class: 'error', role: 'alert' }, errorText(err)));
    } finally {
      button.disabled = false;
    }
  });
  return h('section', { class: 'panel' },
    h('h1', null, 'Audit'),
    h('p', null, 'Every event is chained to the one before it by a SHA-256 hash. Verifying reads the log from the first event while the server runs: seqs without gaps, each event decoding and extending the chain to the head. ',
      'The file\'s pages, and the views against a rebuild, are checked offline with ', h('code', null, 'minilambda audit --db FILE'), '.'),
    h('dl', { class: 'facts' }, h('dt', null, 'Head seq'), headSeq, h('dt', null, 'Head hash'), headHash),
    h('div', { class: 'actions' }, button), result);
}
