import { describe, expect, it } from 'vitest';
import { budgetBar, budgetTone, durationText, periodLabel, periodNoun, resetText } from './budget';
import { addDecimal } from './money';

const bar = (max_budget: string, spent: string, reserved = '0', alert_threshold: string | null = null) =>
  budgetBar({ max_budget, spent, reserved, alert_threshold });

/** The three segments add up to the whole bar, exactly (string arithmetic). */
function total(g: { spent: string; reserved: string; remaining: string }): string {
  return addDecimal(addDecimal(g.spent, g.reserved), g.remaining);
}

describe('budgetBar', () => {
  it('splits the bar into spent, reserved and remaining out of the limit', () => {
    const g = bar('5.00', '1.25', '0.5', '0.8');
    expect(g).toEqual({ spent: '25', reserved: '10', remaining: '65', threshold: '80', usedPercent: '25', over: false });
  });

  it('is exact where floats are not (0.1 + 0.2 of 0.3 is the whole bar)', () => {
    const g = bar('0.3', '0.1', '0.2');
    expect(g.spent).toBe('33.33');
    expect(g.reserved).toBe('66.67');
    expect(g.remaining).toBe('0');
    expect(g.over).toBe(false);
    expect(total(g)).toBe('100');
  });

  it('keeps sub-cent and huge amounts exact', () => {
    expect(bar('0.000003', '0.000001').spent).toBe('33.33');
    expect(bar('100000000', '12345678.9').spent).toBe('12.35');
    // 2^53 + 1 is not a float; one unit of it is still nothing on the bar.
    expect(bar('9007199254740993', '1').spent).toBe('0');
    expect(bar('9007199254740993', '9007199254740992').spent).toBe('100');
  });

  it('always sums to exactly 100 and never overlaps', () => {
    const cases: [string, string, string][] = [
      ['3', '1', '1'],
      ['7', '1', '1'],
      ['0.07', '0.01', '0.02'],
      ['1', '0.33333', '0.33333'],
      ['10', '0', '0'],
      ['10', '10', '0'],
      ['10', '9.999999', '0.000001'],
    ];
    for (const [max, spent, reserved] of cases) {
      const g = bar(max, spent, reserved);
      expect(total(g), `${spent}+${reserved} of ${max}`).toBe('100');
    }
  });

  it('clamps past the limit but says it is over, and reports the true percentage used', () => {
    const g = bar('5', '6', '1');
    expect(g.spent).toBe('100');
    expect(g.reserved).toBe('0');
    expect(g.remaining).toBe('0');
    expect(g.over).toBe(true);
    expect(g.usedPercent).toBe('120');
    const h = bar('5', '4', '2');
    expect([h.spent, h.reserved, h.remaining]).toEqual(['80', '20', '0']);
    expect(h.over).toBe(true);
  });

  it('has no geometry for a zero or unreadable limit', () => {
    expect(bar('0', '0')).toEqual({ spent: '0', reserved: '0', remaining: '0', threshold: null, usedPercent: null, over: false });
    expect(bar('n/a', '1').over).toBe(true);
  });

  it('places the alert threshold', () => {
    expect(bar('5', '0', '0', '0.125').threshold).toBe('12.5');
    expect(bar('5', '0', '0', '1').threshold).toBe('100');
    expect(bar('5', '0', '0', null).threshold).toBeNull();
  });
});

describe('budget display', () => {
  it('picks a tone from enabled and the alert state', () => {
    expect(budgetTone({ enabled: true, alert_state: 'ok' })).toBe('ok');
    expect(budgetTone({ enabled: true, alert_state: 'alerted' })).toBe('alerted');
    expect(budgetTone({ enabled: true, alert_state: 'exceeded' })).toBe('exceeded');
    expect(budgetTone({ enabled: false, alert_state: 'exceeded' })).toBe('disabled');
  });

  it('says when a window resets', () => {
    const now = Date.parse('2025-01-02T19:00:00Z');
    expect(resetText('2025-01-03T00:00:00Z', now)).toBe('resets in 5 h 0 min');
    expect(resetText('2025-01-02T19:00:45Z', now)).toBe('resets in 45 s');
    expect(resetText('2025-01-02T19:12:00Z', now)).toBe('resets in 12 min');
    expect(resetText('2025-02-01T00:00:00Z', now)).toBe('resets in 29 d 5 h');
    expect(resetText('2025-01-02T18:00:00Z', now)).toBe('resets now');
    expect(resetText('soon', now)).toBe('resets soon');
  });

  it('formats durations and periods', () => {
    expect(durationText(-5)).toBe('0 s');
    expect(durationText(47 * 3600_000 + 59 * 60_000)).toBe('47 h 59 min');
    expect(durationText(48 * 3600_000)).toBe('2 d 0 h');
    expect(periodLabel('weekly')).toBe('Weekly');
    expect(periodNoun('daily')).toBe('day');
    expect(periodNoun('monthly')).toBe('month');
  });
});
