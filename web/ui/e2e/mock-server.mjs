#!/usr/bin/env node
// An in-memory stand-in for the Tally HTTP API, for UI development and for
// trying e2e/run.mjs before the Rust server is available.
//
//   node e2e/mock-server.mjs [--port 8080] [--host 127.0.0.1] [--dist dist] [--delay 15]
//                            [--auth open|token] [--admin-token TOKEN]
//
// It implements the endpoints the UI uses with the same JSON shapes (money and
// quantities as exact decimal strings, computed with BigInt), streams simulated
// replies over SSE, serves the dashboard stream, virtual keys with budgets and spend
// (plus a non-streaming POST /v1/chat/completions billed to a key), provider connections with import
// runs and reconciliation (issue 14), and serves dist/ with an SPA
// fallback so a built UI can be opened at http://127.0.0.1:8080/.
// Access control (issue 15): GET /api/auth/whoami; with --auth token every other /api call
// needs `Authorization: Bearer` with the admin token (--admin-token, or TALLY_ADMIN_TOKEN) or a
// user's virtual key; a key acts only as its user (lists scoped, other users' data 403) and is
// refused the admin-only routes (403 forbidden); 10 failed credentials from one address within
// a minute answer 429 too_many_failed_auth with Retry-After.
// Request bodies are checked like the server's `deny_unknown_fields`.

import { createServer } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
function arg(name, fallback) {
  const i = args.indexOf(`--${name}`);
  return i !== -1 && args[i + 1] !== undefined ? args[i + 1] : fallback;
}
const PORT = Number(arg('port', process.env.PORT ?? 8080));
const HOST = arg('host', '127.0.0.1');
const DIST = resolve(arg('dist', join(here, '..', 'dist')));
const TOKEN_DELAY_MS = Number(arg('delay', 15));
// --fault history-cost: history answers a cost one digit off what the stream sent (to see e2e/run.mjs catch it).
// --fault no-keys: no virtual keys API, like a server built without the gateway (404 on /api/keys).
// --fault no-providers: no provider import API (404 on /api/providers and /api/reconciliation).
// --forecast demo: GET /api/forecasts answers a made-up 30-day forecast instead of 422 insufficient_history.
const FAULT = arg('fault', '');
const AUTH = arg('auth', 'open');
if (AUTH !== 'open' && AUTH !== 'token') {
  console.error(`--auth is open or token, not ${JSON.stringify(AUTH)}`);
  process.exit(2);
}
const ADMIN_TOKEN = arg('admin-token', process.env.TALLY_ADMIN_TOKEN ?? '');
if (AUTH === 'token' && !ADMIN_TOKEN) {
  console.error('--auth token needs --admin-token TOKEN (or TALLY_ADMIN_TOKEN)');
  process.exit(2);
}
const FORECAST = arg('forecast', '');

// ---------------------------------------------------------------- decimals (exact, BigInt)

/** Parse "12.340" into {v: 1234n, s: 2}. */
function dec(str) {
  const m = /^(-)?(\d*)(?:\.(\d*))?$/.exec(String(str).trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new Error(`not a decimal: ${str}`);
  const frac = m[3] ?? '';
  const v = BigInt((m[2] || '0') + frac) * (m[1] ? -1n : 1n);
  return { v, s: frac.length };
}
function align(a, b) {
  const s = Math.max(a.s, b.s);
  return [a.v * 10n ** BigInt(s - a.s), b.v * 10n ** BigInt(s - b.s), s];
}
function dAdd(a, b) {
  const [x, y, s] = align(a, b);
  return { v: x + y, s };
}
function dMul(a, b) {
  return { v: a.v * b.v, s: a.s + b.s };
}
function dDivPow10(a, n) {
  return { v: a.v, s: a.s + n };
}
function dCmp(a, b) {
  const [x, y] = align(a, b);
  return x < y ? -1 : x > y ? 1 : 0;
}
/** Normalized string: no trailing zeros ("0.000256", "4", "0"). */
function dStr(a) {
  let { v, s } = a;
  while (s > 0 && v % 10n === 0n) {
    v /= 10n;
    s--;
  }
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(s + 1, '0');
  const out = s ? `${digits.slice(0, digits.length - s)}.${digits.slice(digits.length - s)}` : digits;
  return neg && v !== 0n ? `-${out}` : out;
}
/** Round half-even to `dp` places. */
function dRound(a, dp) {
  if (a.s <= dp) return a;
  const f = 10n ** BigInt(a.s - dp);
  const neg = a.v < 0n;
  const abs = neg ? -a.v : a.v;
  let q = abs / f;
  const r = abs % f;
  if (r * 2n > f || (r * 2n === f && q % 2n === 1n)) q += 1n;
  return { v: neg ? -q : q, s: dp };
}
const ZERO = { v: 0n, s: 0 };
const sum = (xs) => xs.reduce((acc, x) => dAdd(acc, x), ZERO);

// ---------------------------------------------------------------- catalog and state

const TOKEN_KINDS = ['input_tokens', 'output_tokens', 'cache_write_5m_tokens', 'cache_write_1h_tokens', 'cache_read_tokens'];
const isTokenKind = (k) => k.endsWith('_tokens');
const unitOf = (k) => (isTokenKind(k) ? 'tokens' : 'units');
const DEFAULT_MODEL = 'claude-3-5-haiku-20241022';

const MODELS = [
  {
    model_id: 1,
    name: 'claude-3-5-haiku-20241022',
    provider: 'anthropic',
    description: 'Claude 3.5 Haiku (default); web search $10 per 1,000 requests',
    is_active: true,
    prices: { input_tokens: '0.80', output_tokens: '4', cache_write_5m_tokens: '1', cache_write_1h_tokens: '1.6', cache_read_tokens: '0.08', web_search_requests: '0.01', images: '0.04' },
    from: '2024-11-04T00:00:00Z',
  },
  {
    model_id: 2,
    name: 'claude-3-haiku-20240307',
    provider: 'anthropic',
    description: 'Claude 3 Haiku',
    is_active: true,
    prices: { input_tokens: '0.25', output_tokens: '1.25', cache_write_5m_tokens: '0.30', cache_write_1h_tokens: '0.50', cache_read_tokens: '0.03', web_search_requests: '0.01' },
    from: '2024-03-07T00:00:00Z',
  },
];

const users = new Map(); // id -> user
const threads = new Map(); // id -> thread record
const messages = []; // stored messages {message..., cost|null}
const events = []; // usage events {event_id,..., cost}
const lines = []; // priced lines {line..., event_id, message_id, thread_id, user_id, model, invoice_id|null}
const allEvents = () => events;
const allLines = () => lines;
const invoices = new Map();
const keys = new Map(); // key_id -> key record (with its secret, never shown again)
let budgets = []; // {budget_id, scope_id (key id), period, max_budget, alert_threshold, enabled, timezone}
const gatewayCalls = []; // {key_id, model, provider, cost, tokens, occurred_at}
let priceVersions = [];
for (const m of MODELS) {
  for (const [kind, price] of Object.entries(m.prices)) {
    priceVersions.push({ id: randomUUID(), model: m.name, kind, price, effective_from: m.from, effective_to: null, is_current: true });
  }
}

// ---------------------------------------------------------------- helpers

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
const bad = (code, message) => new HttpError(400, code, message);
const now = () => new Date().toISOString();
const USER_ID = /^[A-Za-z0-9_.@-]{1,64}$/;
const KIND = /^[a-z][a-z0-9_]{0,63}$/;

function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

async function readJson(req, allowed) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const raw = Buffer.concat(chunks).toString('utf8');
  if (!raw.trim()) return {};
  let body;
  try {
    body = JSON.parse(raw);
  } catch {
    throw bad('invalid_json', 'the body is not JSON');
  }
  if (allowed) {
    for (const k of Object.keys(body)) if (!allowed.includes(k)) throw bad('invalid_body', `unknown field \`${k}\``);
  }
  return body;
}

function priceAt(model, kind, at) {
  const v = priceVersions.find((p) => p.model === model && p.kind === kind && p.effective_from <= at && (p.effective_to === null || at < p.effective_to));
  if (!v) throw new HttpError(422, 'no_price', `no price for ${model} ${kind} at ${at}`);
  return v;
}

function priceUsage(model, usage, at) {
  const out = [];
  for (const [kind, qty] of Object.entries(usage)) {
    if (qty === 0 || qty === '0') continue;
    const v = priceAt(model, kind, at);
    const q = dec(qty);
    const raw = dMul(q, dec(v.price));
    const amount = isTokenKind(kind) ? dDivPow10(raw, 6) : raw;
    out.push({ kind, unit: unitOf(kind), quantity: dStr(q), unit_price: v.price, price_version_id: v.id, amount: dStr(amount) });
  }
  return { lines: out, total: dStr(sum(out.map((l) => dec(l.amount)))) };
}

function threadTotal(threadId) {
  return dStr(sum(lines.filter((l) => l.thread_id === threadId).map((l) => dec(l.amount))));
}

function messageViews(threadId) {
  let running = ZERO;
  return messages
    .filter((m) => m.thread_id === threadId)
    .map((m) => {
      if (m.cost) running = dAdd(running, dec(m.cost.total));
      return view(m, dStr(running));
    });
}

function view(m, after) {
  return {
    message_id: m.message_id,
    thread_id: m.thread_id,
    user_id: m.user_id,
    role: m.role,
    content: m.content,
    model: m.model,
    created_at: m.created_at,
    simulated: m.simulated,
    status: m.status,
    usage: m.cost ? Object.fromEntries(m.cost.lines.map((l) => [l.kind, l.quantity])) : null,
    cost: m.cost,
    cost_by_kind: m.cost ? Object.fromEntries(m.cost.lines.map((l) => [l.kind, l.amount])) : {},
    cost_total: m.cost ? m.cost.total : '0',
    thread_total_after: after,
  };
}

