// Charts from the server's own metrics (/metrics, Prometheus' text
// format), sampled every few seconds while the view is open: invocations
// per second by status, duration percentiles, how containers were had
// (cold, prestarted, warm), and the async queue's depth.

import { metrics, errorText } from './api.js';
import { h, replace } from './dom.js';

const every = 2000; // ms between samples
const span = 90; // samples kept: three minutes
const pctWindow = 5; // samples percentiles are taken over

const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];

// parseMetrics reads the text format into {name, labels, value} samples.
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

// sumBy adds up a metric's samples by one label.
function sumBy(samples, name, label) {
  const out = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = label ? s.labels[label] : '';
    out[k] = (out[k] || 0) + s.value;
  }
  return out;
}

// quantile estimates the q-quantile from cumulative bucket counts, as
// Prometheus' histogram_quantile does: linear within the bucket.
export function quantile(q, buckets) {
  const bs = Object.entries(buckets).map(([le, n]) => [le === '+Inf' ? Infinity : Number(le), n]).sort((a, b) => a[0] - b[0]);
  if (!bs.length) return null;
  const total = bs[bs.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, n] of bs) {
    if (n >= rank) {
      if (le === Infinity) return lower;
      return lower + (le - lower) * ((rank - below) / Math.max(n - below, 1e-9));
    }
    lower = le;
    below = n;
  }
  return lower;
}

// A Sampler keeps the last span snapshots and derives the series.
class Sampler {
  constructor() {
    this.snaps = [];
  }

  add(text, at) {
    const s = parseMetrics(text);
    this.snaps.push({
      at,
      status: sumBy(s, 'minilambda_invocations_total', 'status'),
      starts: sumBy(s, 'minilambda_container_starts_total', 'kind'),
      buckets: sumBy(s, 'minilambda_invocation_duration_seconds_bucket', 'le'),
      queue: sumBy(s, 'minilambda_async_queue_depth', '')[''] || 0,
      inFlight: sumBy(s, 'minilambda_invocations_in_flight', '')[''] || 0,
    });
    if (this.snaps.length > span + pctWindow) this.snaps.shift();
  }

  // rates returns, for each key of a counter map, its per-second rate
  // between consecutive snapshots (a restarted server's counters start
  // again from zero).
  rates(pick, keys) {
    const out = Object.fromEntries(keys.map((k) => [k, []]));
    for (let i = 1; i < this.snaps.length; i++) {
      const a = pick(this.snaps[i - 1]);
      const b = pick(this.snaps[i]);
      const dt = (this.snaps[i].at - this.snaps[i - 1].at) / 1000;
      for (const k of keys) {
        let d = (b[k] || 0) - (a[k] || 0);
        if (d < 0) d = b[k] || 0;
        out[k].push(dt > 0 ? d / dt : 0);
      }
    }
    for (const k of keys) out[k] = out[k].slice(-span);
    return out;
  }

  percentiles(qs) {
    const out = Object.fromEntries(qs.map((q) => [q, []]));
    for (let i = 1; i < this.snaps.length; i++) {
      let a = this.snaps[Math.max(0, i - pctWindow)].buckets;
      const b = this.snaps[i].buckets;
      // Fewer observations than before: the server restarted, and its
      // histogram started again from nothing.
      if ((b['+Inf'] || 0) < (a['+Inf'] || 0)) a = {};
      const d = {};
      for (const k of Object.keys(b)) d[k] = b[k] - (a[k] || 0);
      for (const q of qs) {
        const v = quantile(q, d);
        out[q].push(v === null ? null : v * 1000);
      }
    }
    for (const q of qs) out[q] = out[q].slice(-span);
    return out;
  }

  gauge(pick) {
    return this.snaps.slice(1).map(pick).slice(-span);
  }
}

