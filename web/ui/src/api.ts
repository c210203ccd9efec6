// Client of the Tally HTTP API. Every amount stays the string the server sent.
// Every call carries the signed-in credential (Authorization: Bearer …) when there is one;
// a 401 answer anywhere tells the app to go back to sign-in (auth.ts onUnauthorized).

import { authHeaders, getCredential, notifyUnauthorized, parseWhoami, retryAfterSeconds, WhoamiShapeError, type Whoami } from './auth';
import { readSseStream } from './sse';
import type {
  AlertBudget,
  AlertBudgetInput,
  AnalyticsFilters,
  AnalyticsGroups,
  AnalyticsQuery,
  AnalyticsSummary,
  ApiErrorBody,
  BudgetCheckReport,
  Delivery,
  Forecast,
  TrendPeriod,
  Trends,
  BudgetInput,
  BudgetPeriod,
  BudgetView,
  CreateKeyRequest,
  History,
  ImportRun,
  Invoice,
  KeyBudgets,
  KeySpend,
  KeyView,
  KeyWithSecret,
  Metrics,
  Model,
  PriceChange,
  PriceVersion,
  ProviderConnection,
  ProviderConnectionInput,
  ProviderName,
  Reconciliation,
  StreamDone,
  StreamStart,
  StreamUsage,
  Thread,
  ThreadDetail,
  UsageEventPage,
  User,
} from './types';

/** An error answer of the API ({code, message}) or a transport failure (code "network"). */
export class ApiError extends Error {
  constructor(
    public readonly status: number,
    public readonly code: string,
    message: string,
    /** The whole error body, when it carried more than `{code, message}` (e.g. a failed run). */
    public readonly body?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = res.statusText || `HTTP ${res.status}`;
  let full: unknown;
  try {
    const body = (await res.json()) as Partial<ApiErrorBody>;
    if (body && typeof body.code === 'string') code = body.code;
    if (body && typeof body.message === 'string') message = body.message;
    full = body;
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message, full);
}

/**
 * The error of a failed answer. A 401 also signals the app that the credential is gone or
 * refused, unless the call was sent with a credential that has since been replaced (a late
 * answer to a call from before a sign-out or a new sign-in).
 */
export async function answerError(res: Response, sent: string | null): Promise<ApiError> {
  const err = await errorFrom(res);
  if (res.status === 401 && sent === getCredential()) notifyUnauthorized(err);
  return err;
}

/** Headers of an API call: the given ones plus the credential's Authorization header. */
export function withAuth(headers: Record<string, string>): Record<string, string> {
  return { ...headers, ...authHeaders() };
}

async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const sent = getCredential();
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers: withAuth(body === undefined ? { Accept: 'application/json' } : { Accept: 'application/json', 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `cannot reach the server: ${(e as Error)?.message ?? e}`);
  }
  if (!res.ok) throw await answerError(res, sent);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

const enc = encodeURIComponent;

// --- access control ---

/** What whoami says about a credential; `legacy` when the node predates access control (404). */
export type WhoamiAnswer = (Whoami & { legacy: false }) | { mode: 'open'; caller: 'open'; user_id: null; key_id: null; legacy: true };

/**
 * Ask the server who `credential` is (no credential: who an anonymous caller is). Only this
 * credential is sent, never the stored one, and a 401 here does not sign anyone out: it is the
 * answer (ApiError 401 `invalid_credentials`). A 429 carries `retryAfter` seconds in its body.
 * A node without the endpoint (404) is an open-mode node from before access control.
 */
export async function whoami(credential: string | null, signal?: AbortSignal): Promise<WhoamiAnswer> {
  let res: Response;
  try {
    res = await fetch('/api/auth/whoami', {
      method: 'GET',
      headers: credential ? { Accept: 'application/json', Authorization: `Bearer ${credential}` } : { Accept: 'application/json' },
      signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `cannot reach the server: ${(e as Error)?.message ?? e}`);
  }
  if (res.status === 404) return { mode: 'open', caller: 'open', user_id: null, key_id: null, legacy: true };
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 429) {
      const secs = retryAfterSeconds(res.headers.get('Retry-After'));
      throw new ApiError(err.status, err.code, err.message, { ...(typeof err.body === 'object' && err.body ? err.body : {}), retryAfter: secs });
    }
    throw err;
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new ApiError(res.status, 'bad_whoami', 'the server answered /api/auth/whoami with something that is not JSON');
  }
  try {
    return { ...parseWhoami(body), legacy: false };
  } catch (e) {
    if (e instanceof WhoamiShapeError) throw new ApiError(res.status, 'bad_whoami', e.message);
    throw e;
  }
}

