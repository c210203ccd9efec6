// Money and quantity formatting with string operations only.
//
// The API sends every amount and quantity as a decimal string ("0.0002672").
// This module never turns them into JS numbers: a float would silently round
// sub-cent amounts and large totals. All work is done on the digits.

const DECIMAL = /^([+-])?(\d*)(?:\.(\d*))?$/;

interface Parts {
  negative: boolean;
  int: string; // no leading zeros, at least "0"
  frac: string; // no trailing zeros, may be ""
}

/** Split a decimal string into sign, integer digits and fraction digits; null if it is not one. */
export function parseDecimal(value: string | null | undefined): Parts | null {
  if (value === null || value === undefined) return null;
  const m = DECIMAL.exec(String(value).trim());
  if (!m) return null;
  const [, sign, rawInt = '', rawFrac = ''] = m;
  if (rawInt === '' && rawFrac === '') return null;
  const int = rawInt.replace(/^0+/, '') || '0';
  const frac = rawFrac.replace(/0+$/, '');
  const zero = int === '0' && frac === '';
  return { negative: sign === '-' && !zero, int, frac };
}

/** True when the string is a plain decimal number ("12", "-0.5", "3.").  */
export function isDecimal(value: string | null | undefined): boolean {
  return parseDecimal(value) !== null;
}

/** Insert thousands separators into a run of digits. */
export function groupThousands(digits: string, sep = ','): string {
  let out = '';
  for (let i = 0; i < digits.length; i++) {
    const fromEnd = digits.length - i;
    out += digits[i];
    if (fromEnd > 1 && (fromEnd - 1) % 3 === 0) out += sep;
  }
  return out;
}

export interface FormatOptions {
  /** Pad the fraction with zeros to at least this many digits (default 2 for money, 0 for quantities). */
  minFraction?: number;
  /** Thousands separators in the integer part (default true). */
  group?: boolean;
}

function formatParts(p: Parts, opts: FormatOptions, defaultMin: number): string {
  const min = opts.minFraction ?? defaultMin;
  const int = opts.group === false ? p.int : groupThousands(p.int);
  const frac = p.frac.length < min ? p.frac + '0'.repeat(min - p.frac.length) : p.frac;
  return frac ? `${int}.${frac}` : int;
}

/**
 * Format a USD amount exactly: `formatUsd("0.0002672") === "$0.0002672"`,
 * `formatUsd("1.5") === "$1.50"`, `formatUsd("-12345.6") === "-$12,345.60"`.
 * Every significant digit is kept; only trailing zeros past two places are dropped.
 * A value that is not a decimal string is returned as is (empty input gives "—").
 */
export function formatUsd(value: string | null | undefined, opts: FormatOptions = {}): string {
  if (value === null || value === undefined || String(value).trim() === '') return '—';
  const p = parseDecimal(value);
  if (!p) return String(value);
  return `${p.negative ? '-' : ''}$${formatParts(p, opts, 2)}`;
}

/** Format a quantity exactly: `"1234" -> "1,234"`, `"1.50" -> "1.5"`. */
export function formatQuantity(value: string | number | null | undefined, opts: FormatOptions = {}): string {
  if (value === null || value === undefined || String(value).trim() === '') return '—';
  const p = parseDecimal(String(value));
  if (!p) return String(value);
  return `${p.negative ? '-' : ''}${formatParts(p, opts, 0)}`;
}

/** A price with its basis: tokens are priced per million ("$4.00 / MTok"), resources per unit. */
export function formatUnitPrice(price: string, unit: string): string {
  return `${formatUsd(price)} / ${unit === 'tokens' ? 'MTok' : 'unit'}`;
}

/** Compare two decimal strings exactly (-1, 0, 1). Non-decimals sort as zero. */
export function compareDecimal(a: string, b: string): number {
  const pa = parseDecimal(a) ?? { negative: false, int: '0', frac: '' };
  const pb = parseDecimal(b) ?? { negative: false, int: '0', frac: '' };
  if (pa.negative !== pb.negative) return pa.negative ? -1 : 1;
  const sign = pa.negative ? -1 : 1;
  if (pa.int.length !== pb.int.length) return pa.int.length < pb.int.length ? -sign : sign;
  if (pa.int !== pb.int) return pa.int < pb.int ? -sign : sign;
  const len = Math.max(pa.frac.length, pb.frac.length);
  const fa = pa.frac.padEnd(len, '0');
  const fb = pb.frac.padEnd(len, '0');
  if (fa === fb) return 0;
  return fa < fb ? -sign : sign;
}

