import { describe, expect, it } from 'vitest';
import { agoText, applyUsage, initialDash, seriesRows } from './dashboardState';
import type { DashboardUsage } from './types';

function usage(at: string, lines: [string, string][]): DashboardUsage {
  return {
    event_id: at + lines.length,
    user_id: 'u',
    thread_id: 't',
    message_id: 'm',
    model: 'x',
    occurred_at: at,
    committed_at: at,
    cost: { lines: lines.map(([kind, quantity]) => ({ kind, unit: 'tokens', quantity, unit_price: '1', price_version_id: 'v', amount: '0' })), total: '0' },
  };
}

describe('dashboard state', () => {
  it('buckets usage per second by kind', () => {
    const t0 = Date.parse('2025-01-01T00:00:10.200Z');
    const sec = Math.floor(t0 / 1000);
    let s = applyUsage(initialDash, usage('2025-01-01T00:00:10.100Z', [['input_tokens', '10'], ['output_tokens', '5']]), t0);
    s = applyUsage(s, usage('2025-01-01T00:00:10.900Z', [['output_tokens', '7']]), t0);
    s = applyUsage(s, usage('2025-01-01T00:00:12.000Z', [['output_tokens', '1']]), t0);
    expect(s.buckets).toEqual([
      { second: sec, byKind: { input_tokens: 10, output_tokens: 12 } },
      { second: sec + 2, byKind: { output_tokens: 1 } },
    ]);
    expect(s.kinds).toEqual(['input_tokens', 'output_tokens']);
    expect(s.usageEvents).toBe(3);
    const rows = seriesRows(s.buckets, ['output_tokens'], sec + 2, 3);
    expect(rows.map((r) => r.output_tokens)).toEqual([12, 0, 1]);
  });

  it('writes freshness text', () => {
    expect(agoText(400)).toBe('0.4 s ago');
    expect(agoText(12_300)).toBe('12 s ago');
    expect(agoText(300_000)).toBe('5 min ago');
  });
});