// lineChart draws series ({label, values}) on a canvas, newest at the
// right, with a legend of the latest values in the page as text.
function lineChart(canvas, legend, series, unit) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 480;
  const hgt = canvas.clientHeight || 180;
  canvas.width = w * dpr;
  canvas.height = hgt * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, hgt);
  const left = 48;
  const bottom = hgt - 20;
  const top = 8;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = max > 0 ? niceCeil(max) : 1;
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#666';
  g.strokeStyle = '#e3e3e3';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(w - 4, y);
    g.stroke();
    g.fillText(fmt(max * i / 4), 4, y + 4);
  }
  g.fillText(`-${Math.round((span * every) / 60000)} min`, left, hgt - 4);
  g.fillText('now', w - 28, hgt - 4);
  const x = (i) => left + ((w - 4 - left) * (i + span - maxLen(series))) / (span - 1);
  series.forEach((s, n) => {
    g.strokeStyle = colors[n % colors.length];
    g.lineWidth = 2;
    g.beginPath();
    let pen = false;
    s.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      const y = bottom - ((bottom - top) * v) / max;
      if (pen) g.lineTo(x(i), y);
      else g.moveTo(x(i), y);
      pen = true;
    });
    g.stroke();
    // The latest value as a dot, so that a series of one sample shows.
    const i = s.values.length - 1;
    if (i >= 0 && s.values[i] !== null) {
      g.fillStyle = colors[n % colors.length];
      g.beginPath();
      g.arc(x(i), bottom - ((bottom - top) * s.values[i]) / max, 3, 0, 2 * Math.PI);
      g.fill();
    }
  });
  replace(legend, series.map((s, n) => {
    const latest = [...s.values].reverse().find((v) => v !== null);
    return h('li', { dataset: { series: s.label } },
      h('span', { class: `swatch swatch-${n % colors.length}` }), `${s.label}: `,
      h('strong', null, latest === undefined ? '–' : `${fmt(latest)} ${unit}`));
  }));
}

const maxLen = (series) => Math.max(1, ...series.map((s) => s.values.length));

function niceCeil(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmt(v) {
  if (v === 0) return '0';
  if (Math.abs(v) >= 100) return String(Math.round(v));
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function chartPanel(id, title, note) {
  const canvas = h('canvas', { id: `chart-${id}`, class: 'chart', role: 'img', 'aria-label': title });
  const legend = h('ul', { class: 'legend', id: `legend-${id}` });
  return { el: h('figure', { class: 'chart-panel' }, h('figcaption', null, title, note ? h('span', { class: 'meta' }, ` ${note}`) : null), canvas, legend), canvas, legend };
}

export async function chartsView(_, ctx) {
  const sampler = new Sampler();
  const status = h('p', { class: 'meta', id: 'charts-status' }, 'Sampling /metrics every 2 s…');
  const charts = {
    rate: chartPanel('rate', 'Invocations per second', 'by status'),
    dur: chartPanel('duration', 'Duration', `percentiles over ${(pctWindow * every) / 1000} s`),
    starts: chartPanel('starts', 'Container starts per second', 'cold, prestarted, warm'),
    queue: chartPanel('queue', 'Async queue depth', 'and invocations in flight'),
  };
  const draw = () => {
    const r = sampler.rates((s) => s.status, ['COMPLETED', 'FAILED']);
    lineChart(charts.rate.canvas, charts.rate.legend, [{ label: 'completed', values: r.COMPLETED }, { label: 'failed', values: r.FAILED }], '/s');
    const p = sampler.percentiles([0.5, 0.9, 0.99]);
    lineChart(charts.dur.canvas, charts.dur.legend, [{ label: 'p50', values: p[0.5] }, { label: 'p90', values: p[0.9] }, { label: 'p99', values: p[0.99] }], 'ms');
    const st = sampler.rates((s) => s.starts, ['cold', 'prestarted', 'warm']);
    lineChart(charts.starts.canvas, charts.starts.legend, [{ label: 'cold', values: st.cold }, { label: 'prestarted', values: st.prestarted }, { label: 'warm', values: st.warm }], '/s');
    lineChart(charts.queue.canvas, charts.queue.legend, [{ label: 'queued', values: sampler.gauge((s) => s.queue) }, { label: 'in flight', values: sampler.gauge((s) => s.inFlight) }], '');
  };
  const sample = async () => {
    try {
      const at = Date.now(); // when the server was asked: its counters' time
      sampler.add(await metrics(ctx.signal), at);
      replace(status, `Sampling /metrics every ${every / 1000} s · ${sampler.snaps.length} samples`);
      draw();
    } catch (err) {
      if (!ctx.signal.aborted) replace(status, `Cannot read /metrics: ${errorText(err)}`);
    }
  };
  // One sample at a time, each 2 s after the last began (or ended, when
  // the server took longer than that), until the user leaves.
  const loop = async () => {
    const began = Date.now();
    await sample();
    if (!ctx.signal.aborted) setTimeout(loop, Math.max(0, every - (Date.now() - began)));
  };
  await loop();
  return h('section', { class: 'panel' },
    h('h1', null, 'Charts'), status,
    h('div', { class: 'charts' }, Object.values(charts).map((c) => c.el)));
}
