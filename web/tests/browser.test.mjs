// Browser test of the dashboard against the real `palisade run` (PALISADE_BIN), with a
// command responder whose marker files show what the firewall would hold. Drives Debian's
// headless Chromium through playwright-core. Screenshots of each page go to $SCREENSHOTS.
//
//   PALISADE_BIN=target/debug/palisade node web/tests/browser.test.mjs
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import assert from 'node:assert/strict';

const BIN = process.env.PALISADE_BIN || path.resolve('../target/debug/palisade');
const SHOTS = process.env.SCREENSHOTS || path.resolve('target/screenshots');
const GEO = process.env.PALISADE_TEST_GEOIP || '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const PASSWORD = 'browser-test-password';
// The main browser runs in a zone with a half-hour offset, so that times must carry it.
const ZONE = 'Asia/Kolkata';
const ZONE_LABEL = '+05:30';
const ISO_TIME = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} (UTC|[+-]\d{2}:\d{2})$/;
const CHROME_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Fails when the page shows a literal "null", "undefined" or "NaN" (a value gone missing). */
async function noMissingValues(page, where) {
  const text = await page.evaluate(() => document.body.innerText);
  const m = text.match(/\b(null|undefined|NaN)\b/);
  assert.ok(!m, `${where} shows "${m && m[0]}": ${text.slice(Math.max(0, (m?.index ?? 0) - 80), (m?.index ?? 0) + 80)}`);
}

/** The page's background colour as [r, g, b]. */
async function background(page) {
  const c = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  return c.match(/\d+/g).slice(0, 3).map(Number);
}

async function login(page, base) {
  await page.goto(base + '/');
  await page.waitForSelector('#login-form', { timeout: 10000 });
  await page.fill('#username', 'alice');
  await page.fill('#password', PASSWORD);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('header#top:not([hidden])', { timeout: 10000 });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitFor(fn, ms, what) {
  const t0 = Date.now();
  for (;;) {
    try {
      if (await fn()) return Date.now() - t0;
    } catch {
      /* not yet */
    }
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

function syslogNow() {
  const d = new Date();
  const mon = d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' });
  const day = String(d.getUTCDate()).padStart(2, ' ');
  const hms = d.toISOString().slice(11, 19);
  return `${mon} ${day} ${hms}`;
}

function failed(ip, user = 'admin') {
  return `${syslogNow()} web1 sshd[4242]: Failed password for invalid user ${user} from ${ip} port 50522 ssh2\n`;
}

// The cloud audit's data comes from a real audit run by the daemon against a moto server
// (PyPI moto[server]), populated by the audit tests' own helper. Without moto the audit steps
// are skipped, unless PALISADE_REQUIRE_MOTO is set, which makes a missing moto a failure.
const MOTO_HELPER = new URL('../../crates/palisade-audit/tests/moto_helper.py', import.meta.url).pathname;

async function startMoto() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn('moto_server', ['-H', '127.0.0.1', '-p', String(port)], {
    env: { ...process.env, MOTO_IAM_LOAD_MANAGED_POLICIES: 'true' },
    stdio: 'ignore',
  });
  const started = await new Promise((resolve) => {
    child.once('error', () => resolve(false));
    child.once('spawn', () => resolve(true));
  });
  if (!started) {
    if (process.env.PALISADE_REQUIRE_MOTO) throw new Error('PALISADE_REQUIRE_MOTO is set but moto_server cannot start');
    console.log('skip audit steps: moto_server is not installed');
    return null;
  }
  await waitFor(async () => (await fetch(url + '/moto-api/')).status < 500, 60000, 'moto_server');
  return { url, child };
}

function motoHelper(url, ...args) {
  return JSON.parse(execFileSync('python3', [MOTO_HELPER, url, ...args], { encoding: 'utf8' }));
}

const results = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - t0 });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    console.log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

