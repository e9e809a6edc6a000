// The world map of offending countries (jsvectormap, bundled; country codes are ISO alpha-2,
// as GeoIP answers them).
import jsVectorMap from './jvm-global.js';
import 'jsvectormap/dist/maps/world.js';
import 'jsvectormap/dist/jsvectormap.css';

const LEVELS = { l1: '#fde0c5', l2: '#f9a66c', l3: '#ec6d3d', l4: '#cf3b22', l5: '#9f1d13' };

export function worldMap(el, countries) {
  const counts = {};
  for (const c of countries) counts[c.country] = c.failures;
  const max = Math.max(1, ...Object.values(counts));
  // Five colour levels on a log scale: a few heavy countries do not wash out the rest.
  const values = {};
  for (const [code, n] of Object.entries(counts)) {
    values[code] = 'l' + Math.max(1, Math.ceil((5 * Math.log(n + 1)) / Math.log(max + 1)));
  }
  return new jsVectorMap({
    selector: el,
    map: 'world',
    zoomButtons: false,
    zoomOnScroll: false,
    regionStyle: { initial: { fill: '#dfe4ea', stroke: '#fff', strokeWidth: 0.3 } },
    series: { regions: [{ attribute: 'fill', scale: LEVELS, values }] },
    onRegionTooltipShow(event, tooltip, code) {
      const n = counts[code];
      tooltip.text(`${tooltip.text()}${n ? ` — ${n.toLocaleString()} failures` : ''}`);
    },
  });
}
