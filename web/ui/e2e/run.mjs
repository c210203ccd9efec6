#!/usr/bin/env node
// End-to-end check of the Tally UI in Debian's Chromium, against a running server.
//
//   TALLY_URL=http://127.0.0.1:8080 SCREENSHOT_DIR=/tmp/shots node e2e/run.mjs
//
// Env: TALLY_URL (required), SCREENSHOT_DIR (default ./screenshots), E2E_ALLOW_MISSING=1 (skip,
// instead of failing, the steps whose issue 13 endpoints the server does not have yet),
// CHROMIUM_PATH (default /usr/bin/chromium), E2E_TIMEOUT_MS (default 30000 per wait).
// Any console error or uncaught page error fails the run. Exits 0 only if every step passed.
// The Keys step needs the gateway's keys API (/api/keys); against a server without it, it fails saying so.
// The Analytics, Budgets and price freshness steps need the issue 13 API (docs/analytics-api.md):
// /api/analytics/*, /api/forecasts, /api/budgets, /api/alerts/deliveries, /api/prices/{id}/verify.
// The Reconciliation step needs the issue 14 API (/api/providers, /api/reconciliation) and a server
// started with TALLY_ENCRYPTION_KEY; its connection points at an unreachable loopback port, so
// "Import now" must fail with provider_error (it never reaches a real provider).
// Token mode (issue 15), only when TALLY_AUTH_URL (a second node started with --auth token) and
// TALLY_ADMIN_TOKEN (its admin token) are both set: sign in with the admin token, create a user
// and a key for them, sign out, sign in with that key: only that user's threads, no admin pages.

import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = (process.env.TALLY_URL ?? '').replace(/\/+$/, '');
const SHOTS = resolve(process.env.SCREENSHOT_DIR ?? 'screenshots');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS ?? 30_000);
const AUTH_URL = (process.env.TALLY_AUTH_URL ?? '').replace(/\/+$/, '');
const ADMIN_TOKEN = process.env.TALLY_ADMIN_TOKEN ?? '';

if (!BASE) {
  console.error('e2e: set TALLY_URL to the running server, e.g. TALLY_URL=http://127.0.0.1:8080');
  process.exit(2);
}

// ---------------------------------------------------------------- exact money text (same rules as src/money.ts)

function parseDecimal(value) {
  const m = /^([+-])?(\d*)(?:\.(\d*))?$/.exec(String(value ?? '').trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) return null;
  const int = m[2].replace(/^0+/, '') || '0';
  const frac = (m[3] ?? '').replace(/0+$/, '');
  return { negative: m[1] === '-' && !(int === '0' && frac === ''), int, frac };
}
function group(d) {
  return d.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}
function formatUsd(value) {
  if (value === null || value === undefined || String(value).trim() === '') return '—';
  const p = parseDecimal(value);
  if (!p) return String(value);
  const frac = p.frac.padEnd(2, '0');
  return `${p.negative ? '-' : ''}$${group(p.int)}.${frac}`;
}
function compareDecimal(a, b) {
  const pa = parseDecimal(a) ?? { negative: false, int: '0', frac: '' };
  const pb = parseDecimal(b) ?? { negative: false, int: '0', frac: '' };
  if (pa.negative !== pb.negative) return pa.negative ? -1 : 1;
  const sign = pa.negative ? -1 : 1;
  if (pa.int.length !== pb.int.length) return (pa.int.length < pb.int.length ? -1 : 1) * sign;
  if (pa.int !== pb.int) return (pa.int < pb.int ? -1 : 1) * sign;
  const n = Math.max(pa.frac.length, pb.frac.length);
  const fa = pa.frac.padEnd(n, '0');
  const fb = pb.frac.padEnd(n, '0');
  return fa === fb ? 0 : (fa < fb ? -1 : 1) * sign;
}
/** Exact sum of two decimal strings (BigInt), normalized. */
function addDecimal(a, b) {
  const pa = parseDecimal(a) ?? { negative: false, int: '0', frac: '' };
  const pb = parseDecimal(b) ?? { negative: false, int: '0', frac: '' };
  const s = Math.max(pa.frac.length, pb.frac.length);
  const v = (p) => BigInt(p.int + p.frac.padEnd(s, '0')) * (p.negative ? -1n : 1n);
  const t = v(pa) + v(pb);
  const neg = t < 0n;
  const digits = (neg ? -t : t).toString().padStart(s + 1, '0');
  const out = s ? `${digits.slice(0, digits.length - s)}.${digits.slice(digits.length - s)}` : digits;
  const p = parseDecimal(`${neg ? '-' : ''}${out}`);
  return `${p.negative ? '-' : ''}${p.int}${p.frac ? '.' + p.frac : ''}`;
}
/** Same decimal value, whatever trailing zeros either side carries. */
function sameDecimal(a, b) {
  return parseDecimal(a) !== null && parseDecimal(b) !== null && compareDecimal(a, b) === 0;
}

// ---------------------------------------------------------------- harness

let passed = 0;
const consoleErrors = [];
let currentStep = '(setup)';

class CheckError extends Error {}
/** A step whose endpoint the server lacks, skipped when E2E_ALLOW_MISSING=1 (otherwise it fails). */
class SkipStep extends Error {}
const ALLOW_MISSING = process.env.E2E_ALLOW_MISSING === '1';
const skipped = [];
function check(cond, message) {
  if (!cond) throw new CheckError(message);
}
function checkEq(actual, expected, what) {
  if (actual !== expected) throw new CheckError(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
}

async function step(name, fn) {
  currentStep = name;
  const t0 = Date.now();
  process.stdout.write(`• ${name} … `);
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof SkipStep)) throw e;
    skipped.push(`${name}: ${e.message}`);
    console.log(`SKIPPED (${e.message})`);
    return;
  }
  if (consoleErrors.length) throw new CheckError(`console error(s) in the browser:\n  ${consoleErrors.join('\n  ')}`);
  passed++;
  console.log(`ok (${Date.now() - t0} ms)`);
}

/** API answers a step provokes on purpose ({status, path}); Chromium logs them as console errors. */
const expectedFailures = [];
function expectFailure(status, path) {
  expectedFailures.push({ status, path });
}
function isExpected(msg) {
  const m = /^Failed to load resource: the server responded with a status of (\d+)/.exec(msg.text());
  const url = msg.location()?.url ?? '';
  return !!m && expectedFailures.some((e) => e.status === Number(m[1]) && new URL(url, BASE).pathname === e.path);
}

function watch(page, label) {
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !isExpected(msg)) consoleErrors.push(`[${label}] ${msg.text()}${msg.location()?.url ? ` (${msg.location().url})` : ''}`);
  });
  page.on('pageerror', (err) => consoleErrors.push(`[${label}] uncaught: ${err.message}`));
  page.setDefaultTimeout(TIMEOUT);
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, name), fullPage: true });
}

/** GET a JSON API path from inside the page (same origin, same cookies). */
async function apiGet(page, path) {
  return page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { Accept: 'application/json' } });
    if (!r.ok) throw new Error(`GET ${p} -> HTTP ${r.status}: ${await r.text()}`);
    return r.json();
  }, path);
}

const tid = (id) => `[data-testid="${id}"]`;

/** Fail clearly when the server was built without the gateway's keys API. */
async function requireKeysApi(page, userId) {
  const probe = await page.evaluate(async (u) => {
    const r = await fetch(`/api/keys?user_id=${encodeURIComponent(u)}`, { headers: { Accept: 'application/json' } });
    return { status: r.status, text: r.ok ? '' : (await r.text()).slice(0, 300) };
  }, userId);
  if (probe.status === 404) {
    if (ALLOW_MISSING) throw new SkipStep('no virtual keys API (GET /api/keys answered 404)');
    throw new CheckError(
      `the server has no virtual keys API: GET /api/keys answered 404 (${probe.text}). ` +
        'This UI needs a tally built with the gateway (web/src/routes/keys.rs mounted by web/src/gateway/mod.rs).',
    );
  }
  checkEq(probe.status, 200, `GET /api/keys status (${probe.text})`);
}

