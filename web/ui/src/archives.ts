// Archived months of usage events (GET /api/archives, docs/archive.md).

/** One month in the archive. */
export interface ArchiveMonth {
  month: string;
  status: 'writing' | 'written' | 'archived' | 'restored';
  archived: boolean;
  location: string;
  rows: Record<string, number>;
  /** Exact decimal string; null until the manifest is written. */
  cost_total: string | null;
  events: number | null;
  users: number | null;
  files: { file: string; table: string; rows: number; bytes: number; sha256: string }[];
  updated_at: string;
  archived_at: string | null;
  verified_at: string | null;
}

/** Fetch the archive listing. */
export async function listArchives(): Promise<ArchiveMonth[]> {
  const res = await fetch('/api/archives', { headers: { Accept: 'application/json' } });
  if (!res.ok) {
    let message = `HTTP ${res.status}`;
    try {
      const body = (await res.json()) as { message?: string };
      if (typeof body?.message === 'string') message = body.message;
    } catch {
      // not JSON: keep the status line
    }
    throw new Error(message);
  }
  const body = (await res.json()) as { months: ArchiveMonth[] };
  return body.months;
}

/** Months whose events are out of the hot tables, newest first (`YYYY-MM`). */
export function archivedMonths(months: ArchiveMonth[]): string[] {
  return months.filter((m) => m.archived).map((m) => m.month).sort().reverse();
}

/** Total bytes of a month's files. */
export function archiveBytes(m: ArchiveMonth): number {
  return m.files.reduce((n, f) => n + f.bytes, 0);
}