/** Whether a decimal string is exactly zero (or not a decimal). */
export function isZero(value: string | null | undefined): boolean {
  const p = parseDecimal(value);
  return !p || (p.int === '0' && p.frac === '');
}

/** Exact sum of non-negative or negative decimal strings, as a normalized decimal string. */
export function addDecimal(a: string, b: string): string {
  const pa = parseDecimal(a) ?? { negative: false, int: '0', frac: '' };
  const pb = parseDecimal(b) ?? { negative: false, int: '0', frac: '' };
  const scale = Math.max(pa.frac.length, pb.frac.length);
  const digitsA = BigInt(pa.int + pa.frac.padEnd(scale, '0')) * (pa.negative ? -1n : 1n);
  const digitsB = BigInt(pb.int + pb.frac.padEnd(scale, '0')) * (pb.negative ? -1n : 1n);
  const sum = digitsA + digitsB;
  const neg = sum < 0n;
  const abs = (neg ? -sum : sum).toString().padStart(scale + 1, '0');
  const int = abs.slice(0, abs.length - scale);
  const frac = scale ? abs.slice(abs.length - scale) : '';
  const p = parseDecimal(`${neg ? '-' : ''}${int}${frac ? '.' + frac : ''}`);
  if (!p) return '0';
  return `${p.negative ? '-' : ''}${p.int}${p.frac ? '.' + p.frac : ''}`;
}

/** The value as an integer of units of 10^-scale: `scaled("1.25") === { units: 125n, scale: 2 }`. */
function scaled(value: string): { units: bigint; scale: number } {
  const p = parseDecimal(value) ?? { negative: false, int: '0', frac: '' };
  const units = BigInt(p.int + p.frac) * (p.negative ? -1n : 1n);
  return { units, scale: p.frac.length };
}

/** Exact difference `a - b` of decimal strings, normalized. */
export function subDecimal(a: string, b: string): string {
  const p = parseDecimal(b);
  if (!p) return addDecimal(a, '0');
  const negB = `${p.negative ? '' : '-'}${p.int}${p.frac ? '.' + p.frac : ''}`;
  return addDecimal(a, negB);
}

/**
 * `round(part / whole * unit)` as an integer, rounding half away from zero, computed
 * exactly from the decimal strings; null when `whole` is zero or not a decimal.
 * With `unit = 10000n` it gives hundredths of a percent.
 */
export function ratioUnits(part: string, whole: string, unit: bigint): bigint | null {
  if (!isDecimal(whole) || isZero(whole)) return null;
  const p = scaled(part);
  const w = scaled(whole);
  // part/whole = (p.units * 10^w.scale) / (w.units * 10^p.scale)
  let num = p.units * 10n ** BigInt(w.scale) * unit;
  let den = w.units * 10n ** BigInt(p.scale);
  if (den < 0n) {
    num = -num;
    den = -den;
  }
  const neg = num < 0n;
  const abs = neg ? -num : num;
  let q = abs / den;
  if ((abs % den) * 2n >= den) q += 1n;
  return neg ? -q : q;
}

/** An integer of units of 10^-places as a normalized decimal string: `unitsToDecimal(3750n, 2) === "37.5"`. */
export function unitsToDecimal(units: bigint, places: number): string {
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(places + 1, '0');
  const int = digits.slice(0, digits.length - places);
  const frac = places ? digits.slice(digits.length - places) : '';
  const p = parseDecimal(`${neg ? '-' : ''}${int}${frac ? '.' + frac : ''}`);
  if (!p) return '0';
  return `${p.negative ? '-' : ''}${p.int}${p.frac ? '.' + p.frac : ''}`;
}

/**
 * Move the decimal point: `shiftDecimal("0.8", 2) === "80"`, `shiftDecimal("12.5", -2) === "0.125"`.
 * Exact (digits only); null when the value is not a decimal.
 */
export function shiftDecimal(value: string, places: number): string | null {
  const p = parseDecimal(value);
  if (!p) return null;
  const s = scaled(value);
  if (places >= 0) return unitsToDecimal(s.units * 10n ** BigInt(places), s.scale);
  return unitsToDecimal(s.units, s.scale - places);
}