/** GET from Node (not the page): expected error answers stay out of the browser console. */
async function nodeGet(path) {
  const r = await fetch(`${BASE}${path}`, { headers: { Accept: 'application/json' } });
  return { status: r.status, text: await r.text() };
}

/** Fail clearly when the server does not have an endpoint of the issue 13 contract yet. */
async function requireRoute(path, what) {
  const probe = await nodeGet(path);
  if (probe.status === 404) {
    if (ALLOW_MISSING) throw new SkipStep(`no ${what} (GET ${path} answered 404)`);
    throw new CheckError(`the server has no ${what}: GET ${path} answered 404 (${probe.text}). See docs/analytics-api.md.`);
  }
  return probe;
}

/** Whether a string appears anywhere in the page: markup, input values or storage. */
async function pageHolds(page, text) {
  return page.evaluate((t) => {
    const inputs = [...document.querySelectorAll('input, textarea')].some((el) => el.value.includes(t));
    const storage = [localStorage, sessionStorage].some((st) => Object.keys(st).some((k) => (st.getItem(k) ?? '').includes(t)));
    return inputs || storage || document.documentElement.outerHTML.includes(t);
  }, text);
}

async function assistantDoneCount(page) {
  return page.locator(`${tid('message')}[data-role="assistant"]:not([data-streaming="true"])`).count();
}

/** Type a message, send it, wait until its streamed reply has finished. */
async function sendAndWait(page, text) {
  const before = await assistantDoneCount(page);
  await page.locator(tid('message-input')).fill(text);
  await page.locator(tid('send-button')).click();
  await page.waitForFunction(
    (n) =>
      document.querySelectorAll('[data-testid="message"][data-role="assistant"]:not([data-streaming="true"])').length >= n &&
      document.querySelectorAll('[data-streaming="true"]').length === 0,
    before + 1,
    { timeout: TIMEOUT },
  );
  const notice = page.locator(tid('chat-notice'));
  if (await notice.count()) throw new CheckError(`chat shows a notice after sending: ${await notice.innerText()}`);
  const last = page.locator(`${tid('message')}[data-role="assistant"]`).last();
  check((await last.locator('.content').innerText()).trim().length > 0, 'the streamed reply is empty');
}

/** Every message on screen and its costs must equal the API's strings. */
async function checkCostsAgainstApi(page, threadId) {
  const history = await apiGet(page, `/api/messages/${threadId}/history`);
  const dom = await page.$$eval(`${tid('message')}:not([data-streaming="true"])`, (els) =>
    els.map((el) => ({
      id: el.getAttribute('data-message-id'),
      role: el.getAttribute('data-role'),
      simulatedBadge: !!el.querySelector('[data-testid="simulated-badge"]'),
      cost: el.querySelector('[data-testid="message-cost"]')
        ? { amount: el.querySelector('[data-testid="message-cost"]').getAttribute('data-amount'), text: el.querySelector('[data-testid="message-cost"]').textContent.trim() }
        : null,
      rows: [...el.querySelectorAll('[data-testid="message-kind-row"]')].map((r) => ({
        kind: r.getAttribute('data-kind'),
        amount: r.querySelector('[data-testid="message-kind-amount"]')?.getAttribute('data-amount'),
        amountText: r.querySelector('[data-testid="message-kind-amount"]')?.textContent.trim(),
        unitPrice: r.querySelector('[data-testid="message-kind-unit-price"]')?.getAttribute('data-amount'),
        quantity: r.querySelector('[data-testid="message-kind-quantity"]')?.getAttribute('data-quantity'),
        version: r.querySelector('[data-testid="message-kind-version"]')?.getAttribute('data-version'),
      })),
    })),
  );
  checkEq(dom.length, history.messages.length, 'number of messages on screen vs API history');
  let costsChecked = 0;
  for (let i = 0; i < dom.length; i++) {
    const d = dom[i];
    const a = history.messages[i];
    checkEq(d.id, a.message_id, `message #${i + 1} id`);
    checkEq(d.role, a.role, `message #${i + 1} role`);
    checkEq(d.simulatedBadge, a.role === 'assistant' && a.simulated === true, `message #${i + 1} simulated badge`);
    if (!a.cost) {
      checkEq(d.cost, null, `message #${i + 1} has no cost in the API, so none is shown`);
      continue;
    }
    check(d.cost, `message #${i + 1} (${a.role}) has a cost in the API but none is shown`);
    checkEq(d.cost.amount, a.cost_total, `message #${i + 1} cost (data-amount)`);
    checkEq(d.cost.text, formatUsd(a.cost_total), `message #${i + 1} cost (text)`);
    checkEq(d.rows.length, a.cost.lines.length, `message #${i + 1} number of kind rows`);
    for (const line of a.cost.lines) {
      const row = d.rows.find((r) => r.kind === line.kind);
      check(row, `message #${i + 1}: no row for kind ${line.kind}`);
      checkEq(row.amount, line.amount, `message #${i + 1} ${line.kind} amount`);
      checkEq(row.amountText, formatUsd(line.amount), `message #${i + 1} ${line.kind} amount text`);
      checkEq(row.unitPrice, line.unit_price, `message #${i + 1} ${line.kind} unit price`);
      checkEq(row.quantity, line.quantity, `message #${i + 1} ${line.kind} quantity`);
      checkEq(row.version, line.price_version_id, `message #${i + 1} ${line.kind} price version`);
    }
    costsChecked++;
  }
  const total = page.locator(tid('thread-total'));
  await page.waitForFunction((t) => document.querySelector('[data-testid="thread-total"]')?.getAttribute('data-amount') === t, history.total_cost);
  checkEq(await total.getAttribute('data-amount'), history.total_cost, 'thread total (data-amount)');
  checkEq((await total.innerText()).trim(), formatUsd(history.total_cost), 'thread total (text)');
  return { history, costsChecked };
}

// ---------------------------------------------------------------- the run

/** A request from Node to the token-mode node, with a credential (or none). */
async function authFetch(path, credential, init = {}) {
  const headers = { Accept: 'application/json', ...(init.body ? { 'Content-Type': 'application/json' } : {}), ...(credential ? { Authorization: `Bearer ${credential}` } : {}) };
  const r = await fetch(`${AUTH_URL}${path}`, { ...init, headers });
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body };
}

/** Sign in on the sign-in screen and wait until the header says who is signed in. */
async function signInAs(p, credential, expected) {
  await p.locator(tid('sign-in-credential')).fill(credential);
  await p.locator(tid('sign-in-submit')).click();
  await Promise.race([
    p.locator(tid('signed-in-as')).waitFor(),
    p.locator(tid('sign-in-error')).waitFor().then(async () => {
      throw new CheckError(`signing in as ${expected} failed: ${await p.locator(tid('sign-in-error')).innerText()}`);
    }),
  ]);
  checkEq(await p.locator(tid('signed-in-as')).innerText(), expected, 'signed in as');
}

