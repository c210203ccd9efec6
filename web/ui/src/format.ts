// Non-money display helpers (dates, ids).

/** "2024-11-04 12:03:05" in local time, or the input when it is not a date. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "2024-11-04 12:03" in local time (no seconds), for compact tables. */
export function formatTimeShort(iso: string | null | undefined): string {
  const full = formatTime(iso);
  return /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/.test(full) ? full.slice(0, 16) : full;
}

/** The last 8 characters of an id (UUIDv7 ids share their leading time bits). */
export function shortId(id: string | null | undefined): string {
  if (!id) return '—';
  const plain = id.replace(/-/g, '');
  return plain.length > 8 ? plain.slice(-8) : plain;
}

/** A message for an error of any kind. */
export function errorText(e: unknown): string {
  if (e && typeof e === 'object' && 'message' in e) {
    const code = 'code' in e && typeof (e as { code: unknown }).code === 'string' ? (e as { code: string }).code : null;
    const msg = String((e as { message: unknown }).message);
    return code && code !== 'network' ? `${msg} (${code})` : msg;
  }
  return String(e);
}
