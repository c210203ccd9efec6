import { describe, expect, it } from 'vitest';
import { draftToInput, EMPTY_DRAFT, parseEmails, parseThresholds, progress, scopeText, thresholdMarks } from './alerts';

describe('progress', () => {
  it('computes the bar exactly from decimal strings', () => {
    expect(progress('42.5', '100'), 'plain percent').toEqual({ width: '42.5', percent: '42.5', over: false, projected: null });
    expect(progress('0.1', '0.3').percent, 'a third, two places').toBe('33.33');
    expect(progress('0.0000001', '100').width, 'tiny spend rounds to zero width').toBe('0');
  });
  it('clamps the width past the amount but keeps the percent', () => {
    const p = progress('150', '100', '300');
    expect(p.width, 'the bar is full').toBe('100');
    expect(p.percent, 'the true percent').toBe('150');
    expect(p.over).toBe(true);
    expect(p.projected, 'projection clamped to the bar').toBe('100');
  });
  it('has no percent for a zero amount', () => {
    expect(progress('1', '0')).toEqual({ width: '0', percent: null, over: false, projected: null });
  });
  it('marks the projected spend', () => {
    expect(progress('10', '100', '80.5').projected).toBe('80.5');
  });
});

describe('thresholdMarks', () => {
  it('sorts marks, clamps past 100 and knows which fired', () => {
    const m = thresholdMarks([100, '50', 80, 120], ['50', '80.0']);
    expect(m.map((x) => x.threshold)).toEqual(['50', '80', '100', '120']);
    expect(m.map((x) => x.left), 'positions clamped to the bar').toEqual(['50', '80', '100', '100']);
    expect(m.map((x) => x.fired), 'fired by value, whatever the zeros').toEqual([true, true, false, false]);
  });
});

describe('form parsing', () => {
  it('parses thresholds', () => {
    expect(parseThresholds('80, 50;100 50%')).toEqual({ values: [50, 80, 100] });
    expect('error' in parseThresholds(''), 'at least one').toBe(true);
    expect('error' in parseThresholds('50.5'), 'whole percentages only').toBe(true);
    expect('error' in parseThresholds('1001'), 'at most 1000').toBe(true);
    expect('error' in parseThresholds('1 2 3 4 5 6 7 8 9 10 11'), 'at most ten').toBe(true);
    expect('error' in parseThresholds('50, lots'), 'a word is rejected').toBe(true);
    expect('error' in parseThresholds('0'), 'zero is rejected').toBe(true);
  });
  it('parses emails', () => {
    expect(parseEmails(' a@b.c, d@e.f;g@h.i ')).toEqual(['a@b.c', 'd@e.f', 'g@h.i']);
  });
  it('builds the request body, keeping the amount string', () => {
    const r = draftToInput({ ...EMPTY_DRAFT, name: ' team ', amount: '100.00', scopeKind: 'provider', scopeValue: 'openai', emails: 'a@b.c', webhookUrl: '' });
    expect(r).toEqual({
      input: {
        name: 'team',
        amount: '100.00',
        period: 'monthly',
        scope: { kind: 'provider', value: 'openai' },
        thresholds: [50, 80, 100],
        emails: ['a@b.c'],
        webhook_url: null,
        enabled: true,
      },
    });
    expect('error' in draftToInput({ ...EMPTY_DRAFT, name: 'x', amount: '1e3' }), 'no exponents').toBe(true);
    expect('error' in draftToInput({ ...EMPTY_DRAFT, name: 'x', amount: '5', scopeKind: 'model' }), 'a scope needs a value').toBe(true);
    expect(draftToInput({ ...EMPTY_DRAFT, name: 'x', amount: '5', scopeValue: 'ignored' }), 'all: value null').toMatchObject({ input: { scope: { kind: 'all', value: null } } });
  });
  it('describes scopes', () => {
    expect(scopeText({ kind: 'all', value: null })).toBe('all usage');
    expect(scopeText({ kind: 'model', value: 'gpt-4o' })).toBe('model gpt-4o');
  });
});
