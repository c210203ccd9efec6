// Virtual keys for display and their forms: status as of now, the allow-list in words,
// and form drafts checked and turned into API bodies (amounts stay decimal strings).

import { PERIODS } from './budget';
import { compareDecimal, isDecimal, parseDecimal, shiftDecimal } from './money';
import type { BudgetInput, BudgetPeriod, BudgetView, CreateKeyRequest, KeyView } from './types';

/** Longest key name the server takes. */
export const MAX_KEY_NAME_LEN = 200;

export interface KeyStatusView {
  status: 'active' | 'revoked' | 'expired';
  /** "never expires", "expires in 3 d 4 h", "revoked 2025-01-02 03:04:05"… (times as ISO, formatted by the caller). */
  detail: string;
  /** The instant the detail refers to (revocation, expiry), if any. */
  at: string | null;
}

/**
 * A key's status now: the server's, except that an active key whose expiry has passed
 * while the page was open shows as expired.
 */
export function keyStatus(k: Pick<KeyView, 'status' | 'expires_at' | 'revoked_at'>, now: number): KeyStatusView {
  if (k.status === 'revoked' || k.revoked_at) return { status: 'revoked', detail: 'revoked', at: k.revoked_at };
  const exp = k.expires_at ? Date.parse(k.expires_at) : Number.NaN;
  if (k.status === 'expired' || (!Number.isNaN(exp) && exp <= now)) return { status: 'expired', detail: 'expired', at: k.expires_at };
  if (Number.isNaN(exp)) return { status: 'active', detail: 'never expires', at: null };
  return { status: 'active', detail: 'expires', at: k.expires_at };
}

/** "all models", or the list ("a, b"), shortened past `max` names ("a, b +3 more"). */
export function allowedModelsText(models: string[] | null, max = 2): string {
  if (models === null) return 'all models';
  if (models.length === 0) return 'no models';
  if (models.length <= max) return models.join(', ');
  return `${models.slice(0, max).join(', ')} +${models.length - max} more`;
}

/** One budget row of a form, as typed. */
export interface BudgetDraft {
  /** USD per period, e.g. "5.00". */
  amount: string;
  period: BudgetPeriod;
  /** Alert threshold in percent of the amount ("80"); blank: no alert. */
  thresholdPercent: string;
  timezone: string;
  enabled: boolean;
}

export function emptyBudgetDraft(period: BudgetPeriod = 'daily'): BudgetDraft {
  return { amount: '', period, thresholdPercent: '80', timezone: 'UTC', enabled: true };
}

/** A form row filled from an existing budget (threshold shown in percent, exactly). */
export function draftFromBudget(b: BudgetView): BudgetDraft {
  return {
    amount: b.max_budget,
    period: (PERIODS as string[]).includes(b.period) ? (b.period as BudgetPeriod) : 'monthly',
    thresholdPercent: b.alert_threshold ? (shiftDecimal(b.alert_threshold, 2) ?? '') : '',
    timezone: b.timezone || 'UTC',
    enabled: b.enabled,
  };
}

export type Checked<T> = { ok: T; error?: undefined } | { ok?: undefined; error: string };

/** A budget draft as an API body, or what is wrong with it. */
export function budgetInput(d: BudgetDraft): Checked<BudgetInput> {
  const amount = d.amount.trim().replace(/^\$/, '');
  const p = parseDecimal(amount);
  if (!p || amount === '' || p.negative || compareDecimal(amount, '0') <= 0) {
    return { error: `The ${d.period} budget must be a positive amount in USD, e.g. 5.00.` };
  }
  const t = d.thresholdPercent.trim().replace(/%$/, '').trim();
  let alert: string | null = null;
  if (t !== '') {
    if (!isDecimal(t) || compareDecimal(t, '0') <= 0 || compareDecimal(t, '100') > 0) {
      return { error: `The ${d.period} alert threshold must be a percentage above 0 and at most 100.` };
    }
    alert = shiftDecimal(t, -2);
  }
  return { ok: { max_budget: amount, period: d.period, alert_threshold: alert, enabled: d.enabled, timezone: d.timezone || 'UTC' } };
}

/** The create-key form, as typed. */
export interface KeyDraft {
  name: string;
  /** Every model (the allow-list is null). */
  allModels: boolean;
  models: string[];
  /** A `datetime-local` value (local time) or blank for no expiry. */
  expiresAt: string;
  /** Requests per minute, or blank for no limit. */
  rpm: string;
  budgets: BudgetDraft[];
}

export function emptyKeyDraft(): KeyDraft {
  return { name: '', allModels: true, models: [], expiresAt: '', rpm: '', budgets: [] };
}

/** The body of `POST /api/keys` from the form, or the first thing wrong with it. */
export function createKeyRequest(userId: string, d: KeyDraft, now: number): Checked<CreateKeyRequest> {
  const name = d.name.trim();
  if (!name) return { error: 'Give the key a name.' };
  if (name.length > MAX_KEY_NAME_LEN) return { error: `A key name is at most ${MAX_KEY_NAME_LEN} characters.` };
  if (!d.allModels && d.models.length === 0) return { error: 'Pick at least one model, or allow all models.' };
  let expires: string | null = null;
  if (d.expiresAt.trim()) {
    const t = new Date(d.expiresAt).getTime();
    if (Number.isNaN(t)) return { error: 'The expiry is not a valid date and time.' };
    if (t <= now) return { error: 'The expiry must be in the future.' };
    expires = new Date(t).toISOString();
  }
  let rpm: number | null = null;
  const r = d.rpm.trim();
  if (r) {
    if (!/^\d{1,9}$/.test(r) || /^0+$/.test(r)) return { error: 'The rate limit must be a whole number of requests per minute, at least 1.' };
    rpm = Number(r);
  }
  const budgets: BudgetInput[] = [];
  for (const b of d.budgets) {
    const c = budgetInput(b);
    if (c.error !== undefined) return { error: c.error };
    if (budgets.some((o) => o.period === c.ok.period)) return { error: `Only one ${c.ok.period} budget per key.` };
    budgets.push(c.ok);
  }
  return {
    ok: {
      user_id: userId,
      name,
      allowed_models: d.allModels ? null : [...d.models],
      expires_at: expires,
      rpm_limit: rpm,
      budgets,
    },
  };
}

/** Entries of a cost map, highest cost first (ties by name), compared exactly. */
export function costsDescending(costs: Record<string, string>): [string, string][] {
  return Object.entries(costs).sort((a, b) => compareDecimal(b[1], a[1]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
