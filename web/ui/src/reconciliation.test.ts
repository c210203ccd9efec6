import { describe, expect, it } from 'vitest';
import {
  diffQuantity,
  diffUsd,
  driftSeries,
  flaggedKinds,
  flagLabel,
  importWindow,
  pctText,
  reconciliationCsv,
  reconciliationTotals,
  rowKinds,
  runSummary,
  sortedFlags,
  toleranceError,
} from './reconciliation';
import type { ImportRun, ReconciliationRow } from './types';

/** A row with defaults; override what a test cares about. */
function recRow(over: Partial<ReconciliationRow> = {}): ReconciliationRow {
  return {
    date: '2026-12-02',
    model: 'claude-3-5-haiku-20241022',
    reported_tokens: { input_tokens: '1000', output_tokens: '200' },
    metered_tokens: { input_tokens: '1000', output_tokens: '200' },
    token_diff: { input_tokens: '0', output_tokens: '0' },
    token_diff_pct: { input_tokens: '0', output_tokens: '0' },
    reported_cost: '0.0016',
    tally_priced_cost: '0.0016',
    metered_cost: '0.0016',
    cost_diff: '0',
    cost_diff_pct: '0',
    price_diff: '0',
    price_diff_pct: '0',
    reported_events: 1,
    metered_events: 3,
    flags: [],
    flagged: false,
    ...over,
  };
}

describe('pctText', () => {
  it('shows two places with a sign, rounding half away from zero', () => {
    expect(pctText('1.5'), 'positive gets a plus').toBe('+1.50%');
    expect(pctText('-33.3333'), 'negative keeps its minus').toBe('-33.33%');
    expect(pctText('0.005'), 'half rounds away from zero').toBe('+0.01%');
    expect(pctText('-0.005')).toBe('-0.01%');
    expect(pctText('1234.5678')).toBe('+1234.57%');
  });
  it('says 0% for zero, keeps a sign for tiny non-zero values, and a dash for null', () => {
    expect(pctText('0')).toBe('0%');
    expect(pctText('0.0000')).toBe('0%');
    expect(pctText('0.0001'), 'not zero, though it rounds to it').toBe('+0.00%');
    expect(pctText('-0.0001')).toBe('-0.00%');
    expect(pctText(null), 'nothing reported: no percentage').toBe('—');
    expect(pctText(undefined)).toBe('—');
    expect(pctText('n/a'), 'not a decimal').toBe('—');
  });
});

describe('signed differences', () => {
  it('formats money differences exactly with a sign', () => {
    expect(diffUsd('0.0000001'), 'every digit kept').toBe('+$0.0000001');
    expect(diffUsd('-12.5')).toBe('-$12.50');
    expect(diffUsd('0')).toBe('$0.00');
    expect(diffUsd(null)).toBe('—');
  });
  it('formats token differences with grouping and a sign', () => {
    expect(diffQuantity('1200')).toBe('+1,200');
    expect(diffQuantity('-5')).toBe('-5');
    expect(diffQuantity('0')).toBe('0');
    expect(diffQuantity(undefined)).toBe('—');
  });
});

describe('flags', () => {
  it('labels token and cost flags for people', () => {
    expect(flagLabel('tokens:input_tokens')).toBe('Input tokens');
    expect(flagLabel('tokens:cache_write_5m_tokens')).toBe('Cache write (5m) tokens');
    expect(flagLabel('tokens:cache_read_tokens')).toBe('Cache read tokens');
    expect(flagLabel('tokens:web_search_requests'), 'a resource kind is not called tokens').toBe('Web searches');
    expect(flagLabel('cost')).toBe('Cost');
    expect(flagLabel('something_new'), 'an unknown flag is shown as served').toBe('something_new');
  });
  it('orders flags for display: token kinds in their order, then cost', () => {
    expect(sortedFlags(['cost', 'tokens:output_tokens', 'tokens:cache_read_tokens', 'tokens:input_tokens'])).toEqual([
      'tokens:input_tokens',
      'tokens:output_tokens',
      'tokens:cache_read_tokens',
      'cost',
    ]);
  });
  it('finds the flagged kinds of a row', () => {
    const r = recRow({ flags: ['tokens:output_tokens', 'cost'], flagged: true });
    expect([...flaggedKinds(r)]).toEqual(['output_tokens']);
  });
});

describe('rowKinds', () => {
  it('collects kinds from both sides in display order', () => {
    const rows = [
      recRow({ reported_tokens: { output_tokens: '1' }, metered_tokens: {} }),
      recRow({ reported_tokens: {}, metered_tokens: { cache_read_tokens: '5', input_tokens: '2', web_search_requests: '1' } }),
    ];
    expect(rowKinds(rows)).toEqual(['input_tokens', 'output_tokens', 'cache_read_tokens', 'web_search_requests']);
  });
});

describe('toleranceError', () => {
  it('accepts non-negative decimals and refuses the rest', () => {
    for (const ok of ['1', '0', '0.5', ' 2.25 ', '10']) expect(toleranceError(ok), ok).toBeNull();
    expect(toleranceError('-1')).toContain('negative');
    for (const bad of ['', 'abc', '1.', '.5', '1e3', '+1']) expect(toleranceError(bad), bad).not.toBeNull();
  });
});

