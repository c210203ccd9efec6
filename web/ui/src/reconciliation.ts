// Pure helpers of the Reconciliation page: percent and signed-difference text, flag labels,
// the kinds a table shows, the daily drift series of the chart, exact totals and the CSV.
// Money and quantities stay the API's decimal strings (sums are exact, with BigInt); numbers
// are made only for chart geometry.

import { addDays, rangeDays } from './analytics';
import { chartNumber } from './chart';
import { toCsv } from './csv';
import { kindLabel, kindOrder, TOKEN_KINDS } from './kinds';
import { addDecimal, formatQuantity, formatUsd, isZero, parseDecimal, ratioUnits, unitsToDecimal } from './money';
import type { ImportRun, ProviderName, ReconciliationRow } from './types';

/** The providers Tally imports from, in menu order. */
export const PROVIDERS: ProviderName[] = ['anthropic', 'openai'];

/** Longest range the reconciliation API answers, in days. */
export const MAX_RANGE_DAYS = 366;

/** Hours "Import now" reads back. */
export const IMPORT_NOW_HOURS = 24;

/**
 * A percentage as served ("1.5", "-33.3333", null) with two places, rounded half away from
 * zero, and a sign when it is not zero: "+1.50%", "-33.33%", "0%", "—" for null.
 */
export function pctText(pct: string | null | undefined): string {
  if (pct === null || pct === undefined || !parseDecimal(pct)) return '—';
  const u = ratioUnits(pct, '1', 100n);
  if (u === null) return '—';
  if (u === 0n) return isZero(pct) ? '0%' : `${parseDecimal(pct)!.negative ? '-' : '+'}0.00%`;
  const text = unitsToDecimal(u, 2);
  const [int, frac = ''] = text.replace('-', '').split('.');
  return `${u < 0n ? '-' : '+'}${int}.${frac.padEnd(2, '0')}%`;
}

/** A money difference with its sign: "+$0.10", "-$0.0025", "$0.00" for zero, "—" for null. */
export function diffUsd(value: string | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const p = parseDecimal(value);
  if (!p) return String(value);
  return p.negative || isZero(value) ? formatUsd(value) : `+${formatUsd(value)}`;
}

/** A quantity difference with its sign: "+1,200", "-5", "0", "—" for null/absent. */
export function diffQuantity(value: string | null | undefined): string {
  if (value === null || value === undefined) return '—';
  const p = parseDecimal(value);
  if (!p) return String(value);
  return p.negative || isZero(value) ? formatQuantity(value) : `+${formatQuantity(value)}`;
}

/** A person-facing label of a reconciliation flag: `tokens:input_tokens` -> "Input tokens", `cost` -> "Cost". */
export function flagLabel(flag: string): string {
  if (flag === 'cost') return 'Cost';
  if (flag.startsWith('tokens:')) {
    const kind = flag.slice('tokens:'.length);
    const label = kindLabel(kind);
    return kind.endsWith('_tokens') ? `${label} tokens` : label;
  }
  return flag;
}

/** Flags in display order: token kinds in their fixed order, then cost, then anything else. */
export function sortedFlags(flags: string[]): string[] {
  const rank = (f: string) => (f.startsWith('tokens:') ? 0 : f === 'cost' ? 1 : 2);
  return [...flags].sort((a, b) => rank(a) - rank(b) || (rank(a) === 0 ? kindOrder(a.slice(7), b.slice(7)) : a < b ? -1 : a > b ? 1 : 0));
}

/** The kinds flagged on a row (from its `tokens:KIND` flags). */
export function flaggedKinds(row: ReconciliationRow): Set<string> {
  return new Set(row.flags.filter((f) => f.startsWith('tokens:')).map((f) => f.slice('tokens:'.length)));
}

/** Every kind that appears in the rows (reported or metered), tokens first in their fixed order. */
export function rowKinds(rows: ReconciliationRow[]): string[] {
  const kinds = new Set<string>();
  for (const r of rows) {
    for (const k of Object.keys(r.reported_tokens)) kinds.add(k);
    for (const k of Object.keys(r.metered_tokens)) kinds.add(k);
    for (const k of Object.keys(r.token_diff)) kinds.add(k);
  }
  return [...kinds].sort(kindOrder);
}

/** A stable identity of a row. */
export function rowKey(r: ReconciliationRow): string {
  return `${r.date}|${r.model ?? ''}`;
}

/** A non-negative decimal typed as tolerance ("1", "0.5"), or the reason it is not one. */
export function toleranceError(text: string): string | null {
  const t = text.trim();
  if (/^-\s*\d+(\.\d+)?$/.test(t)) return 'tolerance must not be negative';
  if (!/^\d+(\.\d+)?$/.test(t)) return 'tolerance must be a number of percent, e.g. 1 or 0.5';
  return null;
}

/** One day of the drift chart. */
export interface DriftDay {
  /** `YYYY-MM-DD`. */
  date: string;
  /** `MM-DD`, for the axis. */
  label: string;
  /** Exact sum of the day's `cost_diff` (metered minus reported); null when no row has a reported cost. */
  costDiff: string | null;
  /** Exact sum of the day's `price_diff` (Tally-priced minus reported); null likewise. */
  priceDiff: string | null;
  /** Exact sums of the day's reported (rows that have one), Tally-priced and metered costs. */
  reported: string | null;
  priced: string;
  metered: string;
  /** Rows of the day, and how many are flagged. */
  rows: number;
  flagged: number;
  /** Chart geometry only. */
  costDrift: number | null;
  priceDrift: number | null;
}