/** The token-mode steps (issue 15) on a fresh browser context; the page is kept for failure screenshots. */
async function tokenModeSteps(browser, pages) {
  const ctx = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  await ctx.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: AUTH_URL }).catch(() => {});
  const tp = await ctx.newPage();
  pages.token = tp;
  watch(tp, 'token');
  const stamp = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  const member = `e2e-tok-${stamp}`;
  const other = `e2e-oth-${stamp}`;
  let memberKey = '';
  let memberThread = '';
  let otherThread = '';

  await step(`token mode at ${AUTH_URL}: the API refuses calls without a credential; the UI asks to sign in`, async () => {
    const anon = await authFetch('/api/threads/', null);
    checkEq(anon.status, 401, `GET /api/threads/ without a credential (${JSON.stringify(anon.body)})`);
    checkEq(anon.body?.code, 'unauthenticated', 'error code without a credential');
    const who = await authFetch('/api/auth/whoami', null);
    checkEq(who.status, 200, 'whoami without a credential');
    checkEq(who.body?.mode, 'token', 'whoami mode');
    checkEq(who.body?.caller, 'anonymous', 'whoami caller without a credential');

    await tp.goto(`${AUTH_URL}/`);
    await tp.locator(tid('sign-in')).waitFor();
    checkEq(await tp.locator(tid('sign-in-credential')).getAttribute('type'), 'password', 'the credential field is a password field');
    checkEq(await tp.locator(tid('open-mode-banner')).count(), 0, 'no open-mode banner in token mode');
    checkEq(await tp.locator(tid('nav-chat')).count(), 0, 'no navigation before sign-in');
    await shot(tp, '12-sign-in.png');

    // A wrong credential is refused with its code and not kept.
    expectFailure(401, '/api/auth/whoami');
    await tp.locator(tid('sign-in-credential')).fill(`tk-000000000000-${'0'.repeat(64)}`);
    await tp.locator(tid('sign-in-submit')).click();
    await tp.locator(tid('sign-in-error')).waitFor();
    check((await tp.locator(tid('sign-in-error')).innerText()).includes('invalid_credentials'), 'the refusal shows invalid_credentials');
    checkEq(await tp.evaluate(() => sessionStorage.getItem('tally.credential') ?? localStorage.getItem('tally.credential')), null, 'a refused credential is not stored');
  });

  await step('token mode: the admin token signs in, creates a user, a thread and a key for them', async () => {
    await signInAs(tp, ADMIN_TOKEN, 'admin');
    checkEq(await tp.evaluate(() => sessionStorage.getItem('tally.credential')), ADMIN_TOKEN, 'the admin token is kept in sessionStorage');
    checkEq(await tp.evaluate(() => localStorage.getItem('tally.credential')), null, 'not in localStorage without "remember me"');
    await tp.locator(tid('nav-budgets')).waitFor();
    await tp.locator(tid('nav-reconciliation')).waitFor();

    // Another user with a thread, made through the API: the member must not see it.
    const mk = await authFetch('/api/users/', ADMIN_TOKEN, { method: 'POST', body: JSON.stringify({ user_id: other }) });
    checkEq(mk.status, 201, `create ${other} as admin (${JSON.stringify(mk.body)})`);
    const ot = await authFetch('/api/threads/', ADMIN_TOKEN, { method: 'POST', body: JSON.stringify({ user_id: other }) });
    checkEq(ot.status, 201, `thread for ${other} as admin (${JSON.stringify(ot.body)})`);
    otherThread = ot.body.thread_id;

    // The member, through the UI (the admin may act as any user).
    await tp.locator(tid('user-id-input')).fill(member);
    await tp.locator(tid('user-id-submit')).click();
    await tp.locator(tid('new-thread-button')).waitFor();
    checkEq(await tp.locator(tid('current-user')).innerText(), member, 'the admin acts as the new user');
    await tp.waitForFunction(() => !!document.querySelector('[data-testid="model-select"]')?.value);
    await tp.locator(tid('new-thread-button')).click();
    await tp.waitForURL(/\/threads\/[^/]+$/);
    memberThread = decodeURIComponent(new URL(tp.url()).pathname.split('/').pop());
    await tp.locator(`${tid('thread-item')}[data-thread-id="${memberThread}"]`).waitFor();

    await tp.locator(tid('tab-keys')).click();
    await tp.locator(tid('new-key-button')).click();
    await tp.locator(tid('key-form-name')).fill('e2e token-mode key');
    await tp.locator(tid('key-form-submit')).click();
    await Promise.race([
      tp.locator(tid('key-secret-value')).waitFor(),
      tp.locator(tid('key-form-error')).waitFor().then(async () => {
        throw new CheckError(`creating the key as admin failed: ${await tp.locator(tid('key-form-error')).innerText()}`);
      }),
    ]);
    memberKey = await tp.locator(tid('key-secret-value')).inputValue();
    check(/^tk-[0-9a-f]{12}-[0-9a-f]{64}$/.test(memberKey), `the new key has the tk-<12 hex>-<64 hex> shape (${memberKey.slice(0, 16)}…)`);
    await tp.locator(tid('key-secret-dismiss')).click();
    const who = await authFetch('/api/auth/whoami', memberKey);
    checkEq(who.body?.caller, 'user', 'whoami caller of the new key');
    checkEq(who.body?.user_id, member, 'whoami user of the new key');
  });

  await step('token mode: sign out forgets the admin token', async () => {
    await tp.locator(tid('sign-out')).click();
    await tp.locator(tid('sign-in')).waitFor();
    checkEq(await tp.evaluate(() => sessionStorage.getItem('tally.credential') ?? localStorage.getItem('tally.credential')), null, 'no credential kept after sign-out');
    check(!(await pageHolds(tp, ADMIN_TOKEN)), 'the admin token is nowhere in the page or storage after sign-out');
  });

  await step("token mode: the user's key sees only that user's threads, and no admin pages", async () => {
    await signInAs(tp, memberKey, member);
    checkEq(await tp.locator(tid('signed-in')).getAttribute('data-caller'), 'user', 'caller kind in the header');
    checkEq(await tp.locator(tid('current-user')).innerText(), member, 'the chat acts as the signed-in user');
    checkEq(await tp.locator(tid('switch-user')).count(), 0, 'no "switch user" for a user key');
    checkEq(await tp.locator(tid('user-id-input')).count(), 0, 'no user-id entry for a user key');
    checkEq(await tp.locator(tid('nav-budgets')).count(), 0, 'Budgets hidden from a user key');
    checkEq(await tp.locator(tid('nav-reconciliation')).count(), 0, 'Reconciliation hidden from a user key');

    await tp.locator(`${tid('thread-item')}[data-thread-id="${memberThread}"]`).waitFor();
    const shown = await tp.locator(tid('thread-item')).evaluateAll((els) => els.map((e) => e.getAttribute('data-thread-id')));
    check(!shown.includes(otherThread), `the other user's thread ${otherThread} is listed for ${member}`);
    const own = await authFetch(`/api/threads/?user_id=${encodeURIComponent(member)}`, memberKey);
    checkEq(own.status, 200, 'own threads with the key');
    checkEq(JSON.stringify([...shown].sort()), JSON.stringify(own.body.map((t) => t.thread_id).sort()), 'the listed threads are the API answer for the key');
    check(own.body.every((t) => t.user_id === member), 'the API lists only the member threads for the key');
    const theirs = await authFetch(`/api/threads/?user_id=${encodeURIComponent(other)}`, memberKey);
    checkEq(theirs.status, 403, `another user's threads with the key (${JSON.stringify(theirs.body)})`);
    checkEq(theirs.body?.code, 'forbidden', "error code for another user's data");
    const admin = await authFetch('/api/budgets', memberKey);
    checkEq(admin.status, 403, 'an admin-only route with the key');

    // Chat works with the key (the stream request carries it too).
    await tp.locator(`${tid('thread-item')}[data-thread-id="${memberThread}"]`).click();
    await tp.waitForFunction(() => !document.querySelector('[data-testid="message-input"]')?.disabled);
    await sendAndWait(tp, 'Hello from a signed-in user.');

    await tp.locator(tid('tab-keys')).click();
    await tp.locator(tid('keys-list')).waitFor();
    checkEq(await tp.locator(tid('new-key-button')).count(), 0, 'no "New key" for a user key');
    await tp.locator(tid('key-row')).first().waitFor();
    await shot(tp, '13-token-user.png');

    // A deep link to an admin page explains instead of showing it (the credential survives the reload).
    await tp.goto(`${AUTH_URL}/budgets`);
    await tp.locator(tid('admin-only')).waitFor();
    checkEq(await tp.locator(tid('signed-in-as')).innerText(), member, 'still signed in after a reload');

    // The live dashboard reads its stream with the key in a header: live, and only this user's costs.
    await tp.locator(tid('nav-dashboard')).click();
    await tp.waitForFunction(() => document.querySelector('[data-testid="dashboard-connection"]')?.textContent === 'live');
    await tp.locator(`${tid('dashboard-by-user-row')}`).first().waitFor();
    const users = await tp.locator(tid('dashboard-by-user-row')).evaluateAll((els) => els.map((e) => e.getAttribute('data-key')));
    checkEq(JSON.stringify(users), JSON.stringify([member]), 'users on the dashboard of a user key');
    await shot(tp, '14-token-dashboard.png');
  });
  await ctx.close();
  pages.token = null;
}

