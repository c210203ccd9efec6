import { describe, expect, it } from 'vitest';
import { addDays, bucketStart, forecastScope, groupsCsv, percentText, presetRange, rangeDays, sumCost, trendRows } from './analytics';
import type { AnalyticsGroup, Figures, ForecastPoint, TrendBucket } from './types';

function figures(cost: string, over: Partial<Figures> = {}): Figures {
  return {
    requests: 2,
    failed: 0,
    success_rate: '1',
    cost,
    avg_cost_per_request: '0.5',
    tokens: { input_tokens: '10', output_tokens: '5', cache_write_5m_tokens: '0', cache_write_1h_tokens: '0', cache_read_tokens: '0' },
    resources: {},
    cost_by_kind: { input_tokens: cost },
    ...over,
  };
}

function point(date: string, mean: string): ForecastPoint {
  return { date, mean, lower_80: '0.1', upper_80: '0.3', lower_95: '0.05', upper_95: '0.4' };
}

describe('day ranges', () => {
  it('presets end today (UTC) and span the given days', () => {
    const r = presetRange(7, new Date('2026-12-04T23:30:00Z'));
    expect(r, '7 days up to today').toEqual({ date_from: '2026-11-28', date_to: '2026-12-04' });
    expect(rangeDays(r.date_from, r.date_to), 'inclusive range length').toBe(7);
    expect(presetRange(30, new Date('2026-03-01T00:00:00Z')).date_from, 'across a short February').toBe('2026-01-31');
  });
  it('adds days across months and counts inverted ranges as empty', () => {
    expect(addDays('2026-12-31', 1)).toBe('2027-01-01');
    expect(rangeDays('2026-12-05', '2026-12-04')).toBe(0);
  });
});

describe('figures', () => {
  it('shows rates as exact percentages', () => {
    expect(percentText('0.9166666667'), 'two places, half away from zero').toBe('91.67%');
    expect(percentText('1')).toBe('100%');
    expect(percentText(null), 'no requests, no rate').toBe('—');
  });
  it('sums costs exactly', () => {
    const gs = [{ figures: figures('0.1') }, { figures: figures('0.2') }, { figures: figures('0.0000001') }];
    expect(sumCost(gs), 'no float drift').toBe('0.3000001');
    expect(sumCost([]), 'empty sum').toBe('0');
  });
});

describe('groupsCsv', () => {
  it('writes label columns and every figure as served', () => {
    const groups: AnalyticsGroup[] = [
      { model: 'gpt-4o-mini', provider: 'openai', figures: figures('0.0012000', { resources: { images: '2' }, cost_by_kind: { images: '0.08' } }) },
      { model: 'a,b', provider: 'x', figures: figures('0', { success_rate: null, avg_cost_per_request: null }) },
    ];
    const lines = groupsCsv('by-model', groups).split('\r\n');
    expect(lines[0], 'header').toBe(
      'model,provider,requests,failed,success_rate,cost,avg_cost_per_request,tokens.input_tokens,tokens.output_tokens,tokens.cache_write_5m_tokens,tokens.cache_write_1h_tokens,tokens.cache_read_tokens,resources.images,cost.images,cost.input_tokens',
    );
    expect(lines[1], 'exact strings, trailing zeros kept').toBe('gpt-4o-mini,openai,2,0,1,0.0012000,0.5,10,5,0,0,0,2,0.08,0');
    expect(lines[2], 'quoted label, nulls empty, missing kinds 0').toBe('"a,b",x,2,0,,0,,10,5,0,0,0,0,0,0');
  });
  it('writes a null key or task as an empty field', () => {
    const csv = groupsCsv('by-key', [{ key_id: null, key_name: null, figures: figures('1') }]);
    expect(csv.split('\r\n')[1].startsWith(',,2,'), 'no key: empty id and name').toBe(true);
  });
});

describe('forecastScope', () => {
  it('maps no filter or one filter to a scope', () => {
    expect(forecastScope({})).toBe('total');
    expect(forecastScope({ provider: 'openai' })).toBe('provider:openai');
    expect(forecastScope({ user_id: ' alice ' })).toBe('user:alice');
    expect(forecastScope({ key_id: 'k1', model: '' })).toBe('key:k1');
  });
  it('has none for tasks or several filters', () => {
    expect(forecastScope({ task: 'summarize' })).toBeNull();
    expect(forecastScope({ provider: 'openai', model: 'gpt-4o' })).toBeNull();
  });
});

describe('bucketStart', () => {
  it('cuts weeks on Monday and months on the 1st', () => {
    expect(bucketStart('2026-12-06', 'weekly'), 'a Sunday belongs to the week of Monday 30 Nov').toBe('2026-11-30');
    expect(bucketStart('2026-11-30', 'weekly'), 'a Monday starts its week').toBe('2026-11-30');
    expect(bucketStart('2026-12-17', 'monthly')).toBe('2026-12-01');
    expect(bucketStart('2026-12-17', 'daily')).toBe('2026-12-17');
  });
});

describe('trendRows', () => {
  const daily: TrendBucket[] = [
    { start: '2026-12-02', end: '2026-12-02', figures: figures('0.5') },
    { start: '2026-12-03', end: '2026-12-03', figures: figures('0.25') },
  ];
  it('draws the forecast after the history, skipping recorded days', () => {
    const rows = trendRows(daily, [point('2026-12-03', '9'), point('2026-12-04', '0.2'), point('2026-12-05', '0.3')], 'daily');
    expect(rows.map((r) => r.start), 'history then forecast days').toEqual(['2026-12-02', '2026-12-03', '2026-12-04', '2026-12-05']);
    expect(rows[1].forecast, 'a recorded day has no forecast').toBeUndefined();
    expect(rows[1].costText, 'history keeps the exact string').toBe('0.25');
    expect(rows[2].cost, 'no recorded cost after the history').toBeUndefined();
    expect(rows[2].forecast?.mean).toBe('0.2');
    expect(rows[2].band95, 'band geometry').toEqual([0.05, 0.4]);
  });
  it('folds forecast days into weekly buckets with exact sums', () => {
    const weekly: TrendBucket[] = [{ start: '2026-11-30', end: '2026-12-02', figures: figures('1') }];
    const pts = ['2026-12-03', '2026-12-04', '2026-12-05', '2026-12-06', '2026-12-07'].map((d) => point(d, '0.1'));
    const rows = trendRows(weekly, pts, 'weekly');
    expect(rows.length, 'the current week and the next').toBe(2);
    expect(rows[0].costText, 'recorded part of the week').toBe('1');
    expect(rows[0].forecast, 'rest of the week forecast').toMatchObject({ mean: '0.4', lower_95: '0.2', upper_95: '1.6', days: 4 });
    expect(rows[1].forecast, 'next week').toMatchObject({ mean: '0.1', days: 1 });
    expect(rows[1].label).toBe('12-07');
  });
  it('works without a forecast', () => {
    expect(trendRows(daily, null, 'daily').length).toBe(2);
  });
});