describe('driftSeries', () => {
  const rows = [
    recRow({ date: '2026-12-02', cost_diff: '0.1', price_diff: '-0.0000001', reported_cost: '1', tally_priced_cost: '0.9999999', metered_cost: '1.1' }),
    recRow({ date: '2026-12-02', model: null, cost_diff: '0.2', price_diff: '0.3', reported_cost: '2', tally_priced_cost: '0', metered_cost: '0', flagged: true, flags: ['cost'] }),
    // No reported cost: adds nothing to the drift, but its costs are still summed.
    recRow({ date: '2026-12-04', cost_diff: null, price_diff: null, cost_diff_pct: null, price_diff_pct: null, reported_cost: null, tally_priced_cost: '0', metered_cost: '0.5' }),
  ];
  it('gives one entry per day of the range with exact sums', () => {
    const s = driftSeries(rows, '2026-12-01', '2026-12-04');
    expect(s.map((d) => d.date), 'every day of the range, in order').toEqual(['2026-12-01', '2026-12-02', '2026-12-03', '2026-12-04']);
    const d2 = s[1];
    expect(d2.costDiff, 'exact: 0.1 + 0.2 is 0.3, not 0.30000000000000004').toBe('0.3');
    expect(d2.priceDiff, 'exact sum of the price drift').toBe('0.2999999');
    expect(d2.reported).toBe('3');
    expect(d2.priced).toBe('0.9999999');
    expect(d2.metered).toBe('1.1');
    expect(d2.rows).toBe(2);
    expect(d2.flagged).toBe(1);
    expect(d2.costDrift, 'geometry follows the exact string').toBeCloseTo(0.3);
    expect(d2.label).toBe('12-02');
  });
  it('leaves drift empty where nothing was reported', () => {
    const s = driftSeries(rows, '2026-12-01', '2026-12-04');
    expect(s[0].costDiff, 'a day without rows').toBeNull();
    expect(s[0].costDrift).toBeNull();
    expect(s[3].costDiff, 'a day with only an unreported row').toBeNull();
    expect(s[3].reported).toBeNull();
    expect(s[3].metered).toBe('0.5');
  });
  it('falls back to the rows\u2019 days for a range that is not one', () => {
    expect(driftSeries(rows, '2026-12-05', '2026-12-01').map((d) => d.date)).toEqual(['2026-12-02', '2026-12-04']);
  });
});

describe('reconciliationTotals', () => {
  it('sums exactly, differences only where a cost was reported', () => {
    const t = reconciliationTotals([
      recRow({ reported_cost: '0.1', cost_diff: '0.1', price_diff: '0', metered_cost: '0.2', tally_priced_cost: '0.1' }),
      recRow({ reported_cost: '0.2', cost_diff: '-0.2', price_diff: '0.0000001', metered_cost: '0', tally_priced_cost: '0.2000001', flagged: true, flags: ['cost'] }),
      recRow({ reported_cost: null, cost_diff: null, price_diff: null, metered_cost: '0.7', tally_priced_cost: '0' }),
    ]);
    expect(t.reported).toBe('0.3');
    expect(t.metered).toBe('0.9');
    expect(t.priced).toBe('0.3000001');
    expect(t.costDiff).toBe('-0.1');
    expect(t.priceDiff).toBe('0.0000001');
    expect(t.flagged).toBe(1);
    expect(reconciliationTotals([]).reported, 'nothing reported at all').toBeNull();
  });
});

describe('reconciliationCsv', () => {
  it('writes every figure as served, with the five token kinds and the flags', () => {
    const csv = reconciliationCsv([
      recRow({ token_diff_pct: { input_tokens: '0', output_tokens: null }, flags: ['tokens:input_tokens', 'cost'], flagged: true, cost_diff: '0.0000001' }),
      recRow({ model: null, reported_tokens: {}, metered_tokens: {}, token_diff: {}, token_diff_pct: {}, reported_cost: '1,5' }),
    ]);
    const lines = csv.split('\r\n');
    expect(lines.length, 'header, two rows, final line break').toBe(4);
    const header = lines[0].split(',');
    expect(header.slice(0, 6)).toEqual(['date', 'model', 'reported_input_tokens', 'metered_input_tokens', 'diff_input_tokens', 'diff_pct_input_tokens']);
    expect(header.length, '2 + 5 kinds x 4 + 11').toBe(2 + 20 + 11);
    expect(header.slice(-11)).toEqual([
      'reported_cost', 'tally_priced_cost', 'metered_cost', 'cost_diff', 'cost_diff_pct', 'price_diff', 'price_diff_pct', 'reported_events', 'metered_events', 'flagged', 'flags',
    ]);
    const first = lines[1].split(',');
    expect(first[header.indexOf('diff_pct_output_tokens')], 'a null percentage is empty').toBe('');
    expect(first[header.indexOf('reported_cache_read_tokens')], 'an absent kind is zero').toBe('0');
    expect(first[header.indexOf('cost_diff')], 'exact, no float formatting').toBe('0.0000001');
    expect(first[header.indexOf('flags')]).toBe('tokens:input_tokens;cost');
    expect(first[header.indexOf('flagged')]).toBe('true');
    expect(lines[2].startsWith('2026-12-02,,'), 'a null model is an empty field').toBe(true);
    expect(lines[2], 'a comma is quoted').toContain('"1,5"');
  });
});

describe('import now', () => {
  it('asks for the last 24 hours as RFC 3339 instants', () => {
    const w = importWindow(new Date('2026-12-04T10:00:00Z'));
    expect(w).toEqual({ from: '2026-12-03T10:00:00.000Z', to: '2026-12-04T10:00:00.000Z' });
  });
  it('summarizes a run in one line', () => {
    const run: ImportRun = {
      run_id: 'r1', connection_id: 'c1', trigger: 'manual', range_from: 'x', range_to: 'y', started_at: 'x', finished_at: 'y', status: 'success',
      pages: 1, buckets: 4, events_new: 3, events_revised: 1, events_unchanged: 0, skipped: 0, costs: 2, error: null,
    };
    expect(runSummary(run)).toBe('success · 3 new, 1 revised, 0 unchanged, 0 skipped · 2 costs · 1 page');
  });
});
