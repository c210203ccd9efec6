// Conversions for chart geometry ONLY. Displayed money and quantities always come
// from the API's strings through money.ts; these numbers only size bars and areas.

/** A decimal string as a float, for positioning things on a chart (never shown as money). */
export function chartNumber(value: string | number | null | undefined): number {
  if (value === null || value === undefined) return 0;
  const n = typeof value === 'number' ? value : Number(value);
  return Number.isFinite(n) ? n : 0;
}

/** A stable color for a series name. */
export function seriesColor(name: string): string {
  const fixed: Record<string, string> = {
    input_tokens: '#4f7cff',
    output_tokens: '#ff8a3d',
    cache_write_5m_tokens: '#23b59a',
    cache_write_1h_tokens: '#8c5cff',
    cache_read_tokens: '#e84f8a',
    images: '#c9a227',
    pixels: '#6b8e23',
    web_search_requests: '#3aa0c8',
    // Reconciliation drift: metered minus reported, Tally-priced minus reported.
    cost_drift: '#4f7cff',
    price_drift: '#ff8a3d',
  };
  if (fixed[name]) return fixed[name];
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 60% 50%)`;
}

/** A y-axis domain that always contains zero and is symmetric enough to read signs at a glance. */
export function signedDomain(values: (number | null | undefined)[]): [number, number] {
  let lo = 0;
  let hi = 0;
  for (const v of values) {
    if (v === null || v === undefined || !Number.isFinite(v)) continue;
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (lo === 0 && hi === 0) return [-1, 1];
  return [lo, hi];
}

/** An axis tick of a chart in dollars, two significant digits ("$0.000051", "-$1.2"): a label of geometry, never a shown amount. */
export function axisUsd(v: number): string {
  if (!Number.isFinite(v) || v === 0) return '0';
  return `${v < 0 ? '-' : ''}$${Number(Math.abs(v).toPrecision(2))}`;
}
