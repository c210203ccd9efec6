// Names and order of usage kinds.

const LABELS: Record<string, string> = {
  input_tokens: 'Input',
  output_tokens: 'Output',
  cache_write_5m_tokens: 'Cache write (5m)',
  cache_write_1h_tokens: 'Cache write (1h)',
  cache_read_tokens: 'Cache read',
  images: 'Images',
  pixels: 'Pixels',
  web_search_requests: 'Web searches',
};

/** The token kinds, in display order. */
export const TOKEN_KINDS = [
  'input_tokens',
  'output_tokens',
  'cache_write_5m_tokens',
  'cache_write_1h_tokens',
  'cache_read_tokens',
];

/** Resource kinds priced per unit that the catalog knows of. */
export const RESOURCE_KINDS = ['images', 'pixels', 'web_search_requests'];

/** A person-facing label for a usage kind. */
export function kindLabel(kind: string): string {
  if (LABELS[kind]) return LABELS[kind];
  const words = kind.replace(/_/g, ' ').trim();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Whether a kind is counted in tokens. */
export function isTokenKind(kind: string): boolean {
  return kind.endsWith('_tokens');
}

/** Sort key: token kinds first in their fixed order, then resources alphabetically. */
export function kindOrder(a: string, b: string): number {
  const ia = TOKEN_KINDS.indexOf(a);
  const ib = TOKEN_KINDS.indexOf(b);
  if (ia !== -1 || ib !== -1) return (ia === -1 ? 99 : ia) - (ib === -1 ? 99 : ib);
  return a < b ? -1 : a > b ? 1 : 0;
}
