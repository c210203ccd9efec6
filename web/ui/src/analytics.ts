// Pure helpers of the Analytics page: day ranges, breakdown rows and CSV, the forecast
// scope, and the rows of the cost trends chart (history buckets followed by the forecast).
// Money stays the API's decimal strings; numbers are made only for chart geometry.

import type { Breakdown } from './api';
import { chartNumber } from './chart';
import { toCsv } from './csv';
import { addDecimal, ratioUnits, unitsToDecimal } from './money';
import { TOKEN_KINDS } from './kinds';
import type { AnalyticsFilters, AnalyticsGroup, Figures, ForecastPoint, TrendBucket, TrendPeriod } from './types';

const DAY_MS = 86_400_000;

/** The UTC day of an instant, `YYYY-MM-DD`. */
export function utcDay(t: Date): string {
  return t.toISOString().slice(0, 10);
}

/** A day plus `n` days (negative to go back), in UTC. */
export function addDays(day: string, n: number): string {
  const t = Date.parse(`${day}T00:00:00Z`);
  return utcDay(new Date(t + n * DAY_MS));
}

/** The last `days` days up to and including today (UTC). */
export function presetRange(days: number, now: Date): { date_from: string; date_to: string } {
  const to = utcDay(now);
  return { date_from: addDays(to, -(days - 1)), date_to: to };
}

/** Days in an inclusive range (0 when it is not one). */
export function rangeDays(from: string, to: string): number {
  const a = Date.parse(`${from}T00:00:00Z`);
  const b = Date.parse(`${to}T00:00:00Z`);
  if (Number.isNaN(a) || Number.isNaN(b) || b < a) return 0;
  return Math.round((b - a) / DAY_MS) + 1;
}

/** A ratio string ("0.9166666667") as a percentage with two places ("91.67%"); "—" when null. */
export function percentText(rate: string | null | undefined): string {
  if (rate === null || rate === undefined) return '—';
  const u = ratioUnits(rate, '1', 10000n);
  return u === null ? '—' : `${unitsToDecimal(u, 2)}%`;
}

/** Exact sum of the groups' costs. */
export function sumCost(groups: { figures: Figures }[]): string {
  return groups.reduce((acc, g) => addDecimal(acc, g.figures.cost), '0');
}

/** The label columns of a breakdown, in order, with how to read them from a group. */
export function labelColumns(kind: Breakdown): { name: string; get: (g: AnalyticsGroup) => string | null | undefined }[] {
  switch (kind) {
    case 'by-user':
      return [{ name: 'user_id', get: (g) => g.user_id }];
    case 'by-model':
      return [
        { name: 'model', get: (g) => g.model },
        { name: 'provider', get: (g) => g.provider },
      ];
    case 'by-provider':
      return [{ name: 'provider', get: (g) => g.provider }];
    case 'by-key':
      return [
        { name: 'key_id', get: (g) => g.key_id },
        { name: 'key_name', get: (g) => g.key_name },
      ];
    case 'top-tasks':
      return [{ name: 'task', get: (g) => g.task }];
  }
}

/** A stable identity of a group row. */
export function groupKey(kind: Breakdown, g: AnalyticsGroup): string {
  return labelColumns(kind)
    .map((c) => c.get(g) ?? '')
    .join('|');
}

function sortedKeys(groups: AnalyticsGroup[], pick: (f: Figures) => Record<string, string> | undefined): string[] {
  const keys = new Set<string>();
  for (const g of groups) for (const k of Object.keys(pick(g.figures) ?? {})) keys.add(k);
  return [...keys].sort();
}

/**
 * A breakdown as CSV: label columns, then every figure exactly as served (token kinds,
 * resources and cost per kind as `tokens.<kind>`, `resources.<kind>`, `cost.<kind>`).
 */
