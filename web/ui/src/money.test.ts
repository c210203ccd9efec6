import { describe, expect, it } from 'vitest';
import moneySource from './money.ts?raw';
import {
  addDecimal,
  compareDecimal,
  formatQuantity,
  formatUnitPrice,
  formatUsd,
  groupThousands,
  isDecimal,
  isZero,
  ratioUnits,
  shiftDecimal,
  subDecimal,
  unitsToDecimal,
} from './money';

describe('formatUsd', () => {
  it('keeps every digit of sub-cent amounts', () => {
    expect(formatUsd('0.0002672')).toBe('$0.0002672');
    expect(formatUsd('0.0000001')).toBe('$0.0000001');
    expect(formatUsd('0.000000000000000000000000001')).toBe('$0.000000000000000000000000001');
  });

  it('keeps large amounts exact with thousands separators', () => {
    expect(formatUsd('12345678.123456789')).toBe('$12,345,678.123456789');
    // Beyond what a float can hold: 2^53 + 1 and 20+ significant digits.
    expect(formatUsd('9007199254740993')).toBe('$9,007,199,254,740,993.00');
    expect(formatUsd('99999999999999999999.000000000000000001')).toBe('$99,999,999,999,999,999,999.000000000000000001');
  });

  it('pads to cents and trims only trailing zeros past them', () => {
    expect(formatUsd('4')).toBe('$4.00');
    expect(formatUsd('1.5')).toBe('$1.50');
    expect(formatUsd('0.80')).toBe('$0.80');
    expect(formatUsd('1.500000')).toBe('$1.50');
    expect(formatUsd('0.10000')).toBe('$0.10');
    expect(formatUsd('0')).toBe('$0.00');
    expect(formatUsd('000123.4500')).toBe('$123.45');
    expect(formatUsd('.5')).toBe('$0.50');
  });

  it('handles signs', () => {
    expect(formatUsd('-12345.6')).toBe('-$12,345.60');
    expect(formatUsd('+3')).toBe('$3.00');
    expect(formatUsd('-0.000')).toBe('$0.00');
  });

  it('does not invent numbers from bad input', () => {
    expect(formatUsd('')).toBe('—');
    expect(formatUsd(null)).toBe('—');
    expect(formatUsd(undefined)).toBe('—');
    expect(formatUsd('abc')).toBe('abc');
    expect(formatUsd('1e-7')).toBe('1e-7');
  });

  it('can skip grouping or pad further', () => {
    expect(formatUsd('1234.5', { group: false })).toBe('$1234.50');
    expect(formatUsd('1.5', { minFraction: 6 })).toBe('$1.500000');
  });

  it('differs from what float formatting would print', () => {
    // 0.1 + 0.2 style drift and float display (1e-7) never show up.
    expect(formatUsd('0.30000000000000001')).toBe('$0.30000000000000001');
    expect(String(Number('0.0000001'))).toBe('1e-7');
    expect(formatUsd('0.0000001')).not.toContain('e');
  });
});

describe('money.ts uses no floats', () => {
  it('never parses amounts into JS numbers', () => {
    const code = moneySource.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
    expect(code).not.toMatch(/parseFloat|parseInt|Number\(|toFixed|Math\.round|\+\s*value\b/);
  });
});

describe('quantities and helpers', () => {
  it('formats quantities exactly', () => {
    expect(formatQuantity('14')).toBe('14');
    expect(formatQuantity('1234567')).toBe('1,234,567');
    expect(formatQuantity('1.50')).toBe('1.5');
    expect(formatQuantity(64)).toBe('64');
  });

  it('formats unit prices with their basis', () => {
    expect(formatUnitPrice('9.99', 'tokens')).toBe('$9.99 / MTok');
    expect(formatUnitPrice('0.01', 'units')).toBe('$0.01 / unit');
  });

  it('groups digits', () => {
    expect(groupThousands('1')).toBe('1');
    expect(groupThousands('123')).toBe('123');
    expect(groupThousands('1234')).toBe('1,234');
    expect(groupThousands('123456')).toBe('123,456');
    expect(groupThousands('1234567')).toBe('1,234,567');
  });

  it('compares decimals exactly', () => {
    expect(compareDecimal('0.0000001', '0.0000002')).toBe(-1);
    expect(compareDecimal('10', '9.999999999')).toBe(1);
    expect(compareDecimal('1.50', '1.5')).toBe(0);
    expect(compareDecimal('-2', '1')).toBe(-1);
    expect(compareDecimal('-2', '-1')).toBe(-1);
    expect(compareDecimal('9007199254740993', '9007199254740992')).toBe(1);
  });

  it('adds decimals exactly', () => {
    expect(addDecimal('0.1', '0.2')).toBe('0.3');
    expect(addDecimal('0.0002672', '0.0000001')).toBe('0.0002673');
    expect(addDecimal('9007199254740993', '0.000000001')).toBe('9007199254740993.000000001');
    expect(addDecimal('1', '-1.5')).toBe('-0.5');
    expect(addDecimal('-0.25', '0.25')).toBe('0');
  });

  it('recognizes decimals and zero', () => {
    expect(isDecimal('12')).toBe(true);
    expect(isDecimal('4.50')).toBe(true);
    expect(isDecimal('4,50')).toBe(false);
    expect(isDecimal('')).toBe(false);
    expect(isZero('0.000')).toBe(true);
    expect(isZero('0.001')).toBe(false);
  });
});

describe('exact ratios and shifts', () => {
  it('subtracts exactly', () => {
    expect(subDecimal('0.3', '0.1')).toBe('0.2');
    expect(subDecimal('1', '1.000001')).toBe('-0.000001');
    expect(subDecimal('5', '-2.5')).toBe('7.5');
  });

  it('divides into rounded integer units without floats', () => {
    expect(ratioUnits('1', '3', 10000n)).toBe(3333n);
    expect(ratioUnits('2', '3', 10000n)).toBe(6667n);
    expect(ratioUnits('0.5', '0.000002', 1n)).toBe(250000n);
    expect(ratioUnits('1', '8', 100n)).toBe(13n); // 12.5 rounds away from zero
    expect(ratioUnits('-1', '8', 100n)).toBe(-13n);
    expect(ratioUnits('99999999999999999999', '100000000000000000000', 10000n)).toBe(10000n);
    expect(ratioUnits('1', '0', 100n)).toBeNull();
    expect(ratioUnits('1', 'x', 100n)).toBeNull();
  });

  it('writes integer units as decimals', () => {
    expect(unitsToDecimal(3750n, 2)).toBe('37.5');
    expect(unitsToDecimal(5n, 2)).toBe('0.05');
    expect(unitsToDecimal(10000n, 2)).toBe('100');
    expect(unitsToDecimal(-5n, 3)).toBe('-0.005');
    expect(unitsToDecimal(0n, 2)).toBe('0');
  });

  it('moves the decimal point exactly', () => {
    expect(shiftDecimal('0.8', 2)).toBe('80');
    expect(shiftDecimal('0.125', 2)).toBe('12.5');
    expect(shiftDecimal('80', -2)).toBe('0.8');
    expect(shiftDecimal('12.5', -2)).toBe('0.125');
    expect(shiftDecimal('0.07', 2)).toBe('7');
    expect(shiftDecimal('0.1', 2)).toBe('10'); // 0.1 * 100 is 10.000000000000002 in floats
    expect(shiftDecimal('nope', 2)).toBeNull();
  });
});