function threadView(t) {
  return { ...t, total_cost: threadTotal(t.thread_id) };
}

function summary(filter) {
  const ls = lines.filter(filter);
  const by_kind = {};
  const by_model = {};
  const by_thread = {};
  const by_message = {};
  const add = (obj, key, amount) => (obj[key] = dStr(dAdd(dec(obj[key] ?? '0'), dec(amount))));
  for (const l of ls) {
    const k = (by_kind[l.kind] ??= { quantity: '0', amount: '0' });
    k.quantity = dStr(dAdd(dec(k.quantity), dec(l.quantity)));
    k.amount = dStr(dAdd(dec(k.amount), dec(l.amount)));
    add(by_model, l.model, l.amount);
    if (l.thread_id) add(by_thread, l.thread_id, l.amount);
    if (l.message_id) add(by_message, l.message_id, l.amount);
  }
  const total = sum(ls.map((l) => dec(l.amount)));
  const invoiced = sum(ls.filter((l) => l.invoice_id).map((l) => dec(l.amount)));
  return {
    total_cost: dStr(total),
    invoiced_cost: dStr(invoiced),
    uninvoiced_cost: dStr(dAdd(total, { v: -invoiced.v, s: invoiced.s })),
    by_kind,
    by_model,
    by_thread,
    by_message,
    event_count: new Set(ls.map((l) => l.event_id)).size,
  };
}

function modelView(m) {
  return {
    model_id: m.model_id,
    name: m.name,
    provider: m.provider,
    description: m.description,
    is_active: m.is_active,
    is_default: m.name === DEFAULT_MODEL,
    simulated: true,
    prices: priceVersions.filter((p) => p.model === m.name && p.is_current),
  };
}

// ---------------------------------------------------------------- dashboard stream

/** Open dashboard streams and the user each is scoped to (null: everything). */
const dashClients = new Map();
let snapshotTimer = null;

/** The dashboard snapshot; of one user's usage only when `userId` is given (a user's key). */
function snapshot(userId = null) {
  const lines = userId ? allLines().filter((l) => l.user_id === userId) : allLines();
  const events = userId ? allEvents().filter((e) => e.user_id === userId) : allEvents();
  const group = (keyOf) => {
    const map = new Map();
    for (const l of lines) {
      const key = keyOf(l);
      if (key === null || key === undefined) continue;
      const g = map.get(key) ?? { cost: ZERO, events: new Set(), l };
      g.cost = dAdd(g.cost, dec(l.amount));
      g.events.add(l.event_id);
      map.set(key, g);
    }
    return [...map.entries()].sort((a, b) => dCmp(b[1].cost, a[1].cost)).slice(0, 20);
  };
  const recent = events.filter((e) => Date.now() - Date.parse(e.occurred_at) <= 10_000).length;
  const kinds = new Map();
  for (const l of lines) {
    const k = kinds.get(l.kind) ?? { kind: l.kind, unit: l.unit, quantity: ZERO, cost: ZERO };
    k.quantity = dAdd(k.quantity, dec(l.quantity));
    k.cost = dAdd(k.cost, dec(l.amount));
    kinds.set(l.kind, k);
  }
  return {
    generated_at: now(),
    total_cost: dStr(sum(lines.map((l) => dec(l.amount)))),
    event_count: events.length,
    events_per_second: dStr(dDivPow10({ v: BigInt(recent), s: 0 }, 1)),
    last_event_at: events.length ? events[events.length - 1].occurred_at : null,
    by_user: group((l) => l.user_id).map(([user_id, g]) => ({ user_id, cost: dStr(g.cost), events: g.events.size })),
    by_thread: group((l) => l.thread_id).map(([thread_id, g]) => ({ thread_id, user_id: g.l.user_id, cost: dStr(g.cost), events: g.events.size })),
    by_model: group((l) => l.model).map(([model, g]) => ({ model, cost: dStr(g.cost), events: g.events.size })),
    by_key: group((l) => l.key_id).map(([key_id, g]) => ({ key_id, name: keys.get(key_id)?.name ?? null, cost: dStr(g.cost), events: g.events.size })),
    by_kind: [...kinds.values()]
      .sort((a, b) => dCmp(b.cost, a.cost))
      .map((k) => ({ kind: k.kind, unit: k.unit, quantity: dStr(k.quantity), cost: dStr(k.cost) })),
  };
}

function sse(res, event, data) {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function scheduleSnapshot() {
  if (snapshotTimer) return;
  snapshotTimer = setTimeout(() => {
    snapshotTimer = null;
    const snap = snapshot();
    for (const [c, userId] of dashClients) sse(c, 'snapshot', userId ? snapshot(userId) : snap);
  }, 250);
}

function dashboardStream(req, res) {
  const userId = req.caller?.caller === 'user' ? req.caller.user_id : null;
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  res.write(': connected\n\n');
  sse(res, 'snapshot', snapshot(userId));
  dashClients.set(res, userId);
  const ka = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  req.on('close', () => {
    clearInterval(ka);
    dashClients.delete(res);
  });
}

// ---------------------------------------------------------------- chat

const WORDS = 'the meter counts every token and prices it with the version in force when the reply finished so the bill is exact to the last digit'.split(' ');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function recordUsage(thread, messageId, usage) {
  const at = now();
  const cost = priceUsage(thread.model, usage, at);
  const event_id = randomUUID();
  const ev = {
    event_id,
    user_id: thread.user_id,
    thread_id: thread.thread_id,
    message_id: messageId,
    model: thread.model,
    event_type: 'llm_call',
    source: 'simulator',
    idempotency_key: `${messageId}:usage`,
    occurred_at: at,
    cost,
  };
  events.push(ev);
  for (const l of cost.lines) lines.push({ ...l, id: randomUUID(), event_id, message_id: messageId, thread_id: thread.thread_id, user_id: thread.user_id, model: thread.model, occurred_at: at, invoice_id: null });
  const live = { event_id, user_id: ev.user_id, thread_id: ev.thread_id, message_id: messageId, model: ev.model, occurred_at: at, committed_at: now(), cost };
  for (const [c, userId] of dashClients) if (!userId || userId === live.user_id) sse(c, 'usage', live);
  scheduleSnapshot();
  return cost;
}

async function streamMessage(req, res) {
  const body = await readJson(req, ['thread_id', 'user_id', 'content']);
  const userId = body.user_id ?? req.headers['x-user-id'];
  if (!userId) throw bad('missing_user_id', 'give user_id in the body or the X-User-Id header');
  own(req, userId);
  const thread = threads.get(body.thread_id);
  if (!thread) throw new HttpError(404, 'thread_not_found', `thread ${body.thread_id} not found`);
  if (thread.user_id !== userId) throw new HttpError(403, 'not_thread_owner', 'the thread belongs to another user');
  const content = String(body.content ?? '');
  if (!content.trim()) throw bad('empty_message', 'the message is empty');

  const userMsg = { message_id: randomUUID(), thread_id: thread.thread_id, user_id: userId, role: 'user', content, model: thread.model, created_at: now(), simulated: false, status: 'complete', cost: null };
  messages.push(userMsg);
  const assistantId = randomUUID();
  const history = messages.filter((m) => m.thread_id === thread.thread_id);
  const before = threadTotal(thread.thread_id);

  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', Connection: 'keep-alive' });
  let closed = false;
  req.on('close', () => (closed = true));
  sse(res, 'start', { user_message: view(userMsg, before), assistant_message_id: assistantId, model: thread.model, simulated: true });

  const n = 6 + (content.length % 7);
  const seed = content.length + history.length;
  const words = Array.from({ length: n }, (_, i) => WORDS[(seed + i * 5) % WORDS.length]);
  const prior = history.slice(0, -1).reduce((acc, m) => acc + Math.ceil(m.content.length / 4), 0);
  const usage = { input_tokens: 8 + Math.ceil(content.length / 4), output_tokens: 0, cache_write_5m_tokens: 0, cache_write_1h_tokens: 0, cache_read_tokens: prior };
  let text = '';
  for (let i = 0; i < words.length && !closed; i++) {
    const piece = (i === 0 ? 'Simulated reply: ' : ' ') + words[i];
    text += piece;
    usage.output_tokens += 1 + (i === 0 ? 3 : 0);
    sse(res, 'delta', { text: piece });
    if (i % 3 === 2) sse(res, 'usage', { usage: { ...usage } });
    await sleep(TOKEN_DELAY_MS);
  }
  text += '.';
  sse(res, 'delta', { text: '.' });
  sse(res, 'usage', { usage: { ...usage } });

  const billed = Object.fromEntries(Object.entries(usage).filter(([, v]) => v > 0).map(([k, v]) => [k, String(v)]));
  if (/\bimage\b/i.test(content)) billed.images = '1';
  const cost = recordUsage(thread, assistantId, billed);
  const assistantMsg = { message_id: assistantId, thread_id: thread.thread_id, user_id: userId, role: 'assistant', content: text, model: thread.model, created_at: now(), simulated: true, status: closed ? 'interrupted' : 'complete', cost };
  messages.push(assistantMsg);
  thread.updated_at = now();
  const total = threadTotal(thread.thread_id);
  if (!closed) {
    sse(res, 'done', { user_message: view(userMsg, before), assistant_message: view(assistantMsg, total), thread_total: total, simulated: true, error: null });
    res.end();
  }
}

// ---------------------------------------------------------------- gateway: virtual keys, budgets, spend

const PERIOD_NAMES = ['daily', 'weekly', 'monthly'];
const MAX_BUDGET_USD = { v: 100000000n, s: 0 };

/** The UTC calendar window of `period` containing `at` (the mock ignores budget time zones). */
function windowOf(period, at = new Date()) {
  const d = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  if (period === 'daily') return { start: d, end: new Date(d.getTime() + 86_400_000) };
  if (period === 'weekly') {
    const start = new Date(d.getTime() - ((d.getUTCDay() + 6) % 7) * 86_400_000);
    return { start, end: new Date(start.getTime() + 7 * 86_400_000) };
  }
  const start = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
  return { start, end: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1)) };
}

