// Dashboard first paint: loads the overview in headless Chromium (playwright-core) against a
// running server and reports, per run, the browser's paint timings (first-paint,
// first-contentful-paint) and the time until the overview's chart and map are drawn (the
// dashboard's `palisade:overview-drawn` performance mark), all from navigation start.
// Every run uses a fresh browser context (empty cache) with a logged-in session.
//
//   node bench/api/paint.mjs BASE_URL USER PASSWORD [RUNS]     (prints one JSON line)
//
// Run by bench/api/run.sh against the api_bench server; playwright-core comes from
// web/node_modules (scripts/build-web.sh installs it). Chromium: /usr/bin/chromium or $CHROMIUM.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '../../web/package.json'));
const { chromium } = require('playwright-core');

const [base, user, password, runsArg] = process.argv.slice(2);
if (!base || !user || !password) {
  console.error('usage: node bench/api/paint.mjs BASE_URL USER PASSWORD [RUNS]');
  process.exit(2);
}
const runs = Number(runsArg || 5);

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
const samples = [];
try {
  for (let i = 0; i < runs; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    // Log in through the API (sets the session cookie in this context), then load the
    // overview as a returning, logged-in operator would.
    const r = await ctx.request.post(base + '/api/v1/auth/login', {
      data: { username: user, password },
    });
    if (!r.ok()) throw new Error(`login: HTTP ${r.status()}`);
    const page = await ctx.newPage();
    await page.goto(base + '/', { waitUntil: 'load' });
    await page.waitForFunction(
      () => performance.getEntriesByName('palisade:overview-drawn').length > 0,
      null,
      { timeout: 30000 },
    );
    const t = await page.evaluate(() => {
      const paint = Object.fromEntries(performance.getEntriesByType('paint').map((e) => [e.name, e.startTime]));
      const nav = performance.getEntriesByType('navigation')[0];
      return {
        first_paint: paint['first-paint'],
        first_contentful_paint: paint['first-contentful-paint'],
        dom_content_loaded: nav.domContentLoadedEventEnd,
        overview_drawn: performance.getEntriesByName('palisade:overview-drawn')[0].startTime,
      };
    });
    const canvases = await page.locator('#overview-chart').count();
    if (canvases !== 1) throw new Error('overview chart missing');
    samples.push(t);
    await ctx.close();
  }
} finally {
  await browser.close();
}
const keys = Object.keys(samples[0]);
const out = { runs };
for (const k of keys) {
  // Chromium occasionally reports no paint entry for a load; such runs are left out.
  const xs = samples.map((s) => s[k]).filter((x) => typeof x === 'number');
  out[k] = xs.length
    ? { median_ms: Math.round(median(xs)), max_ms: Math.round(Math.max(...xs)), n: xs.length }
    : null;
}
console.log(JSON.stringify(out));