async function main() {
  assert.ok(fs.existsSync(BIN), `palisade binary not found at ${BIN} (set PALISADE_BIN)`);
  fs.mkdirSync(SHOTS, { recursive: true });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'palisade-web-'));
  const port = await freePort();
  const fleetPort = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const log = path.join(dir, 'auth.log');
  fs.writeFileSync(log, '');
  const moto = await startMoto();
  const scenario = moto ? motoHelper(moto.url, 'scenario') : null;
  const cfg = path.join(dir, 'palisade.toml');
  fs.writeFileSync(
    cfg,
    `[general]
state_dir = "${dir}/state"
socket = "${dir}/palisade.sock"
log_level = "info"

[store]
url = "sqlite:${dir}/palisade.db"

[defaults]
max_retry = 3
find_time = "10m"
ban_time = "1h"
responders = ["mark"]

[allowlist]
addresses = ["192.0.2.0/24"]

[recidive]
enabled = false

[[responder]]
name = "mark"
type = "command"
ban = ["/usr/bin/touch", "${dir}/banned-{ip}"]
unban = ["/bin/rm", "-f", "${dir}/banned-{ip}"]

[[jail]]
name = "sshd"
filter = "sshd"
files = ["${log}"]

# A fleet server too: the Agents page, host filters and fleet bans are driven by a real agent.
[fleet]
role = "server"
listen = "127.0.0.1:${fleetPort}"

[server]
listen = "127.0.0.1:${port}"
${GEO ? `geoip_country = "${GEO}"` : 'geoip_country = "/nonexistent/no-geoip.mmdb"'}
${
  moto
    ? `
# A short interval: the run after the test's change comes within seconds.
[audit]
interval = "5s"
endpoint = "${moto.url}"
regions = ["us-east-1"]
`
    : ''
}`,
  );
  fs.writeFileSync(path.join(dir, 'pw'), PASSWORD + '\n');
  execFileSync(BIN, ['user', 'add', 'alice', '--password-file', path.join(dir, 'pw'), '--config', cfg], {
    stdio: 'inherit',
  });

  const daemonLog = fs.openSync(path.join(dir, 'daemon.err'), 'w');
  // Credentials for moto only, from the environment (no profile, no session token).
  const daemonEnv = { ...process.env, TZ: 'UTC', HOME: dir, AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' };
  delete daemonEnv.AWS_SESSION_TOKEN;
  delete daemonEnv.AWS_PROFILE;
  const daemon = spawn(BIN, ['run', '--config', cfg], {
    env: daemonEnv,
    stdio: ['ignore', 'ignore', daemonLog],
  });
  let browser;
  let agent = null;
  let failedRun = false;
  try {
    await waitFor(async () => (await fetch(base + '/api/v1/health')).ok, 20000, 'the HTTP server');
    await sleep(400); // let the tailer reach the end of the log

    // Some history for the overview (addresses from several networks).
    const seed = ['45.33.32.156', '61.177.172.10', '185.220.101.4', '5.188.10.176', '177.54.144.20', '103.99.0.12'];
    let lines = '';
    seed.forEach((ip, i) => {
      for (let k = 0; k <= i; k++) lines += failed(ip, `user${k}`);
    });
    fs.appendFileSync(log, lines);

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROME_ARGS });
    const context = await browser.newContext({
      viewport: { width: 1400, height: 900 },
      timezoneId: ZONE,
      colorScheme: 'light',
    });
    const page = await context.newPage();
    page.on('pageerror', (e) => console.log('page error:', e.message));

    await step('an unauthenticated visitor gets the login page, and 401 from the API', async () => {
      const r = await fetch(base + '/api/v1/events');
      assert.equal(r.status, 401);
      await page.goto(base + '/decisions');
      await page.waitForSelector('#login-form', { timeout: 10000 });
      assert.equal(await page.isVisible('header#top'), false);
      // Where the first password is.
      const hint = await page.textContent('#login-hint');
      assert.ok(hint.includes('journalctl -u palisade') && hint.includes('palisade user add admin'), hint);
      await page.screenshot({ path: path.join(SHOTS, 'login.png') });
    });

    await step('a wrong password is refused', async () => {
      await page.fill('#username', 'alice');
      await page.fill('#password', 'not-the-password');
      await page.click('#login-form button[type=submit]');
      await page.waitForFunction(() => document.querySelector('.login-error')?.textContent.length > 0);
    });

    await step('log in and see the overview', async () => {
      await page.fill('#password', PASSWORD);
      await page.click('#login-form button[type=submit]');
      // The page asked for before logging in (/decisions) is shown after it.
      await page.waitForSelector('#decision-filters', { timeout: 10000 });
      await page.click('a[data-nav=overview]');
      await page.waitForSelector('#overview-chart', { timeout: 10000 });
      const cookies = await context.cookies(base);
      const c = cookies.find((c) => c.name === 'palisade_session');
      assert.ok(c && c.httpOnly && c.sameSite === 'Strict', JSON.stringify(cookies));
      await page.waitForSelector('#most-offending a.ip');
      await sleep(500); // map and charts drawn
      await page.screenshot({ path: path.join(SHOTS, 'overview.png'), fullPage: true });
      // Events and bans on charts of their own, every hour of the range on a titled time
      // axis in the browser's zone.
      for (const id of ['overview-chart', 'bans-chart']) {
        const c = await page.$eval(`#${id}`, (el) => ({ ...el.dataset }));
        assert.equal(c.points, '24', `${id}: ${JSON.stringify(c)}`);
        assert.equal(c.step, String(3600 * 1000), `${id}: ${JSON.stringify(c)}`);
        assert.equal(c.xTitle, `Time (${ZONE_LABEL})`);
      }
      assert.equal(await page.$eval('#overview-chart', (el) => el.dataset.yTitle), 'Events per hour');
      assert.equal(await page.$eval('#bans-chart', (el) => el.dataset.yTitle), 'Bans per hour');
      const last = await page.textContent('#updated-at');
      assert.ok(last.includes(ZONE_LABEL), last);
      if (GEO) {
        await page.waitForSelector('#map-legend');
        // Country names, not only codes.
        const countries = await page.locator('section:has(#world-map) tbody td:first-child').allTextContents();
        assert.ok(countries.some((c) => /^[A-Z][a-z].* \([A-Z]{2}\)$/.test(c)), JSON.stringify(countries));
      }
      // The health strip: the store and the daemon answer.
      await page.waitForSelector('#health .health-item');
      const health = await page.textContent('#health');
      assert.ok(health.includes('Store: ok') && health.includes('Daemon: running'), health);
      await noMissingValues(page, 'overview');
    });

    const ip = '203.0.113.50';
    const marker = path.join(dir, `banned-${ip}`);
    await step('a line appended to the log appears on the live feed within 2 s', async () => {
      await page.click('a[data-nav=live]');
      await page.waitForFunction(() => document.querySelector('#feed-state')?.textContent === 'live', null, {
        timeout: 10000,
      });
      // Before anything happens, the feed says it waits.
      assert.ok((await page.textContent('#feed-waiting')).includes('Waiting for events'));
      const t0 = Date.now();
      fs.appendFileSync(log, failed(ip));
      await page.waitForSelector(`#feed-rows tr.feed-event a.ip:text("${ip}")`, { timeout: 2000 });
      console.log(`     live event shown after ${Date.now() - t0} ms`);
      assert.equal(await page.locator('#feed-waiting').count(), 0);
      const t = await page.textContent('#feed-rows tr.feed-event td:first-child');
      assert.match(t, ISO_TIME);
      assert.ok(t.endsWith(ZONE_LABEL), t);
      fs.appendFileSync(log, failed(ip) + failed(ip));
      await page.waitForSelector(`#feed-rows tr.feed-ban a.ip:text("${ip}")`, { timeout: 5000 });
      await waitFor(() => fs.existsSync(marker), 5000, 'the responder to ban');
      await page.screenshot({ path: path.join(SHOTS, 'live.png'), fullPage: true });
    });

    await step('an IP page loaded by URL (deep link), unbanned after a confirmation', async () => {
      // Loaded directly, as from a bookmark: an IPv4 address has dots, and is still a page.
      await page.goto(`${base}/ips/${ip}`);
      await page.waitForSelector('#current-ban .banned', { timeout: 10000 });
      const t = await page.textContent('h1');
      assert.ok(t.includes(ip), t);
      // Its latest events (three lines were appended); fewer than a page, so no "Older events".
      await page.waitForSelector('#recent-events table');
      assert.equal(await page.locator('#recent-events tbody tr').count(), 3);
      assert.equal(await page.locator('#older-events').count(), 0);
      await noMissingValues(page, 'the IP page');
      const when = await page.textContent('#recent-events tbody tr td:first-child');
      assert.match(when, ISO_TIME);
      // The timeline has every hour of 30 days, empty ones included.
      const tl = await page.$eval('#ip-timeline', (el) => ({ ...el.dataset }));
      assert.equal(tl.points, String(30 * 24), JSON.stringify(tl));
      await page.screenshot({ path: path.join(SHOTS, 'ip-banned.png'), fullPage: true });
      // Unban asks first; Cancel keeps the ban.
      await page.click('#unban-current');
      await page.waitForSelector('dialog#confirm[open]');
      assert.ok((await page.textContent('#confirm-text')).includes(ip));
      await page.screenshot({ path: path.join(SHOTS, 'confirm-unban.png') });
      await page.click('#confirm-cancel');
      await sleep(300);
      assert.ok(fs.existsSync(marker), 'cancel must keep the ban');
      assert.equal(await page.locator('#current-ban .banned').count(), 1);
      await page.click('#unban-current');
      await page.click('#confirm-ok');
      await page.waitForSelector('#current-ban .not-banned', { timeout: 10000 });
      await waitFor(() => !fs.existsSync(marker), 5000, 'the responder to unban (marker file removed)');
      await page.screenshot({ path: path.join(SHOTS, 'ip-unbanned.png'), fullPage: true });
      // The other spelling of the page's address works too.
      await page.goto(`${base}/ip/${ip}`);
      await page.waitForSelector('#current-ban .not-banned', { timeout: 10000 });
    });

    await step('decisions page: ban from the form, filter, unban from the list', async () => {
      await page.click('a[data-nav=decisions]');
      await page.waitForSelector('#decision-filters');
      await page.fill('#ban-form input[name=target]', '198.51.100.23');
      await page.fill('#ban-form input[name=reason]', 'browser test');
      await page.click('#ban-form button[type=submit]');
      await page.waitForSelector('#decision-list button.unban[data-target="198.51.100.23/32"]', { timeout: 10000 });
      await waitFor(() => fs.existsSync(path.join(dir, 'banned-198.51.100.23')), 5000, 'manual ban applied');
      await page.selectOption('#decision-filters select[name=status]', 'all');
      await page.click('#decision-filters button[type=submit]');
      await page.waitForFunction(() => location.search.includes('status=all'));
      await page.waitForSelector('#decision-list table');
      await page.screenshot({ path: path.join(SHOTS, 'decisions.png'), fullPage: true });
      await page.selectOption('#decision-filters select[name=status]', 'active');
      await page.click('#decision-filters button[type=submit]');
      await page.waitForSelector('#decision-list button.unban[data-target="198.51.100.23/32"]');
      await page.click('#decision-list button.unban[data-target="198.51.100.23/32"]');
      await page.click('#confirm-ok');
      await waitFor(() => !fs.existsSync(path.join(dir, 'banned-198.51.100.23')), 5000, 'manual unban applied');
    });

    await step('allowlist editor adds and removes entries', async () => {
      await page.click('a[data-nav=allowlist]');
      await page.fill('#allow-form input[name=net]', '198.18.0.0/15');
      await page.fill('#allow-form input[name=comment]', 'benchmark lab');
      await page.click('#allow-form button[type=submit]');
      await page.waitForSelector('#allow-list td:text("198.18.0.0/15")', { timeout: 10000 });
      await page.screenshot({ path: path.join(SHOTS, 'allowlist.png'), fullPage: true });
      // Remove asks first: Cancel keeps the entry, confirming removes it.
      await page.click('#allow-list button[data-net="198.18.0.0/15"]');
      await page.waitForSelector('dialog#confirm[open]');
      await page.click('#confirm-cancel');
      await sleep(300);
      assert.equal(await page.locator('#allow-list td:text("198.18.0.0/15")').count(), 1);
      await page.click('#allow-list button[data-net="198.18.0.0/15"]');
      await page.click('#confirm-ok');
      await page.waitForSelector('#allow-list td:text("198.18.0.0/15")', { state: 'detached', timeout: 10000 });
    });

    await step('jails page: limits, state, filter, and it refreshes itself', async () => {
      await page.goto(`${base}/jails?refresh_ms=1000`);
      await page.waitForSelector('td:has-text("sshd")', { timeout: 10000 });
      const row = await page.textContent('#jail-list tbody tr');
      assert.ok(row.includes('3 failures in 10m → ban 1h'), row);
      assert.ok(row.includes('running'), row);
      await page.fill('#jail-filter', 'zzz');
      await page.waitForSelector('#jail-list p.empty');
      await page.fill('#jail-filter', 'ssh');
      await page.waitForSelector('#jail-list td:has-text("sshd")');
      await page.locator('#jail-filter').blur();
      // New failures show up without a reload.
      const failures = async () => Number((await page.textContent('#jail-list tbody tr td:nth-last-child(3)')).replace(/,/g, ''));
      const before = await failures();
      fs.appendFileSync(log, failed('198.51.100.77'));
      await waitFor(async () => (await failures()) > before, 10000, 'the jails page to refresh');
      await page.screenshot({ path: path.join(SHOTS, 'jails.png'), fullPage: true });
      await noMissingValues(page, 'the jails page');
    });

    if (moto) {
      await step('audit page: open findings by severity from a real run against moto, history and diff of a changed finding', async () => {
        const apiGet = (p) => page.evaluate(async (p) => (await fetch(p)).json(), p);
        await waitFor(async () => (await apiGet('/api/v1/audit/runs')).items.some((r) => r.ok), 60000, 'a successful audit run');
        // One change on AWS's side: the web group's 8080 range widened.
        motoHelper(moto.url, 'mutate', 'widen', scenario.web);
        await waitFor(
          async () => (await apiGet('/api/v1/audit/events?kind=changed')).items.length > 0,
          60000,
          'the audit to report the change',
        );
        await page.click('a[data-nav=audit]');
        await page.waitForSelector('#audit-findings .sev-group', { timeout: 10000 });
        const api = await apiGet('/api/v1/audit/findings');
        // Cards count every open finding by severity, as the API does.
        for (const sev of ['critical', 'high', 'medium', 'low']) {
          const v = await page.textContent(`#audit-summary a[data-severity=${sev}] .value`);
          assert.equal(Number(v.replace(/,/g, '')), api.by_severity[sev], sev);
        }
        // Groups, most severe first, with every open finding.
        const order = await page.$$eval('#audit-findings .sev-group', (els) => els.map((e) => e.dataset.severity));
        const rank = (s) => ['critical', 'high', 'medium', 'low'].indexOf(s);
        assert.ok(order.length >= 2, JSON.stringify(order));
        assert.deepEqual(order, [...order].sort((a, b) => rank(a) - rank(b)));
        assert.equal(await page.locator('#audit-findings tbody tr').count(), api.total);
        const web = `${scenario.web} (web)`;
        const row = page.locator('#audit-findings tr', { hasText: 'secgroup_suspicious_ingress' }).filter({ hasText: web }).filter({ hasText: 'tcp 8080' });
        assert.equal(await row.count(), 1);
        // The last run: ok, and its change among the recent changes, with the diff.
        assert.ok((await page.textContent('#audit-last-run')).includes('ok'));
        const changed = page.locator('#audit-events tbody tr', { hasText: 'changed' });
        await changed.first().waitFor({ timeout: 10000 });
        assert.equal(await changed.locator('del').first().textContent(), '− 10.1.2.0/24');
        assert.equal(await changed.locator('ins').first().textContent(), '+ 10.1.0.0/16');
        await noMissingValues(page, 'the audit page');
        await page.screenshot({ path: path.join(SHOTS, 'audit.png'), fullPage: true });
        // The finding's history: the change with its diff, then the first sighting.
        await row.locator('a.history').click();
        await page.waitForSelector('#audit-history table', { timeout: 10000 });
        assert.ok(new URL(page.url()).searchParams.get('key').includes('|secgroup_suspicious_ingress|'));
        const kinds = await page.$$eval('#audit-history .table-wrap > table > tbody > tr > td:nth-child(2)', (els) => els.map((e) => e.textContent));
        assert.deepEqual(kinds, ['changed', 'new']);
        assert.equal(await page.textContent('#audit-history table.diff del'), '− 10.1.2.0/24');
        assert.equal(await page.textContent('#audit-history table.diff ins'), '+ 10.1.0.0/16');
        const head = await page.textContent('#audit-history .finding-head');
        assert.ok(head.includes(web) && head.includes('Fix:') && head.includes('10.1.0.0/16'), head);
        await noMissingValues(page, 'the finding history');
        await page.screenshot({ path: path.join(SHOTS, 'audit-history.png'), fullPage: true });
        // Filter by severity: only that group is left.
        await page.goto(`${base}/audit`);
        await page.waitForSelector('#audit-filters');
        await page.selectOption('#audit-filters select[name=severity]', 'high');
        await page.click('#audit-filters button[type=submit]');
        await page.waitForFunction(() => location.search.includes('severity=high'));
        await page.waitForSelector('#audit-findings .sev-group[data-severity=high]');
        const only = await page.$$eval('#audit-findings .sev-group', (els) => els.map((e) => e.dataset.severity));
        assert.deepEqual(only, ['high']);
      });
    }

    // Fleet mode: a real agent (`palisade run` with [fleet] role = "agent") enrolled with a
    // token from this server, shipping its own log's events with its name as host.
    const agentDir = path.join(dir, 'web2');
    const agentLog = path.join(agentDir, 'auth.log');
    const agentCfg = path.join(agentDir, 'palisade.toml');
    const apiGet = (p) => page.evaluate(async (p) => (await fetch(p)).json(), p);
    await step('fleet: an agent enrolls and ships; the Agents page lists it, the overview counts it', async () => {
      fs.mkdirSync(agentDir, { recursive: true });
      fs.writeFileSync(agentLog, '');
      fs.writeFileSync(
        agentCfg,
        `[general]
state_dir = "${agentDir}/state"
socket = "${agentDir}/palisade.sock"
[store]
url = "sqlite:${agentDir}/palisade.db"
[defaults]
max_retry = 5
find_time = "10m"
ban_time = "1h"
responders = ["log"]
[recidive]
enabled = false
[fleet]
role = "agent"
server = "wss://127.0.0.1:${fleetPort}"
name = "web2"
[[jail]]
name = "sshd"
filter = "sshd"
files = ["${agentLog}"]
`,
      );
      const tok = execFileSync(BIN, ['fleet', 'token', 'add', '--config', cfg], { encoding: 'utf8' }).trim().split('\n').pop().trim();
      assert.ok(tok.startsWith('pst1.'), tok);
      execFileSync(BIN, ['fleet', 'join', `wss://127.0.0.1:${fleetPort}`, '--token', tok, '--config', agentCfg], { stdio: 'inherit' });
      agent = spawn(BIN, ['run', '--config', agentCfg], {
        env: { ...process.env, TZ: 'UTC' },
        stdio: ['ignore', 'ignore', fs.openSync(path.join(dir, 'agent.err'), 'w')],
      });
      await waitFor(async () => (await apiGet('/api/v1/fleet/agents')).items.some((a) => a.name === 'web2' && a.connected), 20000, 'the agent to connect');
      await sleep(400); // let the agent's tailer reach the end of its log
      fs.appendFileSync(agentLog, failed('203.0.113.80') + failed('203.0.113.81'));
      await waitFor(async () => (await apiGet('/api/v1/events?host=web2')).items.length === 2, 20000, "the agent's events on the server");
      await page.click('a[data-nav=agents]');
      await page.waitForSelector('#agent-list .agent-name:text("web2")', { timeout: 10000 });
      const row = await page.textContent('#agent-list tbody tr');
      assert.ok(row.includes('connected') && row.includes('protocol 2'), row);
      await noMissingValues(page, 'the agents page');
      await page.screenshot({ path: path.join(SHOTS, 'agents.png'), fullPage: true });
      await page.click('a[data-nav=overview]');
      await page.waitForSelector('#fleet-connected', { timeout: 10000 });
      assert.equal((await page.textContent('#fleet-connected .value')).trim(), '1 / 1');
      const hosts = await page.locator('#fleet-overview tbody tr').allTextContents();
      assert.ok(hosts.some((t) => t.includes('web2') && t.includes('2')), JSON.stringify(hosts));
    });

    await step('fleet: the host filter narrows events (page, live feed)', async () => {
      await page.click('a[data-nav=events]');
      await page.waitForSelector('#event-list table', { timeout: 10000 });
      const hostsOf = () => page.$$eval('#event-list tbody .host', (els) => els.map((e) => e.dataset.host));
      const all = await hostsOf();
      assert.ok(all.includes('web2') && all.includes('@local'), JSON.stringify(all));
      await page.selectOption('#host-filter', 'web2');
      await page.click('#event-filters button[type=submit]');
      await page.waitForFunction(() => location.search.includes('host=web2'));
      await page.waitForSelector('#event-list table');
      const only = await hostsOf();
      assert.deepEqual(only, ['web2', 'web2']);
      const ips = await page.locator('#event-list tbody a.ip').allTextContents();
      assert.deepEqual(ips.sort(), ['203.0.113.80', '203.0.113.81']);
      await page.screenshot({ path: path.join(SHOTS, 'events-host.png'), fullPage: true });
      await page.selectOption('#host-filter', '@local');
      await page.click('#event-filters button[type=submit]');
      await page.waitForFunction(() => location.search.includes('host=%40local'));
      await page.waitForSelector('#event-list table');
      const local = await hostsOf();
      assert.ok(local.length > 0 && local.every((h) => h === '@local'), JSON.stringify(local));
      // The live feed filtered to the agent: its line shows, this host's does not.
      await page.goto(`${base}/live?host=web2`);
      await page.waitForFunction(() => document.querySelector('#feed-state')?.textContent === 'live', null, { timeout: 10000 });
      fs.appendFileSync(log, failed('198.51.100.88'));
      await sleep(300);
      fs.appendFileSync(agentLog, failed('203.0.113.82'));
      await page.waitForSelector('#feed-rows tr.feed-event a.ip:text("203.0.113.82")', { timeout: 10000 });
      assert.equal(await page.locator('#feed-rows .host[data-host="@local"]').count(), 0);
      assert.equal(await page.locator('#feed-rows a.ip:text("198.51.100.88")').count(), 0);
      assert.equal(await page.textContent('#feed-rows tr.feed-event .host'), 'web2');
    });

    await step('fleet: a block list pushed from the Agents page reaches the agent as a fleet ban; revoke cuts the agent', async () => {
      await page.goto(base + '/agents');
      await page.waitForSelector('#block-form', { timeout: 10000 });
      await page.fill('#block-form textarea[name=targets]', '198.51.100.99\n# reviewed');
      await page.fill('#block-form input[name=agents]', 'web2');
      await page.fill('#block-form input[name=duration]', '1d');
      await page.click('#block-form button[type=submit]');
      await page.waitForSelector('#fleet-bans a.ip:text("198.51.100.99")', { timeout: 10000 });
      // On the agent, the fleet ban is a decision with origin fleet.
      await waitFor(() => {
        const out = execFileSync(BIN, ['decisions', 'list', '--json', '--config', agentCfg], { encoding: 'utf8' });
        // One JSON object a line.
        return out
          .split('\n')
          .filter((l) => l.trim())
          .map((l) => JSON.parse(l))
          .some((d) => d.origin === 'fleet' && d.target === '198.51.100.99/32');
      }, 10000, 'the fleet ban on the agent');
      // The Decisions page marks fleet bans as such.
      await page.goto(base + '/decisions?host=web2');
      await page.waitForSelector('#fleet-decisions .fleet-badge', { timeout: 10000 });
      assert.ok((await page.textContent('#fleet-decisions')).includes('198.51.100.99'));
      await noMissingValues(page, 'the decisions page by host');
      // Revoke asks first, then the agent is refused and cut off.
      await page.goto(base + '/agents');
      await page.click('#agent-list button.revoke[data-agent=web2]');
      await page.click('#confirm-ok');
      await page.waitForSelector('#agent-list .badge:text("revoked")', { timeout: 10000 });
      const listed = JSON.parse(execFileSync(BIN, ['fleet', 'agents', '--json', '--config', cfg], { encoding: 'utf8' }));
      assert.ok(listed.find((a) => a.name === 'web2').revoked, JSON.stringify(listed));
      await waitFor(async () => !(await apiGet('/api/v1/fleet/agents')).items.find((a) => a.name === 'web2').connected, 20000, 'the revoked agent to be cut');
      assert.equal(await page.locator('#agent-list button.revoke').count(), 0);
    });

    await step('every page loads by URL, none shows a missing value', async () => {
      for (const [url, sel] of [
        ['/', '#overview-chart'],
        ['/live', '#feed'],
        ['/decisions?status=all', '#decision-list table'],
        ['/allowlist', '#allow-form'],
        ['/jails', '#jail-list'],
        ['/agents', '#agent-list'],
        ['/events', '#event-list table'],
        ['/audit', moto ? '#audit-findings .sev-group' : '#audit-findings'],
        ['/ips/2001:db8::7', '#current-ban'],
        ['/ips/203.0.113.99', '#current-ban'],
      ]) {
        const r = await page.goto(base + url);
        assert.equal(r.status(), 200, url);
        await page.waitForSelector(sel, { timeout: 10000 });
        assert.notEqual(await page.textContent('h1'), 'Not found', url);
        await noMissingValues(page, url);
      }
      // Light scheme here: a light background.
      const [r, g, b] = await background(page);
      assert.ok(r + g + b > 600, `light background: ${[r, g, b]}`);
    });

    await step('phone width (390 px), dark scheme: no horizontal scroll, folded menu', async () => {
      const phone = await browser.newContext({
        viewport: { width: 390, height: 844 },
        deviceScaleFactor: 1,
        isMobile: true,
        hasTouch: true,
        colorScheme: 'dark',
        timezoneId: 'UTC',
      });
      try {
        const m = await phone.newPage();
        m.on('pageerror', (e) => console.log('page error (phone):', e.message));
        await m.goto(base + '/');
        await m.waitForSelector('#login-form');
        await m.screenshot({ path: path.join(SHOTS, 'phone-login.png'), fullPage: true });
        const [r, g, b] = await background(m);
        assert.ok(r + g + b < 150, `dark background: ${[r, g, b]}`);
        await login(m, base);
        for (const [name, url, sel] of [
          ['overview', '/', '#overview-chart'],
          ['live', '/live', '#feed'],
          ['decisions', '/decisions?status=all', '#decision-list table'],
          ['allowlist', '/allowlist', '#allow-form'],
          ['jails', '/jails', '#jail-list'],
          ['audit', '/audit', '#audit-runs'],
          ['ip', `/ips/${ip}`, '#recent-events'],
        ]) {
          await m.goto(base + url);
          await m.waitForSelector(sel, { timeout: 10000 });
          await sleep(300);
          const w = await m.evaluate(() => document.scrollingElement.scrollWidth);
          assert.ok(w <= 390, `${url} is ${w} px wide at 390 px`);
          assert.equal(await m.isVisible('header nav'), false, `${url}: the navigation is folded`);
          if (url === '/live') {
            const t = await m.textContent('#feed-waiting');
            assert.ok(t.includes('Waiting'), t);
          }
          if (url === `/ips/${ip}`) {
            const t = await m.textContent('#recent-events tbody tr td:first-child');
            assert.ok(ISO_TIME.test(t) && t.endsWith(' UTC'), t);
          }
          await noMissingValues(m, `${url} (phone)`);
          await m.screenshot({ path: path.join(SHOTS, `phone-${name}.png`), fullPage: true });
        }
        const [r2, g2, b2] = await background(m);
        assert.ok(r2 + g2 + b2 < 150, `dark background after login: ${[r2, g2, b2]}`);
        await m.click('#menu-toggle');
        await m.waitForSelector('header nav', { state: 'visible' });
        await m.screenshot({ path: path.join(SHOTS, 'phone-menu.png') });
        await m.click('a[data-nav=jails]');
        await m.waitForSelector('#jail-list');
        assert.equal(await m.isVisible('header nav'), false, 'the menu folds after navigating');
      } finally {
        await phone.close();
      }
    });

    await step('overview after activity', async () => {
      await page.click('a[data-nav=overview]');
      await page.waitForSelector('#overview-chart');
      await sleep(6000); // stats are cached for 5 s
      await page.reload();
      await page.waitForSelector('#most-offending a.ip');
      await sleep(500);
      await page.screenshot({ path: path.join(SHOTS, 'overview-after.png'), fullPage: true });
      if (GEO) {
        const attr = await page.textContent('footer');
        assert.ok(/DB-IP|GeoLite2/.test(attr), `attribution shown: ${attr}`);
      }
    });

    await step('ban from an IP page with a reason; the page shows the ban', async () => {
      await page.goto(`${base}/ips/203.0.113.99`);
      await page.waitForSelector('#current-ban .not-banned');
      await page.fill('#ban-form input[name=reason]', 'seen in a report');
      await page.click('#ban-form button[type=submit]');
      await page.waitForSelector('#current-ban .banned', { timeout: 10000 });
      assert.ok((await page.textContent('#current-ban')).includes('seen in a report'));
      await page.click('#unban-current');
      await page.click('#confirm-ok');
      await page.waitForSelector('#current-ban .not-banned', { timeout: 10000 });
    });

    await step('a page that refreshes itself keeps the scroll position', async () => {
      await page.setViewportSize({ width: 1400, height: 500 });
      await page.goto(`${base}/?refresh_ms=1000`);
      await page.waitForSelector('#overview-chart');
      await page.evaluate(() => window.scrollTo(0, 400));
      const before = await page.textContent('#updated-at');
      await waitFor(async () => (await page.textContent('#updated-at')) !== before, 10000, 'a refresh');
      const y = await page.evaluate(() => window.scrollY);
      assert.equal(y, 400, 'scroll position after a refresh');
      await page.setViewportSize({ width: 1400, height: 900 });
    });

    await step('log out returns to the login page', async () => {
      await page.click('#logout');
      await page.waitForSelector('#login-form');
      const r = await page.evaluate(async () => (await fetch('/api/v1/auth/me')).status);
      assert.equal(r, 401);
    });
  } catch (e) {
    failedRun = true;
    console.log('--- daemon log ---\n' + fs.readFileSync(path.join(dir, 'daemon.err'), 'utf8').slice(-4000));
    if (fs.existsSync(path.join(dir, 'agent.err'))) console.log('--- agent log ---\n' + fs.readFileSync(path.join(dir, 'agent.err'), 'utf8').slice(-4000));
  } finally {
    if (browser) await browser.close().catch(() => {});
    if (moto) moto.child.kill('SIGTERM');
    if (agent) agent.kill('SIGTERM');
    daemon.kill('SIGTERM');
    await new Promise((r) => {
      const t = setTimeout(() => {
        daemon.kill('SIGKILL');
        r();
      }, 10000);
      daemon.on('exit', () => {
        clearTimeout(t);
        r();
      });
    });
    if (!failedRun) fs.rmSync(dir, { recursive: true, force: true });
    else console.log(`kept ${dir} for inspection`);
  }
  const bad = results.filter((r) => !r.ok);
  console.log(`\n${results.length - bad.length} passed, ${bad.length} failed; screenshots in ${SHOTS}`);
  process.exit(bad.length || failedRun ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