async function main() {
  await mkdir(SHOTS, { recursive: true });
  const profile = await mkdtemp(join(tmpdir(), 'tally-e2e-'));
  // launch() gives every run a fresh temporary profile; a new context keeps storage empty too.
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run', '--disable-quic', '--disable-sync', `--disk-cache-dir=${join(profile, 'cache')}`],
  });
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  // Lets the Keys step read back what the copy button wrote (the UI has a fallback without it).
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: BASE }).catch(() => {});
  const page = await context.newPage();
  watch(page, 'chat');
  let dash = null;
  let ana = null;
  let rec = null;
  const extra = { token: null };
  const userId = `e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 6)}`;
  let threadId = '';
  let threadModel = '';

  try {
    await step(`open ${BASE}/ and enter user id ${userId}`, async () => {
      await page.goto(`${BASE}/`);
      await page.locator(tid('user-id-input')).waitFor();
      await shot(page, '01-user.png');
      await page.locator(tid('user-id-input')).fill(userId);
      await page.locator(tid('user-id-submit')).click();
      await page.locator(tid('new-thread-button')).waitFor();
      const user = await apiGet(page, `/api/users/${encodeURIComponent(userId)}`);
      checkEq(user.user_id, userId, 'created user');
      checkEq(await page.evaluate(() => localStorage.getItem('tally.userId')), userId, 'user id remembered in localStorage');
    });

    await step('create a thread with the default model', async () => {
      const models = await apiGet(page, '/api/models');
      const def = models.find((m) => m.is_default);
      check(def, 'no model has is_default=true in /api/models');
      await page.waitForFunction((n) => document.querySelector('[data-testid="model-select"]')?.value === n, def.name);
      await page.locator(tid('new-thread-button')).click();
      await page.waitForURL(/\/threads\/[^/]+$/);
      threadId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop());
      await page.locator(`${tid('thread-item')}[data-thread-id="${threadId}"]`).waitFor();
      await page.waitForFunction(() => !document.querySelector('[data-testid="message-input"]')?.disabled);
      const t = await apiGet(page, `/api/threads/${threadId}`);
      checkEq(t.user_id, userId, 'thread owner');
      checkEq(t.model, def.name, 'thread model');
      threadModel = t.model;
    });

    await step('send two messages and wait for each streamed reply', async () => {
      await sendAndWait(page, 'Hello! Please tell me how metering works.');
      await sendAndWait(page, 'And how is an invoice rounded?');
      checkEq(await page.locator(`${tid('message')}[data-role="assistant"]`).count(), 2, 'assistant replies on screen');
    });

    await step('per-message costs and the thread total equal the API', async () => {
      const { history, costsChecked } = await checkCostsAgainstApi(page, threadId);
      check(costsChecked >= 2, `expected at least 2 priced messages, found ${costsChecked}`);
      const item = page.locator(`${tid('thread-item')}[data-thread-id="${threadId}"] ${tid('thread-item-cost')}`);
      await page.waitForFunction(
        ([id, t]) => document.querySelector(`[data-thread-id="${id}"] [data-testid="thread-item-cost"]`)?.getAttribute('data-amount') === t,
        [threadId, history.total_cost],
      );
      checkEq((await item.innerText()).trim(), formatUsd(history.total_cost), 'thread list cost');
      await shot(page, '02-chat.png');
    });

    await step('Billing: generate an invoice, open it, mark it paid', async () => {
      await page.locator(tid('tab-billing')).click();
      await page.locator(tid('generate-invoice')).click();
      await page.locator(tid('invoice-row')).first().waitFor();
      const invoices = await apiGet(page, `/api/billing/invoices/user/${encodeURIComponent(userId)}`);
      checkEq(invoices.length, 1, 'invoices in the API');
      const inv = invoices[0];
      checkEq(inv.thread_id, threadId, 'invoice thread');
      const row = page.locator(`${tid('invoice-row')}[data-invoice-id="${inv.id}"]`);
      await row.waitFor();
      checkEq(await row.locator(tid('invoice-total')).getAttribute('data-amount'), inv.total, 'invoice total (data-amount)');
      checkEq((await row.locator(tid('invoice-total')).innerText()).trim(), formatUsd(inv.total), 'invoice total (text)');
      const history = await apiGet(page, `/api/messages/${threadId}/history`);
      check(sameDecimal(inv.subtotal, history.total_cost), `invoice subtotal ${inv.subtotal} != thread total ${history.total_cost}`);
      const detail = page.locator(`${tid('invoice-detail')}[data-invoice-id="${inv.id}"]`);
      await detail.waitFor();
      checkEq(await detail.locator('[data-testid="invoice-line"]').count(), inv.lines.length, 'invoice line items shown');
      await shot(page, '03-billing.png');
      await page.locator(tid('mark-paid')).click();
      await page.waitForFunction((id) => document.querySelector(`[data-invoice-id="${id}"] [data-testid="invoice-status"]`)?.textContent === 'paid', inv.id);
      const after = await apiGet(page, `/api/billing/invoices/${inv.id}`);
      checkEq(after.status, 'paid', 'invoice status in the API');
      await shot(page, '03b-billing-paid.png');
    });

    await step('Data: user details, invoice summaries, raw usage events', async () => {
      await page.locator(tid('tab-data')).click();
      await page.waitForFunction((u) => document.querySelector('[data-testid="user-details-id"]')?.textContent === u, userId);
      await page.locator(tid('invoice-summary-row')).first().waitFor();
      const page1 = await apiGet(page, `/api/usage/events?user_id=${encodeURIComponent(userId)}&limit=100`);
      check(Array.isArray(page1.events), 'GET /api/usage/events answers {events, next_cursor}');
      const events = page1.events;
      check(events.length >= 2, `expected >= 2 usage events, API has ${events.length}`);
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid="usage-event-row"]').length === n, events.length);
      for (const ev of events) {
        const row = page.locator(`${tid('usage-event-row')}[data-event-id="${ev.event_id}"]`);
        checkEq(await row.getAttribute('data-status'), ev.was_successful ? 'success' : 'failed', `event ${ev.event_id} status`);
        checkEq(await row.locator('[data-amount]').getAttribute('data-amount'), ev.cost, `event ${ev.event_id} cost (data-amount)`);
        check((await row.innerText()).includes(ev.task ?? '—'), `event ${ev.event_id} shows its task`);
      }
      checkEq(await page.locator(tid('usage-events-more')).count(), page1.next_cursor ? 1 : 0, '"Load more" only when the API has a next page');
      // The cursor pages through every event exactly once.
      const one = await apiGet(page, `/api/usage/events?user_id=${encodeURIComponent(userId)}&limit=1`);
      check(one.events.length === 1 && one.next_cursor, 'a page of one event has a next cursor');
      const two = await apiGet(page, `/api/usage/events?user_id=${encodeURIComponent(userId)}&limit=1&cursor=${encodeURIComponent(one.next_cursor)}`);
      checkEq(two.events[0]?.event_id, events[1].event_id, 'the second page starts with the second event');
      await shot(page, '04-data.png');
    });

    await step('Keys: create a key with a budget, see its secret once, rotate it, revoke it', async () => {
      await requireKeysApi(page, userId);
      await page.locator(tid('tab-keys')).click();
      await page.locator(tid('keys-list')).waitFor();
      await page.locator(tid('new-key-button')).click();
      await page.locator(tid('key-form-name')).fill('e2e key');
      await page.locator(tid('key-form-add-budget')).click();
      await page.locator(tid('budget-row-amount')).fill('5.00');
      await page.locator(tid('budget-row-period')).selectOption('daily');
      await page.locator(tid('budget-row-threshold')).fill('80');
      await page.locator(tid('key-form-submit')).click();
      const secretBox = page.locator(tid('key-secret-value'));
      await Promise.race([
        secretBox.waitFor(),
        page.locator(tid('key-form-error')).waitFor().then(async () => {
          throw new CheckError(`creating the key failed: ${await page.locator(tid('key-form-error')).innerText()}`);
        }),
      ]);
      const secret = await secretBox.inputValue();
      check((await page.locator(tid('key-secret')).innerText()).includes('you will not see it again'), 'the secret panel says it is shown once');

      const keys = await apiGet(page, `/api/keys?user_id=${encodeURIComponent(userId)}`);
      checkEq(keys.length, 1, 'keys of the user in the API');
      const k = keys[0];
      checkEq(k.name, 'e2e key', 'key name');
      checkEq(k.status, 'active', 'key status');
      checkEq(k.allowed_models, null, 'allowed models (all)');
      const prefix = `tk-${k.public_id}-`;
      check(secret.startsWith(prefix) && secret.length > prefix.length, `secret "${secret.slice(0, prefix.length + 2)}…" does not start with ${prefix}`);
      check(!JSON.stringify(keys).includes(secret.slice(prefix.length)), 'the key list from the API carries the secret');
      checkEq(k.budgets.length, 1, 'budgets of the key');
      const b = k.budgets[0];
      checkEq(b.period, 'daily', 'budget period');
      check(sameDecimal(b.max_budget, '5'), `budget max ${b.max_budget}`);
      check(sameDecimal(b.alert_threshold, '0.8'), `budget alert threshold ${b.alert_threshold}`);

      await page.locator(tid('key-secret-copy')).click();
      await page.locator(tid('key-secret-copied')).waitFor();
      const clip = await page.evaluate(() => navigator.clipboard.readText()).catch(() => null);
      if (clip !== null) checkEq(clip, secret, 'clipboard after copy');

      const row = page.locator(`${tid('key-row')}[data-key-id="${k.key_id}"]`);
      await row.waitFor();
      checkEq(await row.getAttribute('data-status'), 'active', 'listed key status');
      check((await row.innerText()).includes(k.public_id), 'the listed key shows its public id');
      const detail = page.locator(`${tid('key-detail')}[data-key-id="${k.key_id}"]`);
      await detail.waitFor();
      const budget = detail.locator(`${tid('key-budget')}[data-period="daily"]`);
      await budget.waitFor();
      checkEq(await budget.locator(tid('key-budget-max')).getAttribute('data-amount'), b.max_budget, 'budget max (data-amount)');
      checkEq((await budget.locator(tid('key-budget-max')).innerText()).trim(), formatUsd(b.max_budget), 'budget max (text)');
      await detail.locator(tid('key-spend-total')).waitFor();
      const spend = await apiGet(page, `/api/billing/spend/${k.key_id}?period=monthly`);
      checkEq(await detail.locator(tid('key-spend-total')).getAttribute('data-amount'), spend.total_cost, 'monthly spend (data-amount)');
      await shot(page, '04b-keys-created.png');

      await page.locator(tid('key-secret-dismiss')).click();
      await page.locator(tid('key-secret')).waitFor({ state: 'detached' });
      check(!(await pageHolds(page, secret)), 'the secret is still in the page or storage after dismissing it');

      await detail.locator(tid('key-rotate')).click();
      await detail.locator(tid('key-rotate-confirm')).click();
      await secretBox.waitFor();
      const rotated = await secretBox.inputValue();
      check(rotated !== secret && rotated.startsWith(prefix), 'rotating shows a new secret with the same public id');
      await page.locator(tid('key-secret-dismiss')).click();
      await page.locator(tid('key-secret')).waitFor({ state: 'detached' });

      await detail.locator(tid('key-revoke')).click();
      await detail.locator(tid('key-revoke-confirm')).click();
      await page.locator(`${tid('key-row')}[data-key-id="${k.key_id}"][data-status="revoked"]`).waitFor();
      const after = await apiGet(page, `/api/keys/${k.key_id}`);
      checkEq(after.status, 'revoked', 'key status in the API after revoking');
      check(after.revoked_at, 'revoked_at is set');
      checkEq(await detail.locator(tid('key-revoke')).count(), 0, 'a revoked key offers no revoke button');
      check(!(await pageHolds(page, rotated)), 'the rotated secret is still in the page or storage');
      await shot(page, '04c-keys-revoked.png');
    });

    let newVersionId = '';
    await step(`Settings: add output_tokens price 9.99 for ${threadModel}`, async () => {
      await page.locator(tid('tab-settings')).click();
      await page.locator(`${tid('price-form-model')} option[value="${threadModel}"]`).waitFor({ state: 'attached' });
      await page.locator(tid('price-form-model')).selectOption(threadModel);
      await page.locator(tid('price-form-kind')).selectOption('output_tokens');
      await page.locator(tid('price-form-price')).fill('9.99');
      await page.locator(tid('price-form-submit')).click();
      const result = page.locator(tid('price-form-result'));
      await result.waitFor();
      const text = await result.innerText();
      check(text.startsWith('Saved'), `price form says: ${text}`);
      await page.locator(`${tid('price-history-row')}[data-kind="output_tokens"][data-current="true"][data-price="9.99"]`).waitFor();
      const versions = await apiGet(page, `/api/prices?model=${encodeURIComponent(threadModel)}&kind=output_tokens&history=true`);
      const current = versions.filter((v) => v.is_current);
      checkEq(current.length, 1, 'current output_tokens versions');
      check(sameDecimal(current[0].price, '9.99'), `current output_tokens price is ${current[0].price}`);
      check(versions.length >= 2, 'the old version stays in the history');
      const rows = await page.locator(`${tid('price-history-row')}[data-kind="output_tokens"]`).count();
      checkEq(rows, versions.length, 'output_tokens history rows shown');
      newVersionId = current[0].id;
      await shot(page, '05-settings.png');
    });

    await step('a new message is priced with the new output_tokens version', async () => {
      await sendAndWait(page, 'One more, priced at the new rate please.');
      const last = page.locator(`${tid('message')}[data-role="assistant"]`).last();
      const row = last.locator(`${tid('message-kind-row')}[data-kind="output_tokens"]`);
      await row.waitFor();
      const price = row.locator(tid('message-kind-unit-price'));
      check(sameDecimal(await price.getAttribute('data-amount'), '9.99'), `output unit price is ${await price.getAttribute('data-amount')}`);
      check((await price.innerText()).includes('9.99'), `output unit price text is "${await price.innerText()}"`);
      checkEq(await row.locator(tid('message-kind-version')).getAttribute('data-version'), newVersionId, 'price version used');
      await checkCostsAgainstApi(page, threadId);
    });

    await step('dashboard total updates when a message is sent from another page', async () => {
      dash = await context.newPage();
      watch(dash, 'dashboard');
      await dash.goto(`${BASE}/dashboard`);
      await dash.waitForFunction(() => !!document.querySelector('[data-testid="dashboard-total-cost"]')?.getAttribute('data-amount'));
      const before = await dash.locator(tid('dashboard-total-cost')).getAttribute('data-amount');
      check(parseDecimal(before) !== null, `dashboard total is not a decimal: ${before}`);
      checkEq((await dash.locator(tid('dashboard-total-cost')).innerText()).trim(), formatUsd(before), 'dashboard total text');
      check(/^\d+(\.\d+)?$/.test((await dash.locator(tid('dashboard-events-per-second')).innerText()).trim()), 'events per second is shown');
      const fresh1 = await dash.locator(tid('dashboard-updated')).innerText();
      check(/^updated .* ago$/.test(fresh1), `freshness text: ${fresh1}`);
      await dash.waitForTimeout(1200);
      const fresh2 = await dash.locator(tid('dashboard-updated')).innerText();
      check(fresh1 !== fresh2, `freshness does not tick: "${fresh1}" then "${fresh2}"`);
      await dash.locator(tid('dashboard-by-thread-row')).first().waitFor();

      await sendAndWait(page, 'This one should show up on the dashboard.');
      await dash.waitForFunction((b) => {
        const now = document.querySelector('[data-testid="dashboard-total-cost"]')?.getAttribute('data-amount');
        return now && now !== b;
      }, before, { timeout: Math.max(TIMEOUT, 15_000) });
      const after = await dash.locator(tid('dashboard-total-cost')).getAttribute('data-amount');
      check(compareDecimal(after, before) > 0, `dashboard total went from ${before} to ${after}`);
      checkEq((await dash.locator(tid('dashboard-total-cost')).innerText()).trim(), formatUsd(after), 'dashboard total text after');
      const history = await apiGet(page, `/api/messages/${threadId}/history`);
      // The list is a top N: on a busy server this thread may not be in it; when it is, its cost must match.
      await dash.waitForFunction(
        ([id, t]) => {
          const row = document.querySelector(`[data-testid="dashboard-by-thread-row"][data-key="${id}"] [data-amount]`);
          return !row || row.getAttribute('data-amount') === t;
        },
        [threadId, history.total_cost],
      );
      await dash.locator(tid('dashboard-message-row')).first().waitFor();
      await shot(dash, '06-dashboard.png');
    });

    await step('a deep link to the thread loads it directly', async () => {
      await page.goto(`${BASE}/threads/${threadId}`);
      await page.locator(`${tid('message')}[data-role="assistant"]`).first().waitFor();
      await checkCostsAgainstApi(page, threadId);
      await shot(page, '07-deep-link.png');
    });
    await step('Analytics: summary cost equals the by-user table, filters, trends, forecast note, CSV export', async () => {
      await requireRoute('/api/analytics/summary', 'analytics API');
      const fc = await nodeGet('/api/forecasts?scope=total&horizon=30');
      if (fc.status === 404 && ALLOW_MISSING) {
        skipped.push('Analytics forecast: GET /api/forecasts answered 404 (the page shows a note instead)');
        expectFailure(404, '/api/forecasts');
      }
      // Without 14 days of history the forecast answers 422 insufficient_history; the page shows a note.
      expectFailure(422, '/api/forecasts');
      ana = await context.newPage();
      watch(ana, 'analytics');
      await ana.goto(`${BASE}/analytics`);
      await ana.waitForFunction(() => !!document.querySelector('[data-testid="analytics-total-cost"]')?.getAttribute('data-amount'));
      await ana.locator(tid('analytics-by-user-row')).first().waitFor();
      const from = await ana.locator(tid('analytics-from')).inputValue();
      const to = await ana.locator(tid('analytics-to')).inputValue();
      checkEq(to, new Date().toISOString().slice(0, 10), 'the default range ends today (UTC)');
      const qs = `date_from=${from}&date_to=${to}`;
      const summary = await apiGet(ana, `/api/analytics/summary?${qs}`);
      const total = ana.locator(tid('analytics-total-cost'));
      checkEq(await total.getAttribute('data-amount'), summary.figures.cost, 'summary total (data-amount)');
      checkEq((await total.innerText()).trim(), formatUsd(summary.figures.cost), 'summary total (text)');
      checkEq((await ana.locator(tid('analytics-requests')).innerText()).trim(), String(summary.figures.requests), 'requests');
      const byUser = await apiGet(ana, `/api/analytics/by-user?${qs}`);
      await ana.waitForFunction((n) => document.querySelectorAll('[data-testid="analytics-by-user-row"]').length === n, byUser.groups.length);
      const shown = await ana.$$eval('[data-testid="analytics-by-user-cost"]', (els) => els.map((e) => e.getAttribute('data-amount')));
      const sumShown = shown.reduce((acc, x) => addDecimal(acc, x), '0');
      check(sameDecimal(sumShown, summary.figures.cost), `sum of the by-user table ${sumShown} != summary cost ${summary.figures.cost}`);
      check(sameDecimal(await ana.locator(tid('analytics-by-user-sum')).getAttribute('data-amount'), summary.figures.cost), 'by-user total row equals the summary');
      const mine = byUser.groups.find((g) => g.user_id === userId);
      check(mine, `user ${userId} is missing from /api/analytics/by-user`);
      const daily = await apiGet(ana, `/api/analytics/trends?${qs}&period=daily`);
      const bucketSum = daily.buckets.reduce((acc, b) => addDecimal(acc, b.figures.cost), '0');
      check(sameDecimal(bucketSum, summary.figures.cost), `daily buckets add up to ${bucketSum}, the summary says ${summary.figures.cost}`);
      await ana.waitForFunction((n) => Number(document.querySelector('[data-testid="analytics-trend-chart"]')?.getAttribute('data-rows')) >= n, daily.buckets.length);
      await ana.locator(tid('analytics-period-weekly')).click();
      const weekly = await apiGet(ana, `/api/analytics/trends?${qs}&period=weekly`);
      await ana.waitForFunction(
        (n) => {
          const c = document.querySelector('[data-testid="analytics-trend-chart"]');
          return c && Number(c.getAttribute('data-rows')) - Number(c.getAttribute('data-forecast-only') ?? 0) === n;
        },
        weekly.buckets.length,
      );
      await ana.locator(tid('analytics-period-daily')).click();

      // The forecast, or the plain note when there is not enough history.
      if (fc.status === 200) {
        const f = await apiGet(ana, '/api/forecasts?scope=total&horizon=30');
        await ana.locator(tid('analytics-forecast-total')).waitFor();
        checkEq(await ana.locator(tid('analytics-forecast-total')).getAttribute('data-amount'), f.total_mean, 'forecast total');
      } else if (!(fc.status === 404 && ALLOW_MISSING)) {
        checkEq(fc.status, 422, `GET /api/forecasts status (${fc.text})`);
        const note = ana.locator(tid('analytics-forecast-note'));
        await note.waitFor();
        checkEq(await note.getAttribute('data-code'), 'insufficient_history', 'forecast note code');
      }

      // CSV export: the exact strings as served.
      const [download] = await Promise.all([ana.waitForEvent('download'), ana.locator(tid('analytics-by-user-csv')).click()]);
      const csv = await readFile(await download.path(), 'utf8');
      const lines = csv.trim().split('\r\n');
      checkEq(lines.length, byUser.groups.length + 1, 'CSV lines (header + groups)');
      check(lines[0].startsWith('user_id,requests,failed,success_rate,cost,'), `CSV header: ${lines[0]}`);
      const row = lines.find((l) => l.startsWith(`${userId},`));
      check(row && row.split(',')[4] === mine.figures.cost, `CSV cost of ${userId}: ${row} (API ${mine.figures.cost})`);
      await shot(ana, '08-analytics.png');

      // Filter on the user: the totals follow.
      await ana.locator(tid('analytics-filter-user_id')).fill(userId);
      await ana.locator(tid('analytics-apply')).click();
      await ana.waitForFunction((c) => document.querySelector('[data-testid="analytics-total-cost"]')?.getAttribute('data-amount') === c, mine.figures.cost);
      await ana.waitForFunction(() => document.querySelectorAll('[data-testid="analytics-by-user-row"]').length === 1);
      await shot(ana, '08b-analytics-user.png');
    });

    await step('Budgets: create with thresholds, see its bar, send a test alert, disable, delete', async () => {
      await requireRoute('/api/budgets', 'budgets API');
      ana = ana ?? (await context.newPage());
      await ana.goto(`${BASE}/budgets`);
      await ana.locator(tid('budget-list')).waitFor({ state: 'attached' });
      const name = `e2e budget ${userId}`;
      await ana.locator(tid('new-budget-button')).click();
      await ana.locator(tid('budget-form-name')).fill(name);
      expectFailure(400, '/api/budgets');
      expectFailure(422, '/api/budgets');
      await ana.locator(tid('budget-form-amount')).fill('-5');
      await ana.locator(tid('budget-form-period')).selectOption('daily');
      await ana.locator(tid('budget-form-scope-kind')).selectOption('user');
      await ana.locator(tid('budget-form-scope-value')).fill(userId);
      await ana.locator(tid('budget-form-thresholds')).fill('50, 80, 100');
      await ana.locator(tid('budget-form-emails')).fill('ops@example.com');
      await ana.locator(tid('budget-form-submit')).click();
      const err = ana.locator(tid('budget-form-error'));
      await err.waitFor();
      const code = await err.getAttribute('data-code');
      check(code && code !== 'invalid_form', `a negative amount is refused by the server with a code (got ${code}: ${await err.innerText()})`);

      await ana.locator(tid('budget-form-amount')).fill('0.01');
      await ana.locator(tid('budget-form-submit')).click();
      const card = ana.locator(`${tid('alert-budget')}[data-name="${name}"]`);
      await Promise.race([
        card.waitFor(),
        ana.waitForFunction((c) => {
          const e = document.querySelector('[data-testid="budget-form-error"]');
          return e && e.getAttribute('data-code') !== c;
        }, code).then(async () => {
          throw new CheckError(`creating the budget failed: ${await err.innerText()}`);
        }),
      ]);
      const list = await apiGet(ana, '/api/budgets');
      const b = list.budgets.find((x) => x.name === name);
      check(b, 'the new budget is in GET /api/budgets');
      check(sameDecimal(b.amount, '0.01'), `budget amount ${b.amount}`);
      check(b.thresholds.length === 3 && ['50', '80', '100'].every((t, i) => sameDecimal(String(b.thresholds[i]), t)), `thresholds ${JSON.stringify(b.thresholds)}`);
      checkEq(b.scope.kind, 'user', 'scope kind');
      checkEq(b.scope.value, userId, 'scope value');
      const bar = card.locator(tid('alert-budget-bar'));
      await bar.waitFor();
      const report = await apiGet(ana, '/api/budgets/check');
      const c = report.budgets.find((x) => x.budget.budget_id === b.budget_id);
      check(c, 'the budget is in GET /api/budgets/check');
      checkEq(await card.locator(tid('alert-budget-spent')).getAttribute('data-amount'), c.spent, 'spent (data-amount)');
      checkEq(await card.locator(tid('alert-budget-threshold')).count(), 3, 'threshold marks on the bar');
      checkEq(await card.getAttribute('data-status'), c.status, 'status');
      check((await card.locator(tid('alert-budget-breach')).innerText()).length > 0, 'projected breach shown');

      await card.locator(tid('alert-budget-test')).click();
      await card.locator(tid('alert-budget-test-result')).waitFor();
      await ana.locator(`${tid('delivery-row')}[data-source="test"]`).first().waitFor();
      const log = await apiGet(ana, `/api/alerts/deliveries?budget_id=${b.budget_id}&limit=10`);
      check(log.deliveries.some((d) => d.source === 'test'), 'a test delivery is in the log');
      await shot(ana, '09-budgets.png');

      await card.locator(tid('alert-budget-toggle')).click();
      await ana.locator(`${tid('alert-budget')}[data-name="${name}"][data-enabled="false"]`).waitFor();
      checkEq((await apiGet(ana, `/api/budgets/${b.budget_id}`)).enabled, false, 'disabled in the API');
      await card.locator(tid('alert-budget-delete')).click();
      await card.locator(tid('alert-budget-delete-confirm')).click();
      await card.waitFor({ state: 'detached' });
      // Asked from Node, not the page: the expected 404 would show up as a console error there.
      checkEq((await nodeGet(`/api/budgets/${b.budget_id}`)).status, 404, 'the deleted budget is gone');
    });

    await step('Settings: stale prices are marked and can be verified', async () => {
      const probe = await apiGet(page, '/api/prices');
      if (ALLOW_MISSING && !probe.some((v) => 'stale' in v)) throw new SkipStep('GET /api/prices carries no `stale` yet');
      await page.locator(tid('tab-settings')).click();
      const card = page.locator(tid('price-freshness'));
      await page.waitForFunction(() => !!document.querySelector('[data-testid="price-freshness"]')?.getAttribute('data-stale-count'));
      const current = await apiGet(page, '/api/prices');
      check(current.every((v) => typeof v.stale === 'boolean'), 'GET /api/prices carries `stale` on every version');
      const stale = current.filter((v) => v.stale);
      checkEq(await card.getAttribute('data-stale-count'), String(stale.length), 'stale prices counted');
      checkEq(await page.locator(tid('stale-price-row')).count(), stale.length, 'stale price rows');
      if (stale.length === 0) {
        await page.locator(tid('price-freshness-ok')).waitFor();
        await shot(page, '10-settings-prices.png');
        return;
      }
      await shot(page, '10-settings-prices.png');
      const v = stale[0];
      await page.locator(`${tid('stale-price-row')}[data-version-id="${v.id}"] ${tid('price-verify')}`).click();
      await page.locator(`${tid('stale-price-row')}[data-version-id="${v.id}"]`).waitFor({ state: 'detached' });
      const after = (await apiGet(page, `/api/prices?model=${encodeURIComponent(v.model)}&kind=${v.kind}`)).find((x) => x.id === v.id);
      check(after && after.stale === false && after.verified_at, `the verified version is fresh: ${JSON.stringify(after)}`);
      await shot(page, '10b-settings-verified.png');
    });
    await step('Reconciliation: add a provider connection (key masked), Import now shows the provider error, the table and CSV', async () => {
      await requireRoute('/api/providers', 'provider import API');
      rec = await context.newPage();
      watch(rec, 'reconciliation');
      await rec.goto(`${BASE}/reconciliation`);
      await rec.locator(tid('provider-connections')).waitFor();
      check((await rec.locator(tid('nav-reconciliation')).getAttribute('class'))?.includes('active'), 'the Reconciliation link is active in the top bar');

      // A key the server refuses first (by code), then the real one; it must never show in clear.
      const name = `e2e-${userId}`.slice(0, 40);
      const secret = `sk-ant-admin01-e2e-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}XyZ9`;
      const masked = `sk-...${secret.slice(-4)}`;
      expectFailure(400, '/api/providers');
      await rec.locator(tid('connection-add')).click();
      await rec.locator(tid('connection-form-provider')).selectOption('anthropic');
      await rec.locator(tid('connection-form-name')).fill(name);
      await rec.locator(tid('connection-form-key')).fill('short');
      checkEq(await rec.locator(tid('connection-form-key')).getAttribute('type'), 'password', 'the admin key input type');
      await rec.locator(tid('connection-form-submit')).click();
      const formErr = rec.locator(tid('connection-form-error'));
      await formErr.waitFor();
      checkEq(await formErr.getAttribute('data-code'), 'invalid_admin_key', `a short key is refused by the server (${await formErr.innerText()})`);
      await rec.locator(tid('connection-form-key')).fill(secret);
      await rec.locator(tid('connection-form-base-url')).fill('http://127.0.0.1:9');
      await rec.locator(tid('connection-form-submit')).click();
      const item = rec.locator(`${tid('provider-connection')}[data-name="${name}"]`);
      await Promise.race([
        item.waitFor(),
        rec.waitForFunction(() => document.querySelector('[data-testid="connection-form-error"]')?.getAttribute('data-code') !== 'invalid_admin_key', null, { timeout: TIMEOUT }).then(async () => {
          throw new CheckError(`adding the connection failed: ${await formErr.innerText()}`);
        }),
      ]);
      checkEq((await item.locator(tid('connection-key')).innerText()).trim(), masked, 'the key is shown masked');
      check(!(await pageHolds(rec, secret)), 'the admin key is nowhere in the page (markup, inputs, storage)');
      const list = await apiGet(rec, '/api/providers');
      const c = list.providers.find((x) => x.name === name);
      check(c, 'the connection is in GET /api/providers');
      checkEq(c.admin_key, masked, 'GET /api/providers masks the key');
      checkEq(c.base_url, 'http://127.0.0.1:9', 'base URL');
      check(!JSON.stringify(list).includes(secret), 'GET /api/providers never carries the key in clear');

      // Import now: the loopback port refuses, so the run fails with provider_error and is recorded.
      expectFailure(502, `/api/providers/${c.connection_id}/import`);
      await item.locator(tid('connection-import')).click();
      const ierr = item.locator(tid('connection-import-error'));
      await ierr.waitFor({ timeout: Math.max(TIMEOUT, 120_000) });
      checkEq(await ierr.getAttribute('data-code'), 'provider_error', `import error code (${await ierr.innerText()})`);
      check(!(await ierr.innerText()).includes(secret), 'the provider error does not quote the key');
      await rec.waitForFunction((n) => document.querySelector(`[data-testid="provider-connection"][data-name="${n}"]`)?.getAttribute('data-status') === 'failed', name);
      await item.locator(tid('connection-last-error')).waitFor();
      await item.locator(tid('connection-runs-toggle')).click();
      await item.locator(`${tid('connection-run-row')}[data-status="failed"]`).first().waitFor();
      const runs = await apiGet(rec, `/api/providers/${c.connection_id}/runs`);
      check(runs.runs.length >= 1 && runs.runs[0].status === 'failed' && runs.runs[0].error, `the failed run is recorded: ${JSON.stringify(runs.runs[0])}`);
      checkEq(await ierr.getAttribute('data-run-id'), runs.runs[0].run_id, 'the error names the recorded run');

      // The table: the API's rows, or a clear note that there is nothing to reconcile.
      await rec.locator(tid('reconciliation-drift-chart')).waitFor();
      const from = await rec.locator(tid('reconciliation-from')).inputValue();
      const to = await rec.locator(tid('reconciliation-to')).inputValue();
      checkEq(to, new Date().toISOString().slice(0, 10), 'the default range ends today (UTC)');
      const api = await apiGet(rec, `/api/reconciliation?provider=anthropic&from=${from}&to=${to}&granularity=day&tolerance_pct=1`);
      check(Number(await rec.locator(tid('reconciliation-drift-chart')).getAttribute('data-days')) >= 30, 'the drift chart has a bar slot per day');
      if (api.rows.length === 0) {
        const note = rec.locator(tid('reconciliation-empty'));
        await note.waitFor();
        check((await note.innerText()).includes('Nothing to reconcile'), 'the empty note says so');
      } else {
        await rec.waitForFunction((n) => document.querySelectorAll('[data-testid="reconciliation-row"]').length === n, api.rows.length);
        const shown = await rec.$$eval('[data-testid="reconciliation-row"]', (els) =>
          els.map((e) => ({
            date: e.getAttribute('data-date'),
            model: e.getAttribute('data-model'),
            flagged: e.getAttribute('data-flagged'),
            flags: e.getAttribute('data-flags'),
            metered: e.querySelector('[data-testid="reconciliation-metered-cost"]')?.getAttribute('data-amount'),
            priced: e.querySelector('[data-testid="reconciliation-priced-cost"]')?.getAttribute('data-amount'),
          })),
        );
        api.rows.forEach((r, i) => {
          const d = shown[i];
          checkEq(`${d.date}|${d.model}`, `${r.date}|${r.model ?? ''}`, `row #${i + 1}`);
          checkEq(d.metered, r.metered_cost, `row #${i + 1} metered cost`);
          checkEq(d.priced, r.tally_priced_cost, `row #${i + 1} Tally-priced cost`);
          checkEq(d.flagged, String(r.flagged), `row #${i + 1} flagged`);
          checkEq(d.flags, r.flags.join(' '), `row #${i + 1} flags`);
        });
        const meteredSum = api.rows.reduce((acc, r) => addDecimal(acc, r.metered_cost), '0');
        check(sameDecimal(await rec.locator(tid('reconciliation-total-metered')).getAttribute('data-amount'), meteredSum), `metered total equals the rows (${meteredSum})`);
        const [download] = await Promise.all([rec.waitForEvent('download'), rec.locator(tid('reconciliation-csv')).click()]);
        const csv = (await readFile(await download.path(), 'utf8')).trim().split('\r\n');
        checkEq(csv.length, api.rows.length + 1, 'CSV lines (header + rows)');
        const header = csv[0].split(',');
        check(header[0] === 'date' && header[1] === 'model' && header.includes('metered_cost'), `CSV header: ${csv[0]}`);
        checkEq(csv[1].split(',')[header.indexOf('metered_cost')], api.rows[0].metered_cost, 'CSV metered cost of the first row');
      }
      await shot(rec, '11-reconciliation.png');

      // Delete it again (asks first).
      await item.locator(tid('connection-delete')).click();
      await item.locator(tid('connection-delete-confirm')).click();
      await item.waitFor({ state: 'detached' });
      check(!(await apiGet(rec, '/api/providers')).providers.some((x) => x.connection_id === c.connection_id), 'the deleted connection is gone');
    });

    if (AUTH_URL && ADMIN_TOKEN) await tokenModeSteps(browser, extra);
    else console.log(`• token mode: not run (${AUTH_URL ? 'TALLY_ADMIN_TOKEN' : 'TALLY_AUTH_URL'} not set; both name a node started with --auth token)`);
  } catch (e) {
    const msg = e instanceof CheckError ? e.message : e?.stack ?? String(e);
    console.log('FAILED');
    console.error(`\ne2e FAILED at step "${currentStep}":\n${msg}`);
    if (consoleErrors.length) console.error(`console errors:\n  ${consoleErrors.join('\n  ')}`);
    try {
      await shot(page, 'failure-chat.png');
      if (dash) await shot(dash, 'failure-dashboard.png');
      if (ana) await shot(ana, 'failure-analytics.png');
      if (rec) await shot(rec, 'failure-reconciliation.png');
      if (extra.token) await shot(extra.token, 'failure-token.png');
    } catch {
      // the browser may be gone
    }
    console.log(`e2e: ${passed} passed, 1 failed`);
    await browser.close().catch(() => {});
    await rm(profile, { recursive: true, force: true }).catch(() => {});
    process.exit(1);
  }
  await browser.close();
  await rm(profile, { recursive: true, force: true }).catch(() => {});
  console.log(`\nscreenshots in ${SHOTS}`);
  console.log(`e2e: ${passed} passed, 0 failed${skipped.length ? `, ${skipped.length} skipped:\n  ${skipped.join('\n  ')}` : ''}`);
}

main().catch((e) => {
  console.error(`e2e FAILED before it started: ${e?.stack ?? e}`);
  process.exit(1);
});
