import { describe, expect, it } from 'vitest';
import { axisUsd, chartNumber, signedDomain } from './chart';

describe('chart geometry helpers', () => {
  it('keeps zero inside the domain of signed series', () => {
    expect(signedDomain([0.5, 2, null]), 'all positive: from zero').toEqual([0, 2]);
    expect(signedDomain([-0.25, undefined, 1]), 'both signs').toEqual([-0.25, 1]);
    expect(signedDomain([-3, -1]), 'all negative: up to zero').toEqual([-3, 0]);
    expect(signedDomain([null, 0]), 'nothing to draw: a unit band around zero').toEqual([-1, 1]);
  });
  it('labels axis ticks in dollars with two significant digits', () => {
    expect(axisUsd(0)).toBe('0');
    expect(axisUsd(0.00005084)).toBe('$0.000051');
    expect(axisUsd(-1.234)).toBe('-$1.2');
    expect(axisUsd(1500)).toBe('$1500');
  });
  it('reads decimal strings for geometry only', () => {
    expect(chartNumber('0.3')).toBe(0.3);
    expect(chartNumber(null)).toBe(0);
    expect(chartNumber('x')).toBe(0);
  });
});
