// The world map of offending countries (jsvectormap, bundled; country codes are ISO alpha-2,
// as GeoIP answers them), with a legend of its colour levels.
import jsVectorMap from './jvm-global.js';
import 'jsvectormap/dist/maps/world.js';
import 'jsvectormap/dist/jsvectormap.css';
import { h, fmtNum, countryName } from './util.js';

const COLOURS = ['#fde0c5', '#f9a66c', '#ec6d3d', '#cf3b22', '#9f1d13'];
const LEVELS = Object.fromEntries(COLOURS.map((c, i) => ['l' + (i + 1), c]));

/** Failures per level on the log scale: level i holds counts in `[lo, hi]`. */
export function levels(max) {
  const k = Math.log(max + 1) / 5;
  const out = [];
  let lo = 1;
  for (let i = 1; i <= 5; i++) {
    const hi = i === 5 ? max : Math.floor(Math.exp(i * k) - 1 + 1e-9);
    if (hi >= lo) out.push({ level: i, lo, hi, colour: COLOURS[i - 1] });
    lo = Math.max(lo, hi + 1);
  }
  return out;
}

/** The legend for `countries` (`{country, failures}`). */
export function mapLegend(countries) {
  const max = Math.max(1, ...countries.map((c) => c.failures));
  return h(
    'div',
    { class: 'map-legend', id: 'map-legend' },
    h('span', { class: 'legend-title' }, 'Failures per country:'),
    levels(max).map((l) =>
      h(
        'span',
        { class: 'legend-item' },
        h('span', { class: 'swatch', style: `background:${l.colour}` }),
        l.lo === l.hi ? fmtNum(l.lo) : `${fmtNum(l.lo)}–${fmtNum(l.hi)}`,
      ),
    ),
    h('span', { class: 'legend-item' }, h('span', { class: 'swatch none' }), 'none'),
  );
}

export function worldMap(el, countries) {
  const counts = {};
  for (const c of countries) counts[c.country] = c.failures;
  const max = Math.max(1, ...Object.values(counts));
  // Five colour levels on a log scale: a few heavy countries do not wash out the rest.
  const values = {};
  for (const [code, n] of Object.entries(counts)) {
    values[code] = 'l' + Math.max(1, Math.ceil((5 * Math.log(n + 1)) / Math.log(max + 1)));
  }
  const empty = getComputedStyle(document.documentElement).getPropertyValue('--map-empty').trim() || '#dfe4ea';
  const stroke = getComputedStyle(document.documentElement).getPropertyValue('--card').trim() || '#fff';
  return new jsVectorMap({
    selector: el,
    map: 'world',
    zoomButtons: false,
    zoomOnScroll: false,
    regionStyle: { initial: { fill: empty, stroke, strokeWidth: 0.3 } },
    series: { regions: [{ attribute: 'fill', scale: LEVELS, values }] },
    onRegionTooltipShow(event, tooltip, code) {
      const n = counts[code];
      tooltip.text(`${countryName(code) || tooltip.text()}${n ? ` — ${fmtNum(n)} failures` : ''}`);
    },
  });
}