function callsIn(keyId, w) {
  return gatewayCalls.filter((c) => c.key_id === keyId && Date.parse(c.occurred_at) >= w.start.getTime() && Date.parse(c.occurred_at) < w.end.getTime());
}

function budgetView(b) {
  const w = windowOf(b.period);
  const spent = sum(callsIn(b.scope_id, w).map((c) => dec(c.cost)));
  const max = dec(b.max_budget);
  const left = dAdd(max, { v: -spent.v, s: spent.s });
  const remaining = dCmp(left, ZERO) > 0 ? left : ZERO;
  const alerted = b.alert_threshold !== null && dCmp(spent, dMul(max, dec(b.alert_threshold))) >= 0;
  return {
    budget_id: b.budget_id,
    scope: 'key',
    scope_id: b.scope_id,
    period: b.period,
    max_budget: b.max_budget,
    alert_threshold: b.alert_threshold,
    enabled: b.enabled,
    timezone: b.timezone,
    spent: dStr(spent),
    reserved: '0',
    remaining: dStr(remaining),
    period_start: w.start.toISOString(),
    period_end: w.end.toISOString(),
    alert_state: dCmp(remaining, ZERO) === 0 ? 'exceeded' : alerted ? 'alerted' : 'ok',
  };
}

function keyStatus(k) {
  if (k.revoked_at) return 'revoked';
  if (k.expires_at && Date.parse(k.expires_at) <= Date.now()) return 'expired';
  return 'active';
}

function keyView(k, secret) {
  const v = {
    key_id: k.key_id,
    public_id: k.public_id,
    user_id: k.user_id,
    name: k.name,
    allowed_models: k.allowed_models,
    expires_at: k.expires_at,
    rpm_limit: k.rpm_limit,
    created_at: k.created_at,
    revoked_at: k.revoked_at,
    status: keyStatus(k),
    budgets: budgets.filter((b) => b.scope_id === k.key_id).map(budgetView),
  };
  if (secret) v.key = secret;
  return v;
}

/** `n` random lower-case hex digits (keys read tk-<12 hex>-<64 hex>, like the server's). */
const hex = (n) => randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);

function budgetRecord(keyId, b) {
  for (const k of Object.keys(b)) if (!['max_budget', 'period', 'alert_threshold', 'enabled', 'timezone'].includes(k)) throw bad('invalid_body', `unknown field \`${k}\``);
  if (!PERIOD_NAMES.includes(b.period)) throw bad('invalid_period', 'period must be daily, weekly or monthly');
  let max;
  try {
    max = dec(b.max_budget);
  } catch {
    throw bad('invalid_max_budget', 'max_budget must be a decimal');
  }
  if (dCmp(max, ZERO) <= 0 || dCmp(max, MAX_BUDGET_USD) > 0) throw bad('invalid_max_budget', 'max_budget must be positive and at most 100000000 USD');
  let threshold = null;
  if (b.alert_threshold !== undefined && b.alert_threshold !== null) {
    try {
      threshold = dec(b.alert_threshold);
    } catch {
      throw bad('invalid_alert_threshold', 'alert_threshold must be in (0, 1]');
    }
    if (dCmp(threshold, ZERO) <= 0 || dCmp(threshold, { v: 1n, s: 0 }) > 0) throw bad('invalid_alert_threshold', 'alert_threshold must be in (0, 1]');
  }
  return {
    budget_id: randomUUID(),
    scope_id: keyId,
    period: b.period,
    max_budget: dStr(max),
    alert_threshold: threshold === null ? null : dStr(threshold),
    enabled: b.enabled ?? true,
    timezone: b.timezone ?? 'UTC',
  };
}

function upsertBudget(r) {
  const old = budgets.find((b) => b.scope_id === r.scope_id && b.period === r.period);
  if (old) r.budget_id = old.budget_id;
  budgets = [...budgets.filter((b) => b !== old), r];
  return r;
}

function loadKey(id) {
  const k = keys.get(id);
  if (!k) throw new HttpError(404, 'key_not_found', `no key ${id}`);
  return k;
}

async function keysApi(req, res, url, path, method) {
  let m;
  if (path === '/api/keys' && method === 'POST') {
    const b = await readJson(req, ['user_id', 'name', 'allowed_models', 'expires_at', 'rpm_limit', 'budgets']);
    if (!USER_ID.test(b.user_id ?? '')) throw bad('invalid_user_id', 'invalid user id');
    if (!users.has(b.user_id)) throw new HttpError(404, 'user_not_found', `no user ${b.user_id}`);
    const name = String(b.name ?? '');
    if (!name.trim() || name.length > 200) throw bad('invalid_key_name', 'name must be 1-200 characters');
    const models = b.allowed_models ?? null;
    if (models !== null) {
      if (!Array.isArray(models) || models.length === 0) throw bad('invalid_allowed_models', 'allowed_models must list 1-200 models, or be null for all');
      const unknown = models.find((x) => !MODELS.some((mm) => mm.name === x));
      if (unknown) throw bad('unknown_model', `${JSON.stringify(unknown)} is not in the catalogue`);
    }
    if (b.rpm_limit !== undefined && b.rpm_limit !== null && !(Number.isInteger(b.rpm_limit) && b.rpm_limit >= 1)) throw bad('invalid_rpm_limit', 'rpm_limit must be a positive integer');
    if (b.expires_at && !(Date.parse(b.expires_at) > Date.now())) throw bad('invalid_expires_at', 'expires_at must be in the future');
    const list = b.budgets ?? [];
    if (list.length > 3) throw bad('invalid_budgets', 'at most one budget per period');
    const keyId = randomUUID();
    const records = list.map((x) => budgetRecord(keyId, x));
    if (new Set(records.map((r) => r.period)).size !== records.length) throw bad('invalid_budgets', 'at most one budget per period');
    const publicId = hex(12);
    const secret = `tk-${publicId}-${hex(64)}`;
    const k = { key_id: keyId, public_id: publicId, secret, user_id: b.user_id, name, allowed_models: models, expires_at: b.expires_at ? new Date(b.expires_at).toISOString() : null, rpm_limit: b.rpm_limit ?? null, created_at: now(), revoked_at: null };
    keys.set(keyId, k);
    for (const r of records) upsertBudget(r);
    return send(res, 201, keyView(k, secret));
  }
  if (path === '/api/keys' && method === 'GET') {
    const userId = url.searchParams.get('user_id');
    return send(res, 200, [...keys.values()].filter((k) => !userId || k.user_id === userId).map((k) => keyView(k)));
  }
  if ((m = /^\/api\/keys\/([^/]+)$/.exec(path)) && method === 'GET') return send(res, 200, keyView(loadKey(m[1])));
  if ((m = /^\/api\/keys\/([^/]+)\/revoke$/.exec(path)) && method === 'POST') {
    const k = loadKey(m[1]);
    k.revoked_at ??= now();
    return send(res, 200, keyView(k));
  }
  if ((m = /^\/api\/keys\/([^/]+)\/rotate$/.exec(path)) && method === 'POST') {
    const k = loadKey(m[1]);
    if (k.revoked_at) throw new HttpError(409, 'key_revoked', `key ${k.key_id} is revoked`);
    k.secret = `tk-${k.public_id}-${hex(64)}`;
    return send(res, 200, keyView(k, k.secret));
  }
  if ((m = /^\/api\/billing\/budget\/([^/]+)$/.exec(path))) {
    const k = loadKey(m[1]);
    if (method === 'GET') return send(res, 200, { key_id: k.key_id, budgets: budgets.filter((b) => b.scope_id === k.key_id).map(budgetView) });
    if (method === 'PUT') return send(res, 200, budgetView(upsertBudget(budgetRecord(k.key_id, await readJson(req)))));
    if (method === 'DELETE') {
      const period = url.searchParams.get('period');
      if (!period) throw bad('missing_period', 'give ?period=daily|weekly|monthly');
      const old = budgets.find((b) => b.scope_id === k.key_id && b.period === period);
      if (!old) throw new HttpError(404, 'budget_not_found', `no ${period} budget`);
      budgets = budgets.filter((b) => b !== old);
      res.writeHead(204).end();
      return;
    }
  }
  if ((m = /^\/api\/billing\/spend\/([^/]+)$/.exec(path)) && method === 'GET') {
    const k = loadKey(m[1]);
    const period = url.searchParams.get('period') ?? 'monthly';
    if (!PERIOD_NAMES.includes(period)) throw bad('invalid_period', 'period must be daily, weekly or monthly');
    const w = windowOf(period);
    const calls = callsIn(k.key_id, w);
    const by = (f) => {
      const o = {};
      for (const c of calls) o[f(c)] = dStr(dAdd(dec(o[f(c)] ?? '0'), dec(c.cost)));
      return o;
    };
    return send(res, 200, {
      key_id: k.key_id,
      period,
      period_start: w.start.toISOString(),
      period_end: w.end.toISOString(),
      total_cost: dStr(sum(calls.map((c) => dec(c.cost)))),
      total_requests: calls.length,
      total_tokens: calls.reduce((a, c) => a + c.tokens, 0),
      by_model: by((c) => c.model),
      by_provider: by((c) => c.provider),
    });
  }
  return false;
}

