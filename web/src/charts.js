// Chart.js, registering only what the dashboard draws (keeps the bundle small).
import {
  Chart,
  LineController,
  BarController,
  LineElement,
  BarElement,
  PointElement,
  CategoryScale,
  LinearScale,
  Filler,
  Legend,
  Tooltip,
} from 'chart.js';

Chart.register(
  LineController,
  BarController,
  LineElement,
  BarElement,
  PointElement,
  CategoryScale,
  LinearScale,
  Filler,
  Legend,
  Tooltip,
);

function label(t, bucket) {
  const d = new Date(t);
  if (bucket === 'day') return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  return d.toLocaleString(undefined, {
    hour12: false,
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
  });
}

const base = {
  responsive: true,
  maintainAspectRatio: false,
  animation: false,
  interaction: { mode: 'index', intersect: false },
  scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { ticks: { maxTicksLimit: 12 } } },
};

/** Events and failures over time (line) with bans (bars) on a second axis. */
export function overviewChart(canvas, stats) {
  return new Chart(canvas, {
    data: {
      labels: stats.events.map((p) => label(p.t, stats.bucket)),
      datasets: [
        {
          type: 'line',
          label: 'Events',
          data: stats.events.map((p) => p.events),
          borderColor: '#2f6fdb',
          backgroundColor: 'rgba(47,111,219,0.12)',
          fill: true,
          pointRadius: 0,
          tension: 0.25,
        },
        {
          type: 'line',
          label: 'Failures',
          data: stats.events.map((p) => p.failures),
          borderColor: '#e08a1e',
          pointRadius: 0,
          tension: 0.25,
        },
        {
          type: 'bar',
          label: 'Bans',
          data: stats.bans.map((p) => p.bans),
          backgroundColor: 'rgba(200,40,40,0.7)',
          yAxisID: 'y2',
        },
      ],
    },
    options: {
      ...base,
      scales: {
        ...base.scales,
        y2: { beginAtZero: true, position: 'right', grid: { drawOnChartArea: false }, ticks: { precision: 0 } },
      },
    },
  });
}

/** Hourly events of one address. */
export function timelineChart(canvas, points) {
  return new Chart(canvas, {
    type: 'bar',
    data: {
      labels: points.map((p) => label(p.t, 'hour')),
      datasets: [{ label: 'Events per hour', data: points.map((p) => p.events), backgroundColor: '#2f6fdb' }],
    },
    options: base,
  });
}
