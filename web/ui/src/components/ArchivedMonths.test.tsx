import { cleanup, render, screen, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { archivedMonths, type ArchiveMonth } from '../archives';
import { ArchivedMonths } from './ArchivedMonths';

let months: ArchiveMonth[] | null;

function month(key: string, status: ArchiveMonth['status'], cost: string | null): ArchiveMonth {
  return {
    month: key,
    status,
    archived: status === 'archived',
    location: `/data/archive/${key}`,
    rows: { api_events: 6 },
    cost_total: cost,
    events: cost === null ? null : 6,
    users: 2,
    files: cost === null ? [] : [{ file: 'api_events.parquet', table: 'api_events', rows: 6, bytes: 2048, sha256: 'ab' }],
    updated_at: '2026-12-04T01:15:00Z',
    archived_at: status === 'archived' ? '2026-12-04T01:15:00Z' : null,
    verified_at: null,
  };
}

beforeEach(() => {
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string) => {
      if (url !== '/api/archives' || months === null) {
        return new Response(JSON.stringify({ code: 'database', message: 'database is down' }), { status: 503 });
      }
      return new Response(JSON.stringify({ months }), { status: 200 });
    }),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('ArchivedMonths', () => {
  it('lists archived months with exact costs and marks the ones restored', async () => {
    months = [month('2026-01', 'archived', '0.123456789'), month('2026-02', 'restored', '1.5'), month('2026-03', 'writing', null)];
    render(<ArchivedMonths version={0} />);
    await waitFor(() => expect(screen.getAllByTestId('archived-month-row').length, 'one row per month').toBe(3));
    const [jan, feb, mar] = screen.getAllByTestId('archived-month-row');
    expect(jan.getAttribute('data-status'), 'January is archived').toBe('archived');
    expect(jan.querySelector('[data-amount]')?.getAttribute('data-amount'), 'exact cost string kept').toBe('0.123456789');
    expect(feb.textContent, 'a restored month says so').toContain('restored');
    expect(mar.textContent, 'a month being written has no totals yet').toContain('—');
    expect(archivedMonths(months), 'only archived months count as archived').toEqual(['2026-01']);
  });

  it('says when nothing is archived, and shows errors', async () => {
    months = [];
    render(<ArchivedMonths version={0} />);
    await waitFor(() => expect(screen.getByTestId('archived-months').textContent).toContain('No month is archived'));
    cleanup();
    months = null;
    render(<ArchivedMonths version={1} />);
    await waitFor(() => expect(screen.getByTestId('archived-months').textContent).toContain('database is down'));
  });
});