/** A non-streaming OpenAI-style call billed to a virtual key (simulated reply). */
async function gatewayChat(req, res) {
  const auth = String(req.headers.authorization ?? '').replace(/^Bearer\s+/i, '') || String(req.headers['x-api-key'] ?? '');
  const k = [...keys.values()].find((x) => x.secret === auth.trim());
  if (!k) return send(res, 401, { error: { type: 'authentication_error', code: 'invalid_api_key', message: 'unknown or malformed key' } });
  if (keyStatus(k) !== 'active') return send(res, 401, { error: { type: 'authentication_error', code: `key_${keyStatus(k)}`, message: `the key is ${keyStatus(k)}` } });
  const body = await readJson(req);
  const model = MODELS.find((x) => x.name === body.model);
  if (!model) return send(res, 400, { error: { type: 'invalid_request_error', code: 'unknown_model', message: `unknown model ${body.model}` } });
  if (k.allowed_models && !k.allowed_models.includes(model.name)) return send(res, 403, { error: { type: 'permission_error', code: 'model_not_allowed', message: `the key may not call ${model.name}` } });
  const exhausted = budgets.filter((b) => b.scope_id === k.key_id && b.enabled).map(budgetView).find((b) => b.alert_state === 'exceeded');
  if (exhausted) return send(res, 402, { error: { type: 'budget_exceeded', code: 'budget_exceeded', message: `the ${exhausted.period} budget is spent` } });
  const text = (body.messages ?? []).map((x) => String(x.content ?? '')).join(' ');
  const usage = { input_tokens: String(8 + Math.ceil(text.length / 4)), output_tokens: String(Math.min(Number(body.max_tokens ?? 40), 40)) };
  const at = now();
  const cost = priceUsage(model.name, usage, at);
  const event_id = randomUUID();
  events.push({ event_id, user_id: k.user_id, thread_id: null, message_id: null, model: model.name, event_type: 'llm_call', source: 'gateway', idempotency_key: null, occurred_at: at, cost, key_id: k.key_id });
  for (const l of cost.lines) lines.push({ ...l, id: randomUUID(), event_id, message_id: null, thread_id: null, user_id: k.user_id, model: model.name, occurred_at: at, invoice_id: null, key_id: k.key_id });
  gatewayCalls.push({ key_id: k.key_id, model: model.name, provider: model.provider, cost: cost.total, tokens: Number(usage.input_tokens) + Number(usage.output_tokens), occurred_at: at });
  const live = { event_id, user_id: k.user_id, thread_id: null, message_id: null, model: model.name, occurred_at: at, committed_at: now(), cost };
  for (const [c, userId] of dashClients) if (!userId || userId === live.user_id) sse(c, 'usage', live);
  scheduleSnapshot();
  return send(res, 200, {
    id: `chatcmpl-${event_id}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: model.name,
    choices: [{ index: 0, message: { role: 'assistant', content: 'Simulated gateway reply.' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: Number(usage.input_tokens), completion_tokens: Number(usage.output_tokens), total_tokens: Number(usage.input_tokens) + Number(usage.output_tokens) },
  });
}

// ---------------------------------------------------------------- issue 13: analytics, budgets with alerts, forecasts, price freshness

const STALE_DAYS = 30;
const DAY = 86_400_000;

/** A price version with its freshness (never verified counts from effective_from). */
function priceView(v) {
  const since = Date.parse(v.verified_at ?? v.effective_from);
  return { ...v, verified_at: v.verified_at ?? null, stale: Date.now() - since > STALE_DAYS * DAY };
}

function providerOf(model) {
  return MODELS.find((x) => x.name === model)?.provider ?? 'unknown';
}

/** A stored event as the usage log serves it. */
function eventView(ev) {
  return {
    event_id: ev.event_id,
    event_seq: events.indexOf(ev) + 1,
    user_id: ev.user_id,
    thread_id: ev.thread_id,
    message_id: ev.message_id,
    model: ev.model,
    provider: providerOf(ev.model),
    event_type: ev.event_type,
    source: ev.source,
    task: ev.task ?? null,
    key_id: ev.key_id ?? null,
    was_successful: ev.was_successful ?? true,
    idempotency_key: ev.idempotency_key,
    occurred_at: ev.occurred_at,
    cost: ev.cost.total,
    lines: ev.cost.lines.map((l) => ({ kind: l.kind, quantity: l.quantity, unit_price: l.unit_price, amount: l.amount, price_version_id: l.price_version_id })),
  };
}

const DAY_RE = /^\d{4}-\d\d-\d\d$/;
function dayOf(iso) {
  return iso.slice(0, 10);
}
function addDay(day, n) {
  return new Date(Date.parse(`${day}T00:00:00Z`) + n * DAY).toISOString().slice(0, 10);
}

/** The filters of the query string as a predicate over event views; with `days`, the date range too. */
function eventFilter(url, days = true) {
  const q = (k) => url.searchParams.get(k) || null;
  const user = q('user_id');
  const provider = q('provider');
  const model = q('model');
  const key = q('key_id');
  const task = q('task');
  if (user && !USER_ID.test(user)) throw bad('invalid_user_id', 'bad user id');
  if (key && !/^[0-9a-f-]{36}$/i.test(key)) throw bad('invalid_key_id', 'key_id must be a UUID');
  let from = null;
  let to = null;
  if (days) ({ from, to } = range(url));
  return (e) =>
    (!user || e.user_id === user) &&
    (!provider || e.provider === provider) &&
    (!model || e.model === model) &&
    (!key || e.key_id === key) &&
    (!task || e.task === task) &&
    (!from || (dayOf(e.occurred_at) >= from && dayOf(e.occurred_at) <= to));
}

function range(url) {
  const to = url.searchParams.get('date_to') ?? new Date().toISOString().slice(0, 10);
  const from = url.searchParams.get('date_from') ?? addDay(to, -29);
  if (!DAY_RE.test(from) || !DAY_RE.test(to)) throw bad('invalid_date', 'days are YYYY-MM-DD');
  if (from > to) throw bad('invalid_range', 'date_from is after date_to');
  return { from, to };
}

function ratio(a, n, dp = 10) {
  if (n === 0) return null;
  const scaled = { v: a.v * 10n ** BigInt(dp + 1), s: a.s };
  const q = { v: scaled.v / BigInt(n), s: a.s + dp + 1 };
  return dStr(dRound(q, dp));
}

function figures(evs) {
  const failed = evs.filter((e) => !e.was_successful).length;
  const cost = sum(evs.map((e) => dec(e.cost)));
  const tokens = Object.fromEntries(TOKEN_KINDS.map((k) => [k, '0']));
  const resources = {};
  const cost_by_kind = {};
  for (const e of evs) {
    for (const l of e.lines) {
      const bucket = isTokenKind(l.kind) ? tokens : resources;
      bucket[l.kind] = dStr(dAdd(dec(bucket[l.kind] ?? '0'), dec(l.quantity)));
      cost_by_kind[l.kind] = dStr(dAdd(dec(cost_by_kind[l.kind] ?? '0'), dec(l.amount)));
    }
  }
  return {
    requests: evs.length,
    failed,
    success_rate: ratio({ v: BigInt(evs.length - failed), s: 0 }, evs.length),
    cost: dStr(cost),
    avg_cost_per_request: ratio(cost, evs.length),
    tokens,
    resources,
    cost_by_kind,
  };
}

function groupBy(evs, keyOf) {
  const groups = new Map();
  for (const e of evs) {
    const k = JSON.stringify(keyOf(e));
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(e);
  }
  return [...groups.entries()]
    .map(([k, list]) => ({ key: JSON.parse(k), figures: figures(list) }))
    .sort((a, b) => dCmp(dec(b.figures.cost), dec(a.figures.cost)));
}

function bucketStartOf(day, period) {
  if (period === 'daily') return day;
  if (period === 'monthly') return `${day.slice(0, 7)}-01`;
  const dow = new Date(`${day}T00:00:00Z`).getUTCDay();
  return addDay(day, -((dow + 6) % 7));
}

const alertBudgets = new Map(); // budget_id -> budget
const deliveries = []; // newest last

function validateBudget(b, partial) {
  const has = (k) => b[k] !== undefined;
  if ((!partial || has('name')) && !(typeof b.name === 'string' && b.name.trim())) throw bad('invalid_name', 'name must not be empty');
  if (!partial || has('amount')) {
    let a;
    try {
      a = dec(b.amount);
    } catch {
      throw bad('invalid_amount', 'amount must be a decimal string');
    }
    if (a.v <= 0n) throw bad('invalid_amount', 'amount must be positive');
  }
  if ((!partial || has('period')) && !['daily', 'weekly', 'monthly'].includes(b.period)) throw bad('invalid_period', 'period is daily, weekly or monthly');
  if (!partial || has('scope')) {
    const s = b.scope ?? {};
    if (!['all', 'provider', 'model', 'user', 'key'].includes(s.kind)) throw bad('invalid_scope', 'scope.kind is all, provider, model, user or key');
    if ((s.kind === 'all') !== (s.value === null || s.value === undefined)) throw bad('invalid_scope', 'scope.value is null for all and set otherwise');
  }
  if (has('thresholds') && !(Array.isArray(b.thresholds) && b.thresholds.every((t) => typeof t === 'number' && t > 0 && t <= 1000))) throw bad('invalid_thresholds', 'thresholds are percentages 1-1000');
  if (has('emails') && !(Array.isArray(b.emails) && b.emails.every((e) => /^[^@\s]+@[^@\s]+$/.test(e)))) throw bad('invalid_email', 'emails must be addresses');
  if (has('webhook_url') && b.webhook_url !== null && !/^https?:\/\/\S+$/.test(b.webhook_url)) throw bad('invalid_webhook_url', 'webhook_url must be an http(s) URL');
}

function budgetCheck(b) {
  const w = windowOf(b.period);
  const inScope = (e) =>
    b.scope.kind === 'all' ||
    (b.scope.kind === 'provider' && e.provider === b.scope.value) ||
    (b.scope.kind === 'model' && e.model === b.scope.value) ||
    (b.scope.kind === 'user' && e.user_id === b.scope.value) ||
    (b.scope.kind === 'key' && e.key_id === b.scope.value);
  const evs = events.map(eventView).filter((e) => inScope(e) && Date.parse(e.occurred_at) >= w.start.getTime() && Date.parse(e.occurred_at) < w.end.getTime());
  const spent = sum(evs.map((e) => dec(e.cost)));
  const amount = dec(b.amount);
  // spent / amount * 100, two places, half up: (spent.v / 10^spent.s) / (amount.v / 10^amount.s) * 100 * 100 units
  const num = spent.v * 10n ** BigInt(amount.s) * 10000n;
  const den = amount.v * 10n ** BigInt(spent.s);
  const percent_used = dStr({ v: (num + den / 2n) / den, s: 2 });
  const elapsed = Math.max(Date.now() - w.start.getTime(), 60_000);
  const total = w.end.getTime() - w.start.getTime();
  const factor = BigInt(Math.round((total / elapsed) * 1000));
  const projected = dRound({ v: spent.v * factor, s: spent.s + 3 }, 6);
  const remaining = dCmp(spent, amount) >= 0 ? ZERO : dAdd(amount, { v: -spent.v, s: spent.s });
  let breach = null;
  if (dCmp(projected, amount) > 0 && spent.v > 0n) {
    const rate = Number(dStr(spent)) / elapsed; // a date only; no money is shown from this
    const at = w.start.getTime() + Number(dStr(amount)) / rate;
    breach = new Date(Math.min(at, w.end.getTime() - 1)).toISOString().slice(0, 10);
  }
  const fired = b.thresholds.filter((t) => dCmp(dec(percent_used), dec(String(t))) >= 0).map(String);
  return {
    budget: b,
    window_start: w.start.toISOString(),
    window_end: w.end.toISOString(),
    spent: dStr(spent),
    percent_used,
    remaining: dStr(remaining),
    projected_spend: dStr(projected),
    projected_breach_date: breach,
    thresholds_fired: fired,
    status: dCmp(spent, amount) >= 0 ? 'exceeded' : fired.length ? 'warning' : 'ok',
  };
}

async function issue13Api(req, res, url, path, method) {
  let m;
  const GROUPS = {
    'by-user': (e) => ({ user_id: e.user_id }),
    'by-model': (e) => ({ model: e.model, provider: e.provider }),
    'by-provider': (e) => ({ provider: e.provider }),
    'by-key': (e) => ({ key_id: e.key_id, key_name: e.key_id ? keys.get(e.key_id)?.name ?? null : null }),
    'top-tasks': (e) => ({ task: e.task }),
  };
  if ((m = /^\/api\/analytics\/([a-z-]+)$/.exec(path)) && method === 'GET') {
    const { from, to } = range(url);
    const evs = events.map(eventView).filter(eventFilter(url));
    if (m[1] === 'summary') return send(res, 200, { date_from: from, date_to: to, filters: {}, figures: figures(evs) });
    if (GROUPS[m[1]]) {
      let groups = groupBy(evs, GROUPS[m[1]]).map((g) => ({ ...g.key, figures: g.figures }));
      if (m[1] === 'top-tasks') groups = groups.slice(0, Number(url.searchParams.get('limit') ?? 10));
      return send(res, 200, { date_from: from, date_to: to, groups });
    }
    if (m[1] === 'trends') {
      const period = url.searchParams.get('period') ?? 'daily';
      if (!['daily', 'weekly', 'monthly'].includes(period)) throw bad('invalid_period', 'period is daily, weekly or monthly');
      const buckets = [];
      for (let d = from; d <= to; ) {
        const start = d;
        let next = period === 'daily' ? addDay(d, 1) : period === 'weekly' ? addDay(bucketStartOf(d, 'weekly'), 7) : addDay(`${d.slice(0, 7)}-01`, 40).slice(0, 8) + '01';
        const end = next > to ? to : addDay(next, -1);
        buckets.push({ start, end, figures: figures(evs.filter((e) => dayOf(e.occurred_at) >= start && dayOf(e.occurred_at) <= end)) });
        d = next;
      }
      return send(res, 200, { period, date_from: from, date_to: to, buckets });
    }
    return false;
  }
  if (path === '/api/forecasts' && method === 'GET' && FORECAST === 'demo') {
    const horizon = Number(url.searchParams.get('horizon') ?? 30);
    const today = new Date().toISOString().slice(0, 10);
    const base = sum(events.map((e) => dec(e.cost.total)));
    const points = Array.from({ length: horizon }, (_, i) => {
      const grow = { v: BigInt(100 + i * 3), s: 2 }; // made up: a slowly growing daily spend
      const mean = dRound(dMul(base, grow), 6);
      const part = (pct) => dStr(dRound(dMul(mean, { v: BigInt(pct), s: 2 }), 6));
      return { date: addDay(today, i + 1), mean: dStr(mean), lower_80: part(70), upper_80: part(130), lower_95: part(50), upper_95: part(150) };
    });
    const tot = (k) => dStr(sum(points.map((p) => dec(p[k]))));
    return send(res, 200, {
      scope: url.searchParams.get('scope') ?? 'total', horizon, method: 'demo', trained_at: now(), data_from: addDay(today, -29), data_to: today,
      history_days: 30, history: [], points, total_mean: tot('mean'), total_lower_95: tot('lower_95'), total_upper_95: tot('upper_95'),
    });
  }
  if (path === '/api/forecasts' && method === 'GET') {
    const days = new Set(events.map((e) => dayOf(e.occurred_at))).size;
    throw new HttpError(422, 'insufficient_history', `a forecast needs 14 days of history, there are ${days}`);
  }
  if (path === '/api/budgets' && method === 'GET') return send(res, 200, { budgets: [...alertBudgets.values()] });
  if (path === '/api/budgets' && method === 'POST') {
    const b = await readJson(req, ['name', 'amount', 'period', 'scope', 'thresholds', 'emails', 'webhook_url', 'enabled']);
    validateBudget(b, false);
    const at = now();
    const budget = {
      budget_id: randomUUID(),
      name: b.name.trim(),
      amount: String(b.amount).trim(),
      period: b.period,
      scope: { kind: b.scope.kind, value: b.scope.value ?? null },
      thresholds: b.thresholds ?? [],
      emails: b.emails ?? [],
      webhook_url: b.webhook_url ?? null,
      enabled: b.enabled ?? true,
      created_at: at,
      updated_at: at,
    };
    alertBudgets.set(budget.budget_id, budget);
    return send(res, 201, budget);
  }
  if (path === '/api/budgets/check' && method === 'GET') {
    return send(res, 200, { checked_at: now(), budgets: [...alertBudgets.values()].filter((b) => b.enabled).map(budgetCheck) });
  }
  if ((m = /^\/api\/budgets\/([^/]+)(\/test_alert)?$/.exec(path))) {
    const b = alertBudgets.get(m[1]);
    if (!b) throw new HttpError(404, 'budget_not_found', `no budget ${m[1]}`);
    if (m[2] && method === 'POST') {
      const targets = [...b.emails.map((e) => ['email', e]), ...(b.webhook_url ? [['webhook', b.webhook_url]] : [])];
      const made = (targets.length ? targets : [['log', null]]).map(([channel, target]) => ({
        delivery_id: randomUUID(),
        source: 'test',
        subject_id: b.budget_id,
        alert_kind: 'test',
        channel,
        target,
        status: channel === 'webhook' ? 'pending' : 'delivered',
        attempts: channel === 'webhook' ? 0 : 1,
        last_error: null,
        created_at: now(),
        updated_at: now(),
      }));
      deliveries.push(...made);
      return send(res, 200, { deliveries: made });
    }
    if (m[2]) return false;
    if (method === 'GET') return send(res, 200, b);
    if (method === 'DELETE') {
      alertBudgets.delete(b.budget_id);
      res.writeHead(204);
      return res.end();
    }
    if (method === 'PATCH') {
      const p = await readJson(req, ['name', 'amount', 'period', 'scope', 'thresholds', 'emails', 'webhook_url', 'enabled']);
      validateBudget(p, true);
      Object.assign(b, p, { updated_at: now() });
      return send(res, 200, b);
    }
    return false;
  }
  if (path === '/api/alerts/deliveries' && method === 'GET') {
    const id = url.searchParams.get('budget_id');
    const limit = Number(url.searchParams.get('limit') ?? 100);
    return send(res, 200, { deliveries: deliveries.filter((d) => !id || d.subject_id === id).slice().reverse().slice(0, limit) });
  }
  return false;
}

// ---------------------------------------------------------------- issue 14: provider connections, import runs, reconciliation
//
// A connection with the provider's default base URL "imports" the metered usage of the window
// as if the provider had reported it (same tokens, a reported cost a millionth of a dollar per
// bucket above Tally's price). Any other base URL is really asked (2 s timeout); failing to reach
// it, or any answer from it, fails the run with 502 provider_error, as the server does.

const PROVIDER_BASE_URLS = { anthropic: 'https://api.anthropic.com', openai: 'https://api.openai.com/v1' };
const connections = new Map(); // connection_id -> {view fields..., key_hint}
const importRuns = []; // newest last
const imported = new Map(); // `${provider}|${day}|${model}` -> {provider, day, model, tokens: {kind: dec}, cost: dec, priced: dec, events}

function connectionView(c) {
  const { key_hint, ...view } = c;
  return { ...view, admin_key: `sk-...${key_hint}` };
}

/** `diff / base * 100` rounded half away from zero to 4 places, as a string; null when base is zero. */
function pctOf(diff, base) {
  if (base.v === 0n) return null;
  // diff/base = (d.v * 10^b.s) / (b.v * 10^d.s); times 100 * 10^4
  let num = diff.v * 10n ** BigInt(base.s) * 1_000_000n;
  let den = base.v * 10n ** BigInt(diff.s);
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  const neg = num < 0n;
  const abs = neg ? -num : num;
  let q = abs / den;
  if ((abs % den) * 2n >= den) q += 1n;
  return dStr({ v: neg ? -q : q, s: 4 });
}
function dAbs(a) {
  return { v: a.v < 0n ? -a.v : a.v, s: a.s };
}
function dSub(a, b) {
  return dAdd(a, { v: -b.v, s: b.s });
}
function beyond(diff, base, tolerance) {
  const p = pctOf(diff, base);
  return p === null ? diff.v !== 0n : dCmp(dAbs(dec(p)), tolerance) > 0;
}

async function providersApi(req, res, url, path, method) {
  let m;
  if (path === '/api/providers' && method === 'GET') return send(res, 200, { providers: [...connections.values()].map(connectionView) });
  if (path === '/api/providers' && method === 'POST') {
    const b = await readJson(req, ['provider', 'name', 'admin_key', 'base_url']);
    if (!['anthropic', 'openai'].includes(b.provider)) throw bad('invalid_provider', `provider must be anthropic or openai, not ${JSON.stringify(b.provider)}`);
    if (typeof b.name !== 'string' || !/^[A-Za-z0-9_.-]{1,40}$/.test(b.name)) throw bad('invalid_name', "name must be 1-40 characters of letters, digits, '_', '.', '-'");
    if (typeof b.admin_key !== 'string' || b.admin_key.length < 8 || b.admin_key.length > 512 || !/^[\x21-\x7e]+$/.test(b.admin_key))
      throw bad('invalid_admin_key', 'admin_key must be 8-512 printable characters without spaces');
    let base = PROVIDER_BASE_URLS[b.provider];
    if (b.base_url !== undefined && b.base_url !== null) {
      if (typeof b.base_url !== 'string' || !/^https?:\/\/[^/\s?#@]+[^\s?#@]*$/.test(b.base_url)) throw bad('invalid_base_url', 'base_url must be an http:// or https:// URL without query');
      base = b.base_url.replace(/\/+$/, '');
    }
    if ([...connections.values()].some((c) => c.name === b.name)) throw new HttpError(409, 'connection_exists', `a provider connection named ${JSON.stringify(b.name)} exists`);
    const c = {
      connection_id: randomUUID(),
      provider: b.provider,
      name: b.name,
      base_url: base,
      key_hint: b.admin_key.slice(-4),
      created_at: now(),
      last_run_at: null,
      last_status: null,
      last_error: null,
      enabled: true,
    };
    connections.set(c.connection_id, c);
    return send(res, 201, connectionView(c));
  }
  if ((m = /^\/api\/providers\/([^/]+)(\/import|\/runs)?$/.exec(path))) {
    const c = connections.get(m[1]);
    if (!c) throw new HttpError(404, 'connection_not_found', `provider connection ${m[1]} not found`);
    if (!m[2] && method === 'DELETE') {
      connections.delete(c.connection_id);
      return send(res, 200, connectionView(c));
    }
    if (m[2] === '/runs' && method === 'GET') {
      const limit = Number(url.searchParams.get('limit') ?? 50);
      return send(res, 200, { runs: importRuns.filter((r) => r.connection_id === c.connection_id).slice().reverse().slice(0, limit) });
    }
    if (m[2] === '/import' && method === 'POST') {
      const to = url.searchParams.get('to') ? new Date(url.searchParams.get('to')) : new Date();
      const from = url.searchParams.get('from') ? new Date(url.searchParams.get('from')) : new Date(to.getTime() - DAY);
      if (Number.isNaN(to.getTime()) || Number.isNaN(from.getTime())) throw bad('invalid_range', 'from and to must be RFC 3339 instants or YYYY-MM-DD');
      if (from >= to) throw bad('invalid_range', 'the range must have from < to and span at most 400 days');
      const run = {
        run_id: randomUUID(), connection_id: c.connection_id, trigger: 'manual', range_from: from.toISOString(), range_to: to.toISOString(),
        started_at: now(), finished_at: null, status: 'running', pages: 0, buckets: 0, events_new: 0, events_revised: 0, events_unchanged: 0, skipped: 0, costs: 0, error: null,
      };
      importRuns.push(run);
      let failure = null;
      if (c.base_url !== PROVIDER_BASE_URLS[c.provider]) {
        try {
          const r = await fetch(`${c.base_url}/v1/organizations/usage_report/messages`, { signal: AbortSignal.timeout(2000) });
          failure = `unexpected answer from ${c.base_url} (HTTP ${r.status}): the mock server speaks no provider format`;
        } catch (e) {
          failure = `cannot reach ${c.base_url}: ${e?.cause?.code ?? e?.message ?? e}`;
        }
      }
      run.finished_at = now();
      c.last_run_at = run.finished_at;
      if (failure) {
        Object.assign(run, { status: 'failed', error: failure });
        Object.assign(c, { last_status: 'failed', last_error: failure });
        return send(res, 502, { code: 'provider_error', message: `provider error: ${failure}`, run });
      }
      const evs = events.map(eventView).filter((e) => e.provider === c.provider && e.source !== 'provider_import' && e.occurred_at >= run.range_from && e.occurred_at < run.range_to);
      for (const g of groupBy(evs, (e) => ({ day: dayOf(e.occurred_at), model: e.model }))) {
        const k = `${c.provider}|${g.key.day}|${g.key.model}`;
        const tokens = {};
        const bucketEvs = evs.filter((e) => dayOf(e.occurred_at) === g.key.day && e.model === g.key.model);
        for (const e of bucketEvs) for (const l of e.lines) tokens[l.kind] = dAdd(tokens[l.kind] ?? ZERO, dec(l.quantity));
        const priced = sum(bucketEvs.map((e) => dec(e.cost)));
        const next = { provider: c.provider, day: g.key.day, model: g.key.model, tokens, priced, cost: dAdd(priced, dec('0.000001')), events: 1 };
        const old = imported.get(k);
        if (!old) run.events_new++;
        else if (dCmp(old.priced, next.priced) !== 0) run.events_revised++;
        else run.events_unchanged++;
        imported.set(k, next);
        run.buckets++;
        run.costs++;
      }
      run.pages = 1;
      run.status = 'success';
      Object.assign(c, { last_status: 'success', last_error: null });
      return send(res, 200, run);
    }
    return false;
  }
  if (path === '/api/reconciliation' && method === 'GET') {
    const provider = url.searchParams.get('provider');
    if (!['anthropic', 'openai'].includes(provider)) throw bad('invalid_provider', 'provider must be anthropic or openai');
    if ((url.searchParams.get('granularity') ?? 'day') !== 'day') throw bad('invalid_granularity', 'granularity must be day');
    const today = new Date().toISOString().slice(0, 10);
    const to = url.searchParams.get('to') ?? today;
    const from = url.searchParams.get('from') ?? addDay(to, -29);
    if (!DAY_RE.test(from)) throw bad('invalid_date', `from must be a day, YYYY-MM-DD (got ${JSON.stringify(from)})`);
    if (!DAY_RE.test(to)) throw bad('invalid_date', `to must be a day, YYYY-MM-DD (got ${JSON.stringify(to)})`);
    if (from > to || Date.parse(to) - Date.parse(from) >= 366 * DAY) throw bad('invalid_range', 'from must not be after to, and the range at most 366 days');
    const tolText = url.searchParams.get('tolerance_pct') ?? '1';
    if (!/^\d+(\.\d+)?$/.test(tolText)) throw bad('invalid_tolerance', 'tolerance_pct must be a non-negative decimal');
    const tolerance = dec(tolText);
    const keys = new Map();
    const evs = events.map(eventView).filter((e) => e.provider === provider && dayOf(e.occurred_at) >= from && dayOf(e.occurred_at) <= to);
    for (const e of evs) {
      const k = `${dayOf(e.occurred_at)}|${e.model}`;
      const r = keys.get(k) ?? { day: dayOf(e.occurred_at), model: e.model, metered: {}, metered_cost: ZERO, metered_events: 0, imp: null };
      for (const l of e.lines) r.metered[l.kind] = dAdd(r.metered[l.kind] ?? ZERO, dec(l.quantity));
      r.metered_cost = dAdd(r.metered_cost, dec(e.cost));
      r.metered_events++;
      keys.set(k, r);
    }
    for (const i of imported.values()) {
      if (i.provider !== provider || i.day < from || i.day > to) continue;
      const k = `${i.day}|${i.model}`;
      const r = keys.get(k) ?? { day: i.day, model: i.model, metered: {}, metered_cost: ZERO, metered_events: 0, imp: null };
      r.imp = i;
      keys.set(k, r);
    }
    const rows = [...keys.values()]
      .sort((a, b) => (a.day === b.day ? (a.model < b.model ? -1 : 1) : a.day < b.day ? -1 : 1))
      .map((r) => {
        const reported = r.imp?.tokens ?? {};
        const kinds = [...new Set([...Object.keys(reported), ...Object.keys(r.metered)])].sort();
        const flags = [];
        const token_diff = {};
        const token_diff_pct = {};
        for (const k of kinds) {
          const rep = reported[k] ?? ZERO;
          const diff = dSub(r.metered[k] ?? ZERO, rep);
          token_diff[k] = dStr(diff);
          token_diff_pct[k] = pctOf(diff, rep);
          if (beyond(diff, rep, tolerance)) flags.push(`tokens:${k}`);
        }
        const repCost = r.imp?.cost ?? null;
        const priced = r.imp?.priced ?? ZERO;
        const costDiff = repCost && dSub(r.metered_cost, repCost);
        const priceDiff = repCost && dSub(priced, repCost);
        if (repCost && beyond(costDiff, repCost, tolerance)) flags.push('cost');
        return {
          date: r.day,
          model: r.model,
          reported_tokens: Object.fromEntries(Object.entries(reported).map(([k, v]) => [k, dStr(v)])),
          metered_tokens: Object.fromEntries(Object.entries(r.metered).map(([k, v]) => [k, dStr(v)])),
          token_diff,
          token_diff_pct,
          reported_cost: repCost && dStr(repCost),
          tally_priced_cost: dStr(priced),
          metered_cost: dStr(r.metered_cost),
          cost_diff: costDiff && dStr(costDiff),
          cost_diff_pct: repCost && pctOf(costDiff, repCost),
          price_diff: priceDiff && dStr(priceDiff),
          price_diff_pct: repCost && pctOf(priceDiff, repCost),
          reported_events: r.imp?.events ?? 0,
          metered_events: r.metered_events,
          flags,
          flagged: flags.length > 0,
        };
      });
    return send(res, 200, { provider, from, to, granularity: 'day', tolerance_pct: dStr(tolerance), rows });
  }
  return false;
}

// ---------------------------------------------------------------- access control (issue 15)

const FAIL_LIMIT = 10;
const FAIL_WINDOW_MS = 60_000;
/** Failed credentials per remote address: timestamps within the window. */
const failedAuth = new Map();

function recordFailure(addr) {
  const t = Date.now();
  const list = (failedAuth.get(addr) ?? []).filter((x) => t - x < FAIL_WINDOW_MS);
  list.push(t);
  failedAuth.set(addr, list);
}

function throttled(addr) {
  const list = (failedAuth.get(addr) ?? []).filter((x) => Date.now() - x < FAIL_WINDOW_MS);
  if (list.length < FAIL_LIMIT) return null;
  return Math.max(1, Math.ceil((list[0] + FAIL_WINDOW_MS - Date.now()) / 1000));
}

/** Who the request's credential is: {caller: 'admin'} | {caller: 'user', user_id, key_id} | null (none). */
function authenticate(req) {
  const header = req.headers.authorization;
  if (header === undefined) return null;
  const addr = req.socket.remoteAddress ?? '?';
  const wait = throttled(addr);
  if (wait !== null) throw Object.assign(new HttpError(429, 'too_many_failed_auth', `too many failed credentials from this address; retry in ${wait} s`), { retryAfter: wait });
  const m = /^Bearer ([\x21-\x7e]+)$/.exec(header);
  const cred = m?.[1];
  if (cred && cred === ADMIN_TOKEN) return { caller: 'admin', user_id: null, key_id: null };
  const k = cred && [...keys.values()].find((x) => x.secret === cred);
  if (k && !k.revoked_at && !(k.expires_at && Date.parse(k.expires_at) <= Date.now())) return { caller: 'user', user_id: k.user_id, key_id: k.key_id };
  recordFailure(addr);
  throw new HttpError(401, 'invalid_credentials', m ? 'unknown, revoked or expired credential' : 'the Authorization header is not `Bearer <credential>`');
}

/** Routes a user's key may not call. */
function adminOnly(method, path) {
  if (path.startsWith('/api/budgets') || path.startsWith('/api/alerts/') || path === '/api/forecasts') return true;
  if (path.startsWith('/api/providers') || path === '/api/reconciliation' || path.startsWith('/api/scheduler')) return true;
  if (path.startsWith('/api/prices') && method !== 'GET') return true;
  if (/^\/api\/billing\/invoices\/[^/]+\/status$/.test(path)) return true;
  if (path === '/api/keys' && method === 'POST') return true;
  if (/^\/api\/keys\/[^/]+$/.test(path) && method === 'PATCH') return true;
  if (path.startsWith('/api/billing/budget/') && method !== 'GET') return true;
  if (path === '/api/users' && (method === 'GET' || method === 'POST')) return true;
  return false;
}

/** A user's key acts only on its own user's data (403 forbidden otherwise); admin and open mode may act as anyone. */
function own(req, userId) {
  const c = req.caller;
  if (c?.caller === 'user' && userId !== c.user_id) throw new HttpError(403, 'forbidden', "this key may not act on another user's data");
}

/** Token mode: check the credential, the admin-only routes, and pin a user key's list queries to its user. */
function guard(req, url, path, method) {
  if (AUTH !== 'token') return;
  const c = authenticate(req);
  if (!c) throw new HttpError(401, 'unauthenticated', 'this server requires `Authorization: Bearer <key or admin token>`');
  req.caller = c;
  if (c.caller !== 'user') return;
  if (adminOnly(method, path)) throw new HttpError(403, 'forbidden', 'admin only');
  const q = url.searchParams.get('user_id');
  if (q !== null) own(req, q);
  else if (['/api/threads', '/api/keys', '/api/usage/events'].includes(path) || path.startsWith('/api/analytics/')) url.searchParams.set('user_id', c.user_id);
  let m;
  if ((m = /^\/api\/(?:users|billing\/metrics\/user|billing\/invoices\/user)\/([^/]+)$/.exec(path))) own(req, decodeURIComponent(m[1]));
  if ((m = /^\/api\/(?:threads|messages|billing\/metrics\/thread|billing\/generate-invoice\/thread)\/([^/]+)(?:\/history)?$/.exec(path)) && m[1] !== 'stream') {
    const t = threads.get(decodeURIComponent(m[1]));
    if (t) own(req, t.user_id);
  }
  if ((m = /^\/api\/billing\/invoices\/([^/]+)$/.exec(path))) {
    const inv = invoices.get(decodeURIComponent(m[1]));
    if (inv) own(req, inv.user_id);
  }
  if ((m = /^\/api\/(?:keys|billing\/budget|billing\/spend)\/([^/]+)/.exec(path))) {
    const k = keys.get(decodeURIComponent(m[1]));
    if (k) own(req, k.user_id);
  }
}

// ---------------------------------------------------------------- routes

async function api(req, res, url) {
  const path = url.pathname.replace(/\/+$/, '') || '/';
  const method = req.method;
  let m;

  if (path === '/api/health') return send(res, 200, { status: 'ok' });
  if (path === '/api/auth/whoami' && method === 'GET') {
    if (AUTH === 'open') return send(res, 200, { mode: 'open', caller: 'open', user_id: null, key_id: null });
    const c = authenticate(req);
    return send(res, 200, { mode: 'token', caller: c ? c.caller : 'anonymous', user_id: c?.user_id ?? null, key_id: c?.key_id ?? null });
  }
  guard(req, url, path, method);

  // users
  if (path === '/api/users' && method === 'POST') {
    const b = await readJson(req, ['user_id', 'username', 'email']);
    const id = b.user_id ?? req.headers['x-user-id'];
    if (!id || !USER_ID.test(id)) throw bad('invalid_user_id', "user id must be 1-64 characters of letters, digits, '_', '.', '@', '-'");
    if (users.has(id)) throw new HttpError(409, 'user_exists', `user ${id} already exists`);
    const u = { user_id: id, username: b.username ?? id, email: b.email ?? null, created_at: now() };
    users.set(id, u);
    return send(res, 201, u);
  }
  if (path === '/api/users' && method === 'GET') return send(res, 200, [...users.values()]);
  if ((m = /^\/api\/users\/([^/]+)$/.exec(path)) && method === 'GET') {
    const u = users.get(decodeURIComponent(m[1]));
    if (!u) throw new HttpError(404, 'user_not_found', `user ${m[1]} not found`);
    return send(res, 200, u);
  }

  // threads
  if (path === '/api/threads' && method === 'POST') {
    const b = await readJson(req, ['user_id', 'title', 'model']);
    const userId = b.user_id ?? req.headers['x-user-id'];
    own(req, userId);
    if (!users.has(userId)) throw new HttpError(404, 'user_not_found', `user ${userId} not found`);
    const model = b.model ?? DEFAULT_MODEL;
    if (!MODELS.some((x) => x.name === model && x.is_active)) throw bad('unknown_model', `unknown model ${model}`);
    const t = { thread_id: randomUUID(), user_id: userId, title: b.title ?? 'New thread', model, created_at: now(), updated_at: now(), is_active: true };
    threads.set(t.thread_id, t);
    return send(res, 201, threadView(t));
  }
  if (path === '/api/threads' && method === 'GET') {
    const userId = url.searchParams.get('user_id');
    const list = [...threads.values()].filter((t) => !userId || t.user_id === userId).sort((a, b) => (a.updated_at < b.updated_at ? 1 : -1));
    return send(res, 200, list.map(threadView));
  }
  if ((m = /^\/api\/threads\/([^/]+)$/.exec(path)) && method === 'GET') {
    const t = threads.get(m[1]);
    if (!t) throw new HttpError(404, 'thread_not_found', `thread ${m[1]} not found`);
    return send(res, 200, { ...threadView(t), messages: messageViews(t.thread_id) });
  }

  // messages
  if (path === '/api/messages/stream' && method === 'POST') return streamMessage(req, res);
  if ((m = /^\/api\/messages\/([^/]+)\/history$/.exec(path)) && method === 'GET') {
    const t = threads.get(m[1]);
    if (!t) throw new HttpError(404, 'thread_not_found', `thread ${m[1]} not found`);
    const views = messageViews(t.thread_id);
    if (FAULT === 'history-cost') for (const v of views) if (v.cost) v.cost_total = `${v.cost_total}1`;
    return send(res, 200, { thread_id: t.thread_id, total_cost: threadTotal(t.thread_id), messages: views });
  }

  // billing
  if ((m = /^\/api\/billing\/metrics\/user\/([^/]+)$/.exec(path)) && method === 'GET') {
    const id = decodeURIComponent(m[1]);
    return send(res, 200, { user_id: id, metrics: summary((l) => l.user_id === id) });
  }
  if ((m = /^\/api\/billing\/metrics\/thread\/([^/]+)$/.exec(path)) && method === 'GET') {
    const t = threads.get(m[1]);
    if (!t) throw new HttpError(404, 'thread_not_found', `thread ${m[1]} not found`);
    return send(res, 200, { thread_id: t.thread_id, user_id: t.user_id, model: t.model, metrics: summary((l) => l.thread_id === t.thread_id) });
  }
  if ((m = /^\/api\/billing\/generate-invoice\/thread\/([^/]+)$/.exec(path)) && method === 'POST') {
    const t = threads.get(m[1]);
    if (!t) throw new HttpError(404, 'thread_not_found', `thread ${m[1]} not found`);
    const open = lines.filter((l) => l.thread_id === t.thread_id && !l.invoice_id);
    if (!open.length) throw new HttpError(409, 'nothing_to_invoice', 'all usage of this thread is already invoiced');
    const id = randomUUID();
    const subtotal = sum(open.map((l) => dec(l.amount)));
    const inv = {
      id,
      user_id: t.user_id,
      thread_id: t.thread_id,
      period_start: open[0].occurred_at,
      period_end: open[open.length - 1].occurred_at,
      lines: open.map((l) => ({ id: l.id, message_id: l.message_id, event_id: l.event_id, thread_id: l.thread_id, kind: l.kind, unit: l.unit, quantity: l.quantity, unit_price: l.unit_price, price_version_id: l.price_version_id, amount: l.amount, occurred_at: l.occurred_at })),
      subtotal: dStr(subtotal),
      total: dStr(dRound(subtotal, 6)),
      status: 'pending',
      created_at: now(),
    };
    for (const l of open) l.invoice_id = id;
    invoices.set(id, inv);
    return send(res, 201, inv);
  }
  if ((m = /^\/api\/billing\/invoices\/user\/([^/]+)$/.exec(path)) && method === 'GET') {
    const id = decodeURIComponent(m[1]);
    return send(res, 200, [...invoices.values()].filter((i) => i.user_id === id).sort((a, b) => (a.created_at < b.created_at ? 1 : -1)));
  }
  if ((m = /^\/api\/billing\/invoices\/([^/]+)\/status$/.exec(path)) && method === 'POST') {
    const inv = invoices.get(m[1]);
    if (!inv) throw new HttpError(404, 'invoice_not_found', `invoice ${m[1]} not found`);
    const b = await readJson(req, ['status']);
    if (b.status !== 'paid' && b.status !== 'pending') throw bad('invalid_status', 'status is pending or paid');
    inv.status = b.status;
    return send(res, 200, inv);
  }
  if ((m = /^\/api\/billing\/invoices\/([^/]+)$/.exec(path)) && method === 'GET') {
    const inv = invoices.get(m[1]);
    if (!inv) throw new HttpError(404, 'invoice_not_found', `invoice ${m[1]} not found`);
    return send(res, 200, inv);
  }
  if (path === '/api/usage/events' && method === 'GET') {
    const limit = Number(url.searchParams.get('limit') ?? 100);
    if (!(limit >= 1 && limit <= 1000)) throw bad('invalid_page', 'limit must be 1-1000');
    const threadId = url.searchParams.get('thread_id');
    const status = url.searchParams.get('status');
    if (status && status !== 'success' && status !== 'failed') throw bad('invalid_status', 'status must be success or failed');
    const cursor = url.searchParams.get('cursor');
    if (cursor !== null && !/^\d+$/.test(cursor)) throw bad('invalid_cursor', 'cursor is not one this API returned');
    const f = eventFilter(url, false);
    const list = events
      .map(eventView)
      .filter((e) => f(e) && (!threadId || e.thread_id === threadId) && (!status || e.was_successful === (status === 'success')) && (cursor === null || e.event_seq < Number(cursor)))
      .reverse();
    const page = list.slice(0, limit);
    return send(res, 200, { events: page, next_cursor: list.length > limit ? String(page[page.length - 1].event_seq) : null });
  }
  if (path.startsWith('/api/analytics/') || path.startsWith('/api/budgets') || path.startsWith('/api/alerts/') || path === '/api/forecasts') {
    if ((await issue13Api(req, res, url, path, method)) !== false) return;
  }
  if ((path.startsWith('/api/providers') || path === '/api/reconciliation') && FAULT !== 'no-providers') {
    if ((await providersApi(req, res, url, path, method)) !== false) return;
  }
  if ((m = /^\/api\/prices\/([^/]+)\/verify$/.exec(path)) && method === 'POST') {
    const v = priceVersions.find((p) => p.id === m[1]);
    if (!v) throw new HttpError(404, 'price_not_found', `no price version ${m[1]}`);
    v.verified_at = now();
    return send(res, 200, priceView(v));
  }

  // models and prices
  if (path === '/api/models' && method === 'GET') return send(res, 200, MODELS.map(modelView));
  if (path === '/api/prices' && method === 'GET') {
    const model = url.searchParams.get('model');
    const kind = url.searchParams.get('kind');
    const history = url.searchParams.get('history') === 'true';
    return send(res, 200, priceVersions.filter((p) => (!model || p.model === model) && (!kind || p.kind === kind) && (history || p.is_current)).map(priceView));
  }
  if (path === '/api/prices' && method === 'POST') {
    const b = await readJson(req, ['model', 'kind', 'price', 'effective_from']);
    if (!MODELS.some((x) => x.name === b.model)) throw new HttpError(404, 'model_not_found', `model ${b.model} not found`);
    if (!KIND.test(b.kind ?? '') || (isTokenKind(b.kind) && !TOKEN_KINDS.includes(b.kind))) throw bad('invalid_usage_kind', `invalid usage kind ${b.kind}`);
    let price;
    try {
      price = dec(b.price);
    } catch {
      throw bad('invalid_price', 'price must be a decimal string');
    }
    if (price.v < 0n) throw bad('negative_price', 'price must not be negative');
    const from = b.effective_from ? new Date(b.effective_from) : new Date();
    if (Number.isNaN(from.getTime())) throw bad('invalid_effective_from', 'effective_from is not a time');
    if (b.effective_from && from.getTime() < Date.now() - 1000) throw bad('price_in_past', 'a new price cannot start in the past');
    const fromIso = from.toISOString();
    const current = priceVersions.find((p) => p.model === b.model && p.kind === b.kind && p.is_current);
    let closed = null;
    if (current) {
      current.effective_to = fromIso;
      current.is_current = false;
      closed = current;
    }
    const created = { id: randomUUID(), model: b.model, kind: b.kind, price: String(b.price).trim(), effective_from: fromIso, effective_to: null, is_current: true, verified_at: null };
    priceVersions.push(created);
    return send(res, 201, { closed: closed && priceView(closed), created: priceView(created) });
  }

  if (path === '/api/dashboard/stream' && method === 'GET') return dashboardStream(req, res);

  if (FAULT !== 'no-keys' && (path.startsWith('/api/keys') || path.startsWith('/api/billing/budget/') || path.startsWith('/api/billing/spend/'))) {
    if ((await keysApi(req, res, url, path, method)) !== false) return;
  }

  throw new HttpError(404, 'not_found', `no route for ${method} ${url.pathname}`);
}

// ---------------------------------------------------------------- static files (dist/) with SPA fallback

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.ico': 'image/x-icon', '.woff2': 'font/woff2' };

async function serveStatic(req, res, url) {
  const rel = normalize(decodeURIComponent(url.pathname)).replace(/^([/\\])+/, '');
  let file = join(DIST, rel);
  if (!file.startsWith(DIST)) return send(res, 403, { code: 'forbidden', message: 'outside dist' });
  let ok = false;
  try {
    ok = (await stat(file)).isFile();
  } catch {
    ok = false;
  }
  if (!ok) {
    if (extname(rel) && rel.startsWith('assets')) return send(res, 404, { code: 'not_found', message: `no file ${url.pathname}` });
    file = join(DIST, 'index.html'); // SPA fallback for client-side routes
  }
  try {
    const data = await readFile(file);
    res.writeHead(200, { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Cache-Control': file.endsWith('index.html') ? 'no-cache' : 'max-age=3600' });
    res.end(req.method === 'HEAD' ? undefined : data);
  } catch {
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end(`mock server: no UI build at ${DIST} (run npm run build), API is under /api`);
  }
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', `http://${req.headers.host ?? 'localhost'}`);
  try {
    if (url.pathname === '/v1/chat/completions' && req.method === 'POST') await gatewayChat(req, res);
    else if (url.pathname.startsWith('/api/') || url.pathname === '/api') await api(req, res, url);
    else await serveStatic(req, res, url);
  } catch (e) {
    const status = e instanceof HttpError ? e.status : 500;
    if (!(e instanceof HttpError)) console.error(e);
    if (!res.headersSent && e.retryAfter !== undefined) res.setHeader('Retry-After', String(e.retryAfter));
    if (!res.headersSent) send(res, status, { code: e.code ?? 'internal', message: e.message });
    else res.end();
  }
});

server.listen(PORT, HOST, () => {
  console.log(`tally mock server on http://${HOST}:${PORT} (dist: ${DIST}, auth: ${AUTH})`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.closeAllConnections();
    server.close();
    process.exit(0);
  });
}