// --- users ---

export function getUser(userId: string): Promise<User> {
  return request('GET', `/api/users/${enc(userId)}`);
}

/** Create the user, or fetch it when it already exists (409 user_exists). */
export async function ensureUser(userId: string): Promise<User> {
  try {
    return await request<User>('POST', '/api/users/', { user_id: userId });
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) return getUser(userId);
    throw e;
  }
}

// --- threads and messages ---

export function listThreads(userId: string): Promise<Thread[]> {
  return request('GET', `/api/threads/?user_id=${enc(userId)}`);
}

export function createThread(userId: string, model?: string, title?: string): Promise<Thread> {
  const body: Record<string, string> = { user_id: userId };
  if (model) body.model = model;
  if (title) body.title = title;
  return request('POST', '/api/threads/', body);
}

export function getThread(threadId: string): Promise<ThreadDetail> {
  return request('GET', `/api/threads/${enc(threadId)}`);
}

export function getHistory(threadId: string): Promise<History> {
  return request('GET', `/api/messages/${enc(threadId)}/history`);
}

export interface StreamHandlers {
  onStart?: (ev: StreamStart) => void;
  onDelta?: (ev: { text: string }) => void;
  onUsage?: (ev: StreamUsage) => void;
  onDone?: (ev: StreamDone) => void;
}

/**
 * Send a message and follow the reply as it streams (POST + server-sent events).
 * Resolves with the `done` event; rejects with ApiError on an HTTP error, an
 * `error` event, or a stream that ends without `done`.
 */
