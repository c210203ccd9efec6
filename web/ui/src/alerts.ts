// Budgets with alerts: progress bar geometry and threshold marks computed exactly from the
// API's decimal strings (BigInt, no floats), and the create form's parsing.

import { isDecimal, ratioUnits, unitsToDecimal } from './money';
import type { AlertBudgetInput, AlertScopeKind, BudgetPeriod } from './types';

/** Bar positions are kept in hundredths of a percent (10000 = the whole bar). */
const WHOLE = 10000n;

function clamp(u: bigint): bigint {
  return u < 0n ? 0n : u > WHOLE ? WHOLE : u;
}

/** Where a budget stands: the filled width (CSS percent, at most 100), the unclamped percent, whether it is past the amount. */
export interface Progress {
  width: string;
  /** Spent as a percentage of the amount, two places ("112.5" past it); null when the amount is zero. */
  percent: string | null;
  over: boolean;
  /** Projected end-of-period spend on the bar (clamped), or null. */
  projected: string | null;
}

/** The bar of `spent` out of `amount`, with the projected spend marked when given. */
export function progress(spent: string, amount: string, projected?: string | null): Progress {
  const u = ratioUnits(spent, amount, WHOLE);
  const p = projected && isDecimal(projected) ? ratioUnits(projected, amount, WHOLE) : null;
  return {
    width: u === null ? '0' : unitsToDecimal(clamp(u), 2),
    percent: u === null ? null : unitsToDecimal(u, 2),
    over: u !== null && u > WHOLE,
    projected: p === null ? null : unitsToDecimal(clamp(p), 2),
  };
}

/** A threshold mark on the bar: its position (clamped to the bar) and whether it has fired. */
export interface Mark {
  threshold: string;
  left: string;
  fired: boolean;
}

/** Marks for the thresholds (percentages of the amount), in order; `fired` from the check's `thresholds_fired`. */
export function thresholdMarks(thresholds: (number | string)[], fired: string[] = []): Mark[] {
  const firedSet = new Set(fired.map((f) => unitsToDecimal(ratioUnits(String(f), '1', 100n) ?? 0n, 2)));
  return thresholds
    .map((t) => String(t))
    .filter((t) => isDecimal(t))
    .map((t) => {
      const u = ratioUnits(t, '1', 100n) ?? 0n; // hundredths of a percent
      const norm = unitsToDecimal(u, 2);
      return { threshold: norm, left: unitsToDecimal(clamp(u), 2), fired: firedSet.has(norm), u };
    })
    .sort((a, b) => (a.u < b.u ? -1 : a.u > b.u ? 1 : 0))
    .map(({ threshold, left, fired }) => ({ threshold, left, fired }));
}

/** Most thresholds a budget may have, and the highest (percent of the amount), as the server checks them. */
export const MAX_THRESHOLDS = 10;
export const MAX_THRESHOLD = 1000;

/** "50, 80, 100" -> [50, 80, 100]: 1-10 distinct whole percentages of 1-1000, sorted; an error names the bad entry. */
export function parseThresholds(text: string): { values: number[] } | { error: string } {
  const parts = text.split(/[\s,;]+/).filter(Boolean);
  const values: number[] = [];
  for (const p of parts) {
    const clean = p.replace(/%$/, '');
    if (!/^\d+$/.test(clean) || Number(clean) < 1 || Number(clean) > MAX_THRESHOLD) {
      return { error: `threshold "${p}" is not a whole percentage from 1 to ${MAX_THRESHOLD}` };
    }
    values.push(Number(clean));
  }
  const unique = [...new Set(values)].sort((a, b) => a - b);
  if (unique.length === 0) return { error: 'give at least one threshold, e.g. 50, 80, 100' };
  if (unique.length > MAX_THRESHOLDS) return { error: `at most ${MAX_THRESHOLDS} thresholds` };
  return { values: unique };
}

/** Emails separated by commas, semicolons or spaces. */
export function parseEmails(text: string): string[] {
  return text
    .split(/[\s,;]+/)
    .map((e) => e.trim())
    .filter(Boolean);
}

/** The create form's fields, as typed. */
export interface AlertBudgetDraft {
  name: string;
  amount: string;
  period: BudgetPeriod;
  scopeKind: AlertScopeKind;
  scopeValue: string;
  thresholds: string;
  emails: string;
  webhookUrl: string;
  enabled: boolean;
}

export const EMPTY_DRAFT: AlertBudgetDraft = {
  name: '',
  amount: '',
  period: 'monthly',
  scopeKind: 'all',
  scopeValue: '',
  thresholds: '50, 80, 100',
  emails: '',
  webhookUrl: '',
  enabled: true,
};

/** The body of `POST /api/budgets` from the draft; the amount stays the typed decimal string. */
export function draftToInput(d: AlertBudgetDraft): { input: AlertBudgetInput } | { error: string } {
  const amount = d.amount.trim();
  if (!d.name.trim()) return { error: 'give the budget a name' };
  if (!isDecimal(amount)) return { error: 'the amount must be a decimal number of USD, e.g. 100.00' };
  const t = parseThresholds(d.thresholds);
  if ('error' in t) return { error: t.error };
  if (d.scopeKind !== 'all' && !d.scopeValue.trim()) return { error: `name the ${d.scopeKind} the budget covers` };
  return {
    input: {
      name: d.name.trim(),
      amount,
      period: d.period,
      scope: { kind: d.scopeKind, value: d.scopeKind === 'all' ? null : d.scopeValue.trim() },
      thresholds: t.values,
      emails: parseEmails(d.emails),
      webhook_url: d.webhookUrl.trim() || null,
      enabled: d.enabled,
    },
  };
}

/** "all usage", "provider openai", "key 1a2b…". */
export function scopeText(scope: { kind: string; value: string | null }): string {
  if (scope.kind === 'all' || !scope.value) return 'all usage';
  return `${scope.kind} ${scope.value}`;
}