export function groupsCsv(kind: Breakdown, groups: AnalyticsGroup[]): string {
  const labels = labelColumns(kind);
  const tokenKinds = [...new Set([...TOKEN_KINDS, ...sortedKeys(groups, (f) => f.tokens)])];
  const resources = sortedKeys(groups, (f) => f.resources);
  const costKinds = sortedKeys(groups, (f) => f.cost_by_kind);
  const header = [
    ...labels.map((l) => l.name),
    'requests',
    'failed',
    'success_rate',
    'cost',
    'avg_cost_per_request',
    ...tokenKinds.map((k) => `tokens.${k}`),
    ...resources.map((k) => `resources.${k}`),
    ...costKinds.map((k) => `cost.${k}`),
  ];
  const rows = groups.map((g) => {
    const f = g.figures;
    return [
      ...labels.map((l) => l.get(g) ?? ''),
      f.requests,
      f.failed,
      f.success_rate,
      f.cost,
      f.avg_cost_per_request,
      ...tokenKinds.map((k) => f.tokens?.[k] ?? '0'),
      ...resources.map((k) => f.resources?.[k] ?? '0'),
      ...costKinds.map((k) => f.cost_by_kind?.[k] ?? '0'),
    ];
  });
  return toCsv(header, rows);
}

/**
 * The forecast scope matching the filters: `total` without filters, `provider:NAME` (or model,
 * user, key) with exactly one of them; null when the filters have no forecast (a task, or several).
 */
export function forecastScope(f: AnalyticsFilters): string | null {
  const set = (['provider', 'model', 'user_id', 'key_id', 'task'] as const).filter((k) => f[k]?.trim());
  if (set.length === 0) return 'total';
  if (set.length > 1 || set[0] === 'task') return null;
  const k = set[0];
  const prefix = k === 'user_id' ? 'user' : k === 'key_id' ? 'key' : k;
  return `${prefix}:${f[k]!.trim()}`;
}

/** The bucket a day falls in, as the server cuts them: weeks start on Monday, months on the 1st. */
export function bucketStart(day: string, period: TrendPeriod): string {
  if (period === 'daily') return day;
  if (period === 'monthly') return `${day.slice(0, 7)}-01`;
  const dow = new Date(`${day}T00:00:00Z`).getUTCDay(); // 0 = Sunday
  return addDays(day, -((dow + 6) % 7));
}

/** One x position of the trends chart. Numbers are geometry; the strings are what is shown. */
export interface TrendRow {
  /** The bucket's first day. */
  start: string;
  label: string;
  /** Recorded cost of the bucket (absent for buckets past the history). */
  cost?: number;
  costText?: string;
  requests?: number;
  /** Forecast mean and bands, summed over the bucket's forecast days. */
  mean?: number;
  band80?: [number, number];
  band95?: [number, number];
  forecast?: { mean: string; lower_80: string; upper_80: string; lower_95: string; upper_95: string; days: number };
}

function label(start: string, period: TrendPeriod): string {
  return period === 'monthly' ? start.slice(0, 7) : start.slice(5);
}

/**
 * The chart rows: one per history bucket, then the forecast points folded into buckets of the
 * same period (exact decimal sums; a bucket holding both recorded days and forecast days shows
 * both). For weekly and monthly buckets the band edges are sums of the daily band edges, which
 * is wider than the true interval of the sum (it assumes the days move together).
 */
export function trendRows(buckets: TrendBucket[], points: ForecastPoint[] | null, period: TrendPeriod): TrendRow[] {
  const rows = new Map<string, TrendRow>();
  for (const b of buckets) {
    rows.set(b.start, {
      start: b.start,
      label: label(b.start, period),
      cost: chartNumber(b.figures.cost),
      costText: b.figures.cost,
      requests: b.figures.requests,
    });
  }
  const lastHistory = buckets.length ? buckets[buckets.length - 1].end : null;
  for (const p of points ?? []) {
    // Only what lies after the recorded history is drawn as the forecast.
    if (lastHistory !== null && p.date <= lastHistory) continue;
    const start = bucketStart(p.date, period);
    const row = rows.get(start) ?? { start, label: label(start, period) };
    const f = row.forecast ?? { mean: '0', lower_80: '0', upper_80: '0', lower_95: '0', upper_95: '0', days: 0 };
    row.forecast = {
      mean: addDecimal(f.mean, p.mean),
      lower_80: addDecimal(f.lower_80, p.lower_80),
      upper_80: addDecimal(f.upper_80, p.upper_80),
      lower_95: addDecimal(f.lower_95, p.lower_95),
      upper_95: addDecimal(f.upper_95, p.upper_95),
      days: f.days + 1,
    };
    row.mean = chartNumber(row.forecast.mean);
    row.band80 = [chartNumber(row.forecast.lower_80), chartNumber(row.forecast.upper_80)];
    row.band95 = [chartNumber(row.forecast.lower_95), chartNumber(row.forecast.upper_95)];
    rows.set(start, row);
  }
  return [...rows.values()].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}
