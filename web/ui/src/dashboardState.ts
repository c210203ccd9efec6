// State of the live dashboard, updated from the /api/dashboard/stream events.

import { chartNumber } from './chart';
import type { DashboardUsage, Snapshot } from './types';

/** Quantities per kind in one second (chart geometry only). */
export interface Bucket {
  second: number;
  byKind: Record<string, number>;
}

export interface DashState {
  snapshot: Snapshot | null;
  /** Per-second usage buckets, oldest first, at most `WINDOW_SECONDS` long. */
  buckets: Bucket[];
  /** Every kind seen in usage events. */
  kinds: string[];
  /** The latest usage events, newest first. */
  recent: DashboardUsage[];
  /** Client time (ms) the last event of any kind arrived. */
  receivedAt: number | null;
  usageEvents: number;
}

export const WINDOW_SECONDS = 120;
export const RECENT_EVENTS = 15;

export const initialDash: DashState = { snapshot: null, buckets: [], kinds: [], recent: [], receivedAt: null, usageEvents: 0 };

export function applySnapshot(s: DashState, snap: Snapshot, now: number): DashState {
  return { ...s, snapshot: snap, receivedAt: now };
}

/** The second (epoch) an event is bucketed in: when it occurred, else now. */
export function eventSecond(ev: DashboardUsage, now: number): number {
  const t = Date.parse(ev.occurred_at || ev.committed_at);
  return Math.floor((Number.isNaN(t) ? now : t) / 1000);
}

export function applyUsage(s: DashState, ev: DashboardUsage, now: number): DashState {
  const second = eventSecond(ev, now);
  const buckets = s.buckets.slice();
  let b = buckets.find((x) => x.second === second);
  if (!b) {
    b = { second, byKind: {} };
    buckets.push(b);
    buckets.sort((x, y) => x.second - y.second);
  } else {
    const copy = { second, byKind: { ...b.byKind } };
    buckets[buckets.indexOf(b)] = copy;
    b = copy;
  }
  const kinds = s.kinds.slice();
  for (const line of ev.cost?.lines ?? []) {
    b.byKind[line.kind] = (b.byKind[line.kind] ?? 0) + chartNumber(line.quantity);
    if (!kinds.includes(line.kind)) kinds.push(line.kind);
  }
  const newest = Math.max(second, Math.floor(now / 1000));
  const kept = buckets.filter((x) => x.second > newest - WINDOW_SECONDS);
  return {
    ...s,
    buckets: kept,
    kinds,
    recent: [ev, ...s.recent].slice(0, RECENT_EVENTS),
    receivedAt: now,
    usageEvents: s.usageEvents + 1,
  };
}

/** Chart rows for the last `seconds` seconds ending at `nowSecond`, zero-filled, for the given kinds. */
export function seriesRows(buckets: Bucket[], kinds: string[], nowSecond: number, seconds = 60): Record<string, number | string>[] {
  const bySecond = new Map(buckets.map((b) => [b.second, b]));
  const rows: Record<string, number | string>[] = [];
  for (let sec = nowSecond - seconds + 1; sec <= nowSecond; sec++) {
    const row: Record<string, number | string> = { second: sec, label: clock(sec) };
    const b = bySecond.get(sec);
    for (const k of kinds) row[k] = b?.byKind[k] ?? 0;
    rows.push(row);
  }
  return rows;
}

function clock(sec: number): string {
  const d = new Date(sec * 1000);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** "0.4 s ago", "12 s ago", "3 min ago". */
export function agoText(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return `${s.toFixed(1)} s ago`;
  if (s < 120) return `${Math.round(s)} s ago`;
  return `${Math.round(s / 60)} min ago`;
}