/**
 * The daily drift series: one entry per day of `[from, to]` (or of the rows' days when the range
 * is not a valid one), with the exact sums of the day's differences. Rows without a reported cost
 * add nothing to the drift (their differences are null, as the API serves them).
 */
export function driftSeries(rows: ReconciliationRow[], from: string, to: string): DriftDay[] {
  const days: string[] = [];
  const n = rangeDays(from, to);
  if (n > 0 && n <= MAX_RANGE_DAYS) {
    for (let i = 0; i < n; i++) days.push(addDays(from, i));
  }
  for (const r of rows) if (!days.includes(r.date)) days.push(r.date);
  days.sort();
  const byDay = new Map<string, ReconciliationRow[]>();
  for (const r of rows) {
    const list = byDay.get(r.date) ?? [];
    list.push(r);
    byDay.set(r.date, list);
  }
  return days.map((date) => {
    const list = byDay.get(date) ?? [];
    let costDiff: string | null = null;
    let priceDiff: string | null = null;
    let reported: string | null = null;
    let priced = '0';
    let metered = '0';
    for (const r of list) {
      if (r.cost_diff !== null) costDiff = addDecimal(costDiff ?? '0', r.cost_diff);
      if (r.price_diff !== null) priceDiff = addDecimal(priceDiff ?? '0', r.price_diff);
      if (r.reported_cost !== null) reported = addDecimal(reported ?? '0', r.reported_cost);
      priced = addDecimal(priced, r.tally_priced_cost);
      metered = addDecimal(metered, r.metered_cost);
    }
    return {
      date,
      label: date.slice(5),
      costDiff,
      priceDiff,
      reported,
      priced,
      metered,
      rows: list.length,
      flagged: list.filter((r) => r.flagged).length,
      costDrift: costDiff === null ? null : chartNumber(costDiff),
      priceDrift: priceDiff === null ? null : chartNumber(priceDiff),
    };
  });
}

/** Exact totals over the rows (differences only where a cost was reported, as served). */
export interface ReconciliationTotals {
  reported: string | null;
  priced: string;
  metered: string;
  costDiff: string | null;
  priceDiff: string | null;
  flagged: number;
}

export function reconciliationTotals(rows: ReconciliationRow[]): ReconciliationTotals {
  const t: ReconciliationTotals = { reported: null, priced: '0', metered: '0', costDiff: null, priceDiff: null, flagged: 0 };
  for (const r of rows) {
    if (r.reported_cost !== null) t.reported = addDecimal(t.reported ?? '0', r.reported_cost);
    if (r.cost_diff !== null) t.costDiff = addDecimal(t.costDiff ?? '0', r.cost_diff);
    if (r.price_diff !== null) t.priceDiff = addDecimal(t.priceDiff ?? '0', r.price_diff);
    t.priced = addDecimal(t.priced, r.tally_priced_cost);
    t.metered = addDecimal(t.metered, r.metered_cost);
    if (r.flagged) t.flagged++;
  }
  return t;
}

/**
 * The table as CSV, every figure exactly as served: per kind (the five token kinds plus any
 * other kind in the rows) reported, metered, diff and diff_pct, then the costs, their
 * differences, the event counts and the flags (`;`-separated). A null model is left empty.
 */
export function reconciliationCsv(rows: ReconciliationRow[]): string {
  const kinds = [...new Set([...TOKEN_KINDS, ...rowKinds(rows)])].sort(kindOrder);
  const header = [
    'date',
    'model',
    ...kinds.flatMap((k) => [`reported_${k}`, `metered_${k}`, `diff_${k}`, `diff_pct_${k}`]),
    'reported_cost',
    'tally_priced_cost',
    'metered_cost',
    'cost_diff',
    'cost_diff_pct',
    'price_diff',
    'price_diff_pct',
    'reported_events',
    'metered_events',
    'flagged',
    'flags',
  ];
  const body = rows.map((r) => [
    r.date,
    r.model,
    ...kinds.flatMap((k) => [r.reported_tokens[k] ?? '0', r.metered_tokens[k] ?? '0', r.token_diff[k] ?? '0', r.token_diff_pct[k] ?? null]),
    r.reported_cost,
    r.tally_priced_cost,
    r.metered_cost,
    r.cost_diff,
    r.cost_diff_pct,
    r.price_diff,
    r.price_diff_pct,
    r.reported_events,
    r.metered_events,
    r.flagged,
    r.flags.join(';'),
  ]);
  return toCsv(header, body);
}

/** The window of "Import now": the last `hours` hours up to `now`, as RFC 3339 instants. */
export function importWindow(now: Date, hours = IMPORT_NOW_HOURS): { from: string; to: string } {
  return { from: new Date(now.getTime() - hours * 3_600_000).toISOString(), to: now.toISOString() };
}

/** One line about a run: "success · 3 new, 1 revised, 10 unchanged, 0 skipped · 2 costs · 4 pages". */
export function runSummary(run: ImportRun): string {
  const counts = `${run.events_new} new, ${run.events_revised} revised, ${run.events_unchanged} unchanged, ${run.skipped} skipped`;
  return `${run.status} · ${counts} · ${run.costs} cost${run.costs === 1 ? '' : 's'} · ${run.pages} page${run.pages === 1 ? '' : 's'}`;
}
