// Budget windows for display: bar proportions computed exactly from the API's decimal
// strings (BigInt, no floats) and the time left until a window resets.

import { addDecimal, compareDecimal, isDecimal, isZero, ratioUnits, unitsToDecimal } from './money';
import type { BudgetPeriod, BudgetView } from './types';

/** The periods a budget may have, in display order. */
export const PERIODS: BudgetPeriod[] = ['daily', 'weekly', 'monthly'];

/** Bar widths are kept in hundredths of a percent (10000 = the whole bar). */
const WHOLE = 10000n;
const PLACES = 2;

/**
 * Segments of a budget bar as CSS percentages ("37.5"), each a decimal string.
 * `spent + reserved + remaining` is exactly "100" (or all are "0" when the limit is zero).
 */
export interface BudgetBarGeometry {
  spent: string;
  reserved: string;
  remaining: string;
  /** Where the alert threshold sits on the bar (percent), or null without one. */
  threshold: string | null;
  /** Spent as a percentage of the limit, unclamped ("112.5" past it); null when the limit is zero. */
  usedPercent: string | null;
  /** Spent plus reserved is past the limit. */
  over: boolean;
}

function clamp(u: bigint): bigint {
  return u < 0n ? 0n : u > WHOLE ? WHOLE : u;
}

/**
 * Proportions of spent, reserved and remaining out of `max_budget`. Each boundary is
 * rounded once (half away from zero) on the cumulative sums, so the segments never
 * overlap, never exceed the bar, and add up to the whole bar.
 */
export function budgetBar(b: Pick<BudgetView, 'max_budget' | 'spent' | 'reserved' | 'alert_threshold'>): BudgetBarGeometry {
  const held = addDecimal(b.spent, b.reserved);
  const spentU = ratioUnits(b.spent, b.max_budget, WHOLE);
  const heldU = ratioUnits(held, b.max_budget, WHOLE);
  const over = compareDecimal(held, b.max_budget) > 0;
  if (spentU === null || heldU === null) {
    return { spent: '0', reserved: '0', remaining: '0', threshold: null, usedPercent: null, over: !isZero(held) };
  }
  const s = clamp(spentU);
  const h = clamp(heldU) < s ? s : clamp(heldU);
  const t = b.alert_threshold && isDecimal(b.alert_threshold) ? ratioUnits(b.alert_threshold, '1', WHOLE) : null;
  return {
    spent: unitsToDecimal(s, PLACES),
    reserved: unitsToDecimal(h - s, PLACES),
    remaining: unitsToDecimal(WHOLE - h, PLACES),
    threshold: t === null ? null : unitsToDecimal(clamp(t), PLACES),
    usedPercent: unitsToDecimal(spentU, PLACES),
    over,
  };
}

/** How a budget is doing, for its color: disabled, exceeded, alerted, or ok. */
export function budgetTone(b: Pick<BudgetView, 'enabled' | 'alert_state'>): 'disabled' | 'exceeded' | 'alerted' | 'ok' {
  if (!b.enabled) return 'disabled';
  if (b.alert_state === 'exceeded') return 'exceeded';
  if (b.alert_state === 'alerted') return 'alerted';
  return 'ok';
}

/** "45 s", "12 min", "5 h 3 min", "3 d 4 h". */
export function durationText(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** "resets in 5 h 3 min", or "resets now" once the end has passed; the input when it is not a time. */
export function resetText(periodEnd: string, now: number): string {
  const end = Date.parse(periodEnd);
  if (Number.isNaN(end)) return `resets ${periodEnd}`;
  return end <= now ? 'resets now' : `resets in ${durationText(end - now)}`;
}

/** "Daily", "Weekly", "Monthly" (other values as given). */
export function periodLabel(period: string): string {
  return period ? period[0].toUpperCase() + period.slice(1) : period;
}

/** "day", "week", "month": the window a period's budget covers. */
export function periodNoun(period: string): string {
  return ({ daily: 'day', weekly: 'week', monthly: 'month' } as Record<string, string>)[period] ?? period;
}