export async function streamMessage(
  req: { threadId: string; userId: string; content: string },
  handlers: StreamHandlers,
  signal?: AbortSignal,
): Promise<StreamDone> {
  const sent = getCredential();
  let res: Response;
  try {
    res = await fetch('/api/messages/stream', {
      method: 'POST',
      headers: withAuth({ Accept: 'text/event-stream', 'Content-Type': 'application/json' }),
      body: JSON.stringify({ thread_id: req.threadId, user_id: req.userId, content: req.content }),
      signal,
    });
  } catch (e) {
    if ((e as Error)?.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', `cannot reach the server: ${(e as Error)?.message ?? e}`);
  }
  if (!res.ok) throw await answerError(res, sent);
  if (!res.body) throw new ApiError(res.status, 'no_stream', 'the server sent no stream body');

  let done: StreamDone | null = null;
  let failure: ApiError | null = null;
  await readSseStream(res.body, (ev) => {
    let data: unknown;
    try {
      data = JSON.parse(ev.data);
    } catch {
      failure = failure ?? new ApiError(res.status, 'bad_event', `unreadable ${ev.event} event`);
      return;
    }
    switch (ev.event) {
      case 'start':
        handlers.onStart?.(data as StreamStart);
        break;
      case 'delta':
        handlers.onDelta?.(data as { text: string });
        break;
      case 'usage':
        handlers.onUsage?.(data as StreamUsage);
        break;
      case 'done':
        done = data as StreamDone;
        handlers.onDone?.(done);
        break;
      case 'error': {
        const b = data as Partial<ApiErrorBody>;
        failure = new ApiError(res.status, b.code ?? 'stream_error', b.message ?? 'the reply failed');
        break;
      }
      default:
        break;
    }
  });
  if (done) return done;
  throw failure ?? new ApiError(res.status, 'stream_ended', 'the reply stream ended before it finished');
}

// --- billing ---

export function userMetrics(userId: string): Promise<Metrics> {
  return request('GET', `/api/billing/metrics/user/${enc(userId)}`);
}

export function threadMetrics(threadId: string): Promise<Metrics> {
  return request('GET', `/api/billing/metrics/thread/${enc(threadId)}`);
}

export function generateThreadInvoice(threadId: string): Promise<Invoice> {
  return request('POST', `/api/billing/generate-invoice/thread/${enc(threadId)}`);
}

export function listInvoices(userId: string): Promise<Invoice[]> {
  return request('GET', `/api/billing/invoices/user/${enc(userId)}`);
}

export function getInvoice(invoiceId: string): Promise<Invoice> {
  return request('GET', `/api/billing/invoices/${enc(invoiceId)}`);
}

export function setInvoiceStatus(invoiceId: string, status: 'paid' | 'pending'): Promise<Invoice> {
  return request('POST', `/api/billing/invoices/${enc(invoiceId)}/status`, { status });
}

/** Query of the usage log: filters, page size and the cursor of the previous page. */
export interface UsageEventsQuery extends AnalyticsFilters {
  limit?: number;
  cursor?: string | null;
  status?: 'success' | 'failed';
}

/** One page of the usage log, newest first; pass `next_cursor` back as `cursor` for the next. */
export function usageEvents(q: UsageEventsQuery): Promise<UsageEventPage> {
  const params = new URLSearchParams();
  for (const k of ['user_id', 'provider', 'model', 'key_id', 'task', 'status', 'cursor'] as const) {
    const v = q[k];
    if (v) params.set(k, v);
  }
  params.set('limit', String(q.limit ?? 100));
  return request('GET', `/api/usage/events?${params.toString()}`);
}

// --- analytics ---

/** The query string of an analytics call: the range and the non-empty filters, plus extras. */
export function analyticsParams(q: AnalyticsQuery, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  params.set('date_from', q.date_from);
  params.set('date_to', q.date_to);
  for (const k of ['user_id', 'provider', 'model', 'key_id', 'task'] as const) {
    const v = q[k]?.trim();
    if (v) params.set(k, v);
  }
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  return params.toString();
}

export function analyticsSummary(q: AnalyticsQuery, signal?: AbortSignal): Promise<AnalyticsSummary> {
  return request('GET', `/api/analytics/summary?${analyticsParams(q)}`, undefined, signal);
}

/** The breakdowns of the analytics API. */
export type Breakdown = 'by-user' | 'by-model' | 'by-provider' | 'by-key' | 'top-tasks';

export function analyticsGroups(kind: Breakdown, q: AnalyticsQuery, limit?: number): Promise<AnalyticsGroups> {
  return request('GET', `/api/analytics/${kind}?${analyticsParams(q, limit ? { limit: String(limit) } : {})}`);
}

export function analyticsTrends(q: AnalyticsQuery, period: TrendPeriod): Promise<Trends> {
  return request('GET', `/api/analytics/trends?${analyticsParams(q, { period })}`);
}

// --- forecasts ---

/** The stored forecast of a scope (`total`, `provider:NAME`, ...); 422 insufficient_history without enough data. */
export function getForecast(scope: string, horizon = 30): Promise<Forecast> {
  return request('GET', `/api/forecasts?scope=${enc(scope)}&horizon=${horizon}`);
}

// --- budgets with alerts ---

export function listAlertBudgets(): Promise<{ budgets: AlertBudget[] }> {
  return request('GET', '/api/budgets');
}

export function checkAlertBudgets(): Promise<BudgetCheckReport> {
  return request('GET', '/api/budgets/check');
}

export function createAlertBudget(body: AlertBudgetInput): Promise<AlertBudget> {
  return request('POST', '/api/budgets', body);
}

export function patchAlertBudget(id: string, patch: Partial<AlertBudgetInput>): Promise<AlertBudget> {
  return request('PATCH', `/api/budgets/${enc(id)}`, patch);
}

export function deleteAlertBudget(id: string): Promise<void> {
  return request('DELETE', `/api/budgets/${enc(id)}`);
}

export function sendTestAlert(id: string): Promise<{ deliveries: Delivery[] }> {
  return request('POST', `/api/budgets/${enc(id)}/test_alert`);
}

export function listDeliveries(q: { budget_id?: string; limit?: number } = {}): Promise<{ deliveries: Delivery[] }> {
  const params = new URLSearchParams();
  if (q.budget_id) params.set('budget_id', q.budget_id);
  params.set('limit', String(q.limit ?? 50));
  return request('GET', `/api/alerts/deliveries?${params.toString()}`);
}

// --- models and prices ---

export function listModels(): Promise<Model[]> {
  return request('GET', '/api/models');
}

export function listPrices(q: { model?: string; kind?: string; history?: boolean }): Promise<PriceVersion[]> {
  const params = new URLSearchParams();
  if (q.model) params.set('model', q.model);
  if (q.kind) params.set('kind', q.kind);
  if (q.history) params.set('history', 'true');
  const qs = params.toString();
  return request('GET', `/api/prices${qs ? `?${qs}` : ''}`);
}

export function addPrice(p: { model: string; kind: string; price: string; effective_from?: string }): Promise<PriceChange> {
  const body: Record<string, string> = { model: p.model, kind: p.kind, price: p.price };
  if (p.effective_from) body.effective_from = p.effective_from;
  return request('POST', '/api/prices', body);
}

/** Confirm a price version against the provider's list; answers the version with its new `verified_at`. */
export function verifyPrice(id: string): Promise<PriceVersion> {
  return request('POST', `/api/prices/${enc(id)}/verify`);
}


// --- gateway: virtual keys, budgets, spend ---

export function listKeys(userId: string): Promise<KeyView[]> {
  return request('GET', `/api/keys?user_id=${enc(userId)}`);
}

export function getKey(keyId: string): Promise<KeyView> {
  return request('GET', `/api/keys/${enc(keyId)}`);
}

/** Create a key; the answer carries its secret, the only time the server sends it. */
export function createKey(body: CreateKeyRequest): Promise<KeyWithSecret> {
  return request('POST', '/api/keys', body);
}

export function revokeKey(keyId: string): Promise<KeyView> {
  return request('POST', `/api/keys/${enc(keyId)}/revoke`);
}

/** Give the key a new secret (returned once); the old one stops working. */
export function rotateKey(keyId: string): Promise<KeyWithSecret> {
  return request('POST', `/api/keys/${enc(keyId)}/rotate`);
}

export function keyBudgets(keyId: string): Promise<KeyBudgets> {
  return request('GET', `/api/billing/budget/${enc(keyId)}`);
}

/** Set (insert or replace) the key's budget for `body.period`. */
export function putKeyBudget(keyId: string, body: BudgetInput): Promise<BudgetView> {
  return request('PUT', `/api/billing/budget/${enc(keyId)}`, body);
}

export function deleteKeyBudget(keyId: string, period: BudgetPeriod | string): Promise<void> {
  return request('DELETE', `/api/billing/budget/${enc(keyId)}?period=${enc(period)}`);
}

export function keySpend(keyId: string, period: BudgetPeriod | string): Promise<KeySpend> {
  return request('GET', `/api/billing/spend/${enc(keyId)}?period=${enc(period)}`);
}

// --- provider connections, import runs and reconciliation ---

export function listProviderConnections(): Promise<{ providers: ProviderConnection[] }> {
  return request('GET', '/api/providers');
}

/** Store a connection (the admin key is sealed server-side; the answer shows it masked). */
export function createProviderConnection(body: ProviderConnectionInput): Promise<ProviderConnection> {
  return request('POST', '/api/providers', body);
}

export function deleteProviderConnection(id: string): Promise<ProviderConnection> {
  return request('DELETE', `/api/providers/${enc(id)}`);
}

/**
 * Run an import of `[from, to)` now (RFC 3339 instants) and answer the run. A provider
 * failure rejects with ApiError 502 `provider_error` whose `body.run` is the failed run.
 */
export function importProviderNow(id: string, from: string, to: string): Promise<ImportRun> {
  return request('POST', `/api/providers/${enc(id)}/import?from=${enc(from)}&to=${enc(to)}`);
}

export function listImportRuns(id: string, limit = 10): Promise<{ runs: ImportRun[] }> {
  return request('GET', `/api/providers/${enc(id)}/runs?limit=${limit}`);
}

/** Reported against metered usage and cost of `provider`, per UTC day and model. */
export function getReconciliation(q: { provider: ProviderName; from: string; to: string; tolerance_pct: string }): Promise<Reconciliation> {
  const params = new URLSearchParams({ provider: q.provider, from: q.from, to: q.to, granularity: 'day', tolerance_pct: q.tolerance_pct });
  return request('GET', `/api/reconciliation?${params.toString()}`);
}
