// Chart.js, registering only what the dashboard draws (keeps the bundle small). Time runs
// on a linear axis of real instants (every bucket present, empty ones as zero), labelled in
// the browser's zone; every axis has a title; events and bans get charts of their own.
import {
  Chart,
  LineController,
  BarController,
  LineElement,
  BarElement,
  PointElement,
  LinearScale,
  Filler,
  Legend,
  Tooltip,
} from 'chart.js';
import { fmtTime, zoneLabel } from './util.js';

Chart.register(LineController, BarController, LineElement, BarElement, PointElement, LinearScale, Filler, Legend, Tooltip);

const HOUR = 3600 * 1000;

function css(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function theme() {
  const fg = css('--muted', '#6b7383');
  const grid = css('--line', '#e3e7ee');
  Chart.defaults.color = fg;
  Chart.defaults.borderColor = grid;
  return { fg, grid };
}

/** Fills a series to one point per bucket of `step` ms from `from` to `to` (inclusive). */
export function fillSeries(points, from, to, step, value) {
  const byT = new Map();
  for (const p of points) {
    const t = Math.floor(new Date(p.t).getTime() / step) * step;
    byT.set(t, (byT.get(t) || 0) + value(p));
  }
  const out = [];
  for (let t = Math.floor(from / step) * step; t <= to; t += step) out.push({ x: t, y: byT.get(t) || 0 });
  return out;
}

const TICK_STEPS = [1, 2, 3, 6, 12, 24, 48, 7 * 24, 14 * 24].map((h) => h * HOUR);

/**
 * Ticks on whole hours (or local midnights) of the browser's zone, at most `max` of them
 * within `[from, to]`.
 */
export function timeTicks(from, to, max = 7) {
  const step = TICK_STEPS.find((s) => (to - from) / s <= max) || TICK_STEPS[TICK_STEPS.length - 1];
  const d = new Date(from);
  d.setMinutes(0, 0, 0);
  if (step >= 24 * HOUR) d.setHours(0);
  else d.setHours(Math.ceil(d.getHours() / (step / HOUR)) * (step / HOUR));
  const out = [];
  for (let t = d.getTime(); t <= to; ) {
    if (t >= from) out.push(t);
    const n = new Date(t);
    if (step >= 24 * HOUR) n.setDate(n.getDate() + step / (24 * HOUR));
    else n.setHours(n.getHours() + step / HOUR);
    t = n.getTime();
  }
  return { step, ticks: out };
}

function timeAxis(step, from, to) {
  return {
    type: 'linear',
    min: from,
    max: to,
    // Bars are drawn at their instant: no category-style padding at the ends.
    offset: false,
    title: { display: true, text: `Time (${zoneLabel()})` },
    afterBuildTicks(axis) {
      const narrow = (axis.chart.width || 600) < 500;
      const t = timeTicks(axis.min, axis.max, narrow ? 3 : 6);
      axis.ticks = t.ticks.map((value) => ({ value }));
      axis.$byDay = t.step >= 24 * HOUR || step >= 24 * HOUR;
    },
    ticks: {
      autoSkip: false,
      maxRotation: 0,
      callback(v) {
        return fmtTime(new Date(v), this.$byDay ? 'day' : 'tick');
      },
    },
    grid: { display: false, offset: false },
  };
}

function countAxis(title) {
  return { beginAtZero: true, title: { display: true, text: title }, ticks: { precision: 0 } };
}

function options(step, from, to, yTitle, legend = true) {
  return {
    responsive: true,
    maintainAspectRatio: false,
    animation: false,
    parsing: false,
    interaction: { mode: 'index', intersect: false },
    plugins: {
      legend: { display: legend, position: 'top', align: 'end' },
      tooltip: { callbacks: { title: (items) => (items.length ? fmtTime(new Date(items[0].parsed.x), 'minute') : '') } },
    },
    scales: { x: timeAxis(step, from, to), y: countAxis(yTitle) },
  };
}

function span(stats) {
  const step = (stats.bucket === 'day' ? 24 : 1) * HOUR;
  const ts = stats.events.map((p) => new Date(p.t).getTime());
  const from = ts.length ? Math.min(...ts) : Date.now() - 24 * HOUR;
  const to = ts.length ? Math.max(...ts) : Date.now();
  return { step, from, to };
}

function mark(canvas, chart) {
  // For the browser test: how many points (buckets) the chart draws, first and last instant.
  const d = chart.data.datasets[0].data;
  canvas.dataset.points = String(d.length);
  canvas.dataset.step = String(d.length > 1 ? d[1].x - d[0].x : 0);
  canvas.dataset.xTitle = chart.options.scales.x.title.text;
  canvas.dataset.yTitle = chart.options.scales.y.title.text;
  return chart;
}

/** Events and failures per bucket (lines). */
export function eventsChart(canvas, stats) {
  theme();
  const { step, from, to } = span(stats);
  return mark(canvas, new Chart(canvas, {
    type: 'line',
    data: {
      datasets: [
        {
          label: 'Events',
          data: fillSeries(stats.events, from, to, step, (p) => p.events),
          borderColor: '#2f6fdb',
          backgroundColor: 'rgba(47,111,219,0.15)',
          fill: true,
          pointRadius: 0,
          stepped: 'middle',
        },
        {
          label: 'Failures',
          data: fillSeries(stats.events, from, to, step, (p) => p.failures),
          borderColor: '#e08a1e',
          pointRadius: 0,
          stepped: 'middle',
        },
      ],
    },
    options: options(step, from - step / 2, to + step / 2, `Events per ${stats.bucket}`),
  }));
}

/** Bans per bucket (bars), on a chart of their own. */
export function bansChart(canvas, stats) {
  theme();
  const { step, from, to } = span(stats);
  return mark(canvas, new Chart(canvas, {
    type: 'bar',
    data: {
      datasets: [
        {
          label: 'Bans',
          data: fillSeries(stats.bans, from, to, step, (p) => p.bans),
          backgroundColor: 'rgba(200,40,40,0.75)',
          barPercentage: 1,
          categoryPercentage: 0.9,
        },
      ],
    },
    options: options(step, from - step / 2, to + step / 2, `Bans per ${stats.bucket}`, false),
  }));
}

/** Hourly events of one address over the last `days` days, empty hours included. */
export function timelineChart(canvas, points, days = 30) {
  theme();
  const to = Math.floor(Date.now() / HOUR) * HOUR;
  const from = to - days * 24 * HOUR + HOUR;
  return mark(canvas, new Chart(canvas, {
    type: 'bar',
    data: {
      datasets: [
        {
          label: 'Events per hour',
          data: fillSeries(points, from, to, HOUR, (p) => p.events),
          backgroundColor: '#2f6fdb',
          barPercentage: 1,
          categoryPercentage: 1,
          minBarLength: 0,
        },
      ],
    },
    options: options(HOUR, from - HOUR / 2, to + HOUR / 2, 'Events per hour', false),
  }));
}
