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

function timeAxis(step, from, to) {
  const byDay = step >= 24 * HOUR;
  return {
    type: 'linear',
    min: from,
    max: to,
    title: { display: true, text: `Time (${zoneLabel()})` },
    ticks: {
      maxTicksLimit: 8,
      maxRotation: 0,
      callback: (v) => fmtTime(new Date(v), byDay ? 'day' : 'minute'),
    },
    grid: { display: false },
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

/** Events and failures per bucket (lines). */
export function eventsChart(canvas, stats) {
  theme();
  const { step, from, to } = span(stats);
  return new Chart(canvas, {
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
  });
}

/** Bans per bucket (bars), on a chart of their own. */
export function bansChart(canvas, stats) {
  theme();
  const { step, from, to } = span(stats);
  return new Chart(canvas, {
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
  });
}

/** Hourly events of one address over the last `days` days, empty hours included. */
export function timelineChart(canvas, points, days = 30) {
  theme();
  const to = Math.floor(Date.now() / HOUR) * HOUR;
  const from = to - days * 24 * HOUR + HOUR;
  return new Chart(canvas, {
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
  });
}
