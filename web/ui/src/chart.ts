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
  };
  if (fixed[name]) return fixed[name];
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return `hsl(${h % 360} 60% 50%)`;
}
