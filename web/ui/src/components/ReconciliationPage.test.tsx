import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ImportRun, ProviderConnection, ReconciliationRow } from '../types';
import { ReconciliationPage } from './ReconciliationPage';

type Handler = (method: string, url: string, body: unknown) => { status: number; body?: unknown } | undefined;
let handler: Handler;
let calls: { method: string; url: string; body: unknown }[];

beforeEach(() => {
  calls = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init?: RequestInit) => {
      const method = init?.method ?? 'GET';
      const body = init?.body ? JSON.parse(String(init.body)) : undefined;
      calls.push({ method, url, body });
      const r = handler(method, url, body) ?? { status: 404, body: { code: 'not_found', message: `no ${method} ${url}` } };
      return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status });
    }),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const SECRET = 'sk-ant-admin01-very-secret-key-abcd';

function row(over: Partial<ReconciliationRow>): ReconciliationRow {
  return {
    date: '2026-12-02',
    model: 'claude-3-5-haiku-20241022',
    reported_tokens: { input_tokens: '1000', output_tokens: '200' },
    metered_tokens: { input_tokens: '1000', output_tokens: '200' },
    token_diff: { input_tokens: '0', output_tokens: '0' },
    token_diff_pct: { input_tokens: '0', output_tokens: '0' },
    reported_cost: '0.0016',
    tally_priced_cost: '0.0016',
    metered_cost: '0.0016',
    cost_diff: '0',
    cost_diff_pct: '0',
    price_diff: '0',
    price_diff_pct: '0',
    reported_events: 1,
    metered_events: 3,
    flags: [],
    flagged: false,
    ...over,
  };
}

function failedRun(id: string): ImportRun {
  return {
    run_id: 'run-1', connection_id: id, trigger: 'manual', range_from: '2026-12-03T10:00:00Z', range_to: '2026-12-04T10:00:00Z',
    started_at: '2026-12-04T10:00:00Z', finished_at: '2026-12-04T10:00:01Z', status: 'failed', pages: 0, buckets: 0,
    events_new: 0, events_revised: 0, events_unchanged: 0, skipped: 0, costs: 0, error: 'connection refused',
  };
}

describe('ReconciliationPage', () => {
  it('shows rows with flags, exact totals and the drift; adds a connection with a masked key; shows an import error', async () => {
    const connections: ProviderConnection[] = [];
    const rows = [
      row({}),
      row({
        date: '2026-12-03',
        metered_tokens: { input_tokens: '1100', output_tokens: '200' },
        token_diff: { input_tokens: '100', output_tokens: '0' },
        token_diff_pct: { input_tokens: '10', output_tokens: '0' },
        metered_cost: '0.00176',
        cost_diff: '0.00016',
        cost_diff_pct: '10',
        flags: ['tokens:input_tokens', 'cost'],
        flagged: true,
      }),
      row({ date: '2026-12-03', model: null, reported_tokens: {}, metered_tokens: {}, token_diff: {}, token_diff_pct: {}, reported_cost: '0.1', tally_priced_cost: '0', metered_cost: '0', cost_diff: '-0.1', cost_diff_pct: '-100', price_diff: '-0.1', price_diff_pct: '-100', reported_events: 0, metered_events: 0, flags: ['cost'], flagged: true }),
    ];
    handler = (method, url, body) => {
      const path = url.split('?')[0];
      if (path === '/api/reconciliation') {
        const q = new URLSearchParams(url.split('?')[1]);
        return { status: 200, body: { provider: q.get('provider'), from: q.get('from'), to: q.get('to'), granularity: 'day', tolerance_pct: q.get('tolerance_pct'), rows: q.get('provider') === 'anthropic' ? rows : [] } };
      }
      if (path === '/api/providers' && method === 'GET') return { status: 200, body: { providers: connections } };
      if (path === '/api/providers' && method === 'POST') {
        const b = body as { name: string; admin_key: string; base_url?: string; provider: string };
        if (b.admin_key.length < 8) return { status: 400, body: { code: 'invalid_admin_key', message: 'admin_key must be 8-512 printable characters without spaces' } };
        const c: ProviderConnection = {
          connection_id: 'c1', provider: b.provider, name: b.name, base_url: b.base_url ?? 'https://api.anthropic.com',
          admin_key: `sk-...${b.admin_key.slice(-4)}`, created_at: '2026-12-04T10:00:00Z', last_run_at: null, last_status: null, last_error: null, enabled: true,
        };
        connections.push(c);
        return { status: 201, body: c };
      }
      if (path === '/api/providers/c1/import' && method === 'POST') {
        connections[0] = { ...connections[0], last_run_at: '2026-12-04T10:00:01Z', last_status: 'failed', last_error: 'connection refused' };
        return { status: 502, body: { code: 'provider_error', message: 'provider error: connection refused', run: failedRun('c1') } };
      }
      if (path === '/api/providers/c1/runs') return { status: 200, body: { runs: [failedRun('c1')] } };
      if (path === '/api/providers/c1' && method === 'DELETE') {
        const gone = connections.splice(0, 1)[0];
        return { status: 200, body: gone };
      }
      return undefined;
    };
    render(<ReconciliationPage />);

    await waitFor(() => expect(screen.getAllByTestId('reconciliation-row').length, 'one row per day and model').toBe(3));
    const call = calls.find((c) => c.url.startsWith('/api/reconciliation'))!;
    expect(call.url, 'provider, 30-day range, day granularity and default tolerance').toMatch(/^\/api\/reconciliation\?provider=anthropic&from=\d{4}-\d\d-\d\d&to=\d{4}-\d\d-\d\d&granularity=day&tolerance_pct=1$/);

    const flagged = screen.getAllByTestId('reconciliation-row').filter((r) => r.getAttribute('data-flagged') === 'true');
    expect(flagged.length, 'two flagged rows').toBe(2);
    expect(flagged[0].className).toContain('flagged');
    expect(within(flagged[0]).getByTestId('reconciliation-flags').textContent, 'what is flagged, in words').toBe('Input tokensCost');
    expect(flagged[0].querySelector('td[data-kind="input_tokens"]')?.className, 'the flagged kind cell is marked').toContain('flagged-cell');
    expect(flagged[0].querySelector('td[data-kind="output_tokens"]')?.className).not.toContain('flagged-cell');
    expect(within(flagged[0]).getByTestId('reconciliation-cost-diff').textContent).toBe('+$0.00016+10.00%');
    expect(flagged[1].getAttribute('data-model'), 'unattributed provider cost').toBe('');
    expect(flagged[1].textContent).toContain('not attributable');

    expect(screen.getByTestId('reconciliation-total-reported').getAttribute('data-amount'), 'exact: 0.0016 + 0.0016 + 0.1').toBe('0.1032');
    expect(screen.getByTestId('reconciliation-total-metered').getAttribute('data-amount')).toBe('0.00336');
    expect(screen.getByTestId('reconciliation-flagged-count').textContent).toBe('2 / 3');
    expect(Number(screen.getByTestId('reconciliation-drift-chart').getAttribute('data-days')), 'a day per day of the range').toBeGreaterThanOrEqual(30);
    expect(screen.getByTestId('reconciliation-drift-chart').getAttribute('data-drift-days'), 'two days with reported costs').toBe('2');

    // Tolerance: a bad value is not sent; a good one is.
    fireEvent.change(screen.getByTestId('reconciliation-tolerance'), { target: { value: '-2' } });
    expect(screen.getByTestId('reconciliation-input-error').textContent).toContain('negative');
    fireEvent.change(screen.getByTestId('reconciliation-tolerance'), { target: { value: '2.5' } });
    await waitFor(() => expect(calls.some((c) => c.url.includes('tolerance_pct=2.5')), 'the new tolerance is asked for').toBe(true));
    expect(calls.some((c) => c.url.includes('tolerance_pct=-2')), 'a negative tolerance is never sent').toBe(false);

    // Another provider with nothing to reconcile.
    fireEvent.change(screen.getByTestId('reconciliation-provider'), { target: { value: 'openai' } });
    await screen.findByTestId('reconciliation-empty');
    expect(screen.getByTestId('reconciliation-empty').textContent).toContain('Nothing to reconcile for openai');
    fireEvent.change(screen.getByTestId('reconciliation-provider'), { target: { value: 'anthropic' } });
    await waitFor(() => expect(screen.getAllByTestId('reconciliation-row').length).toBe(3));

    // Add a connection: a server error by code, then success with the key masked and cleared.
    await screen.findByTestId('connections-empty');
    fireEvent.click(screen.getByTestId('connection-add'));
    fireEvent.change(screen.getByTestId('connection-form-name'), { target: { value: 'anthropic-prod' } });
    fireEvent.change(screen.getByTestId('connection-form-key'), { target: { value: 'short' } });
    fireEvent.click(screen.getByTestId('connection-form-submit'));
    const err = await screen.findByTestId('connection-form-error');
    expect(err.getAttribute('data-code')).toBe('invalid_admin_key');
    expect((screen.getByTestId('connection-form-key') as HTMLInputElement).type, 'the key is typed into a password field').toBe('password');
    fireEvent.change(screen.getByTestId('connection-form-key'), { target: { value: SECRET } });
    fireEvent.change(screen.getByTestId('connection-form-base-url'), { target: { value: ' http://127.0.0.1:9 ' } });
    fireEvent.click(screen.getByTestId('connection-form-submit'));
    const item = await screen.findByTestId('provider-connection');
    expect(within(item).getByTestId('connection-key').textContent).toBe('sk-...abcd');
    expect(calls.find((c) => c.method === 'POST' && c.url === '/api/providers' && (c.body as { admin_key: string }).admin_key === SECRET)?.body, 'the body as the API wants it').toEqual({
      provider: 'anthropic',
      name: 'anthropic-prod',
      admin_key: SECRET,
      base_url: 'http://127.0.0.1:9',
    });
    expect(document.body.innerHTML.includes(SECRET), 'the key is nowhere on the page').toBe(false);
    expect(screen.queryByTestId('connection-form'), 'the form closed (its input with the key is gone)').toBeNull();

    // Import now: the provider error with its recorded run, then the runs list.
    fireEvent.click(within(item).getByTestId('connection-import'));
    const ierr = await within(item).findByTestId('connection-import-error');
    expect(ierr.getAttribute('data-code')).toBe('provider_error');
    expect(ierr.textContent).toContain('connection refused');
    expect(ierr.getAttribute('data-run-id')).toBe('run-1');
    const importCall = calls.find((c) => c.url.startsWith('/api/providers/c1/import'))!;
    const q = new URLSearchParams(importCall.url.split('?')[1]);
    expect(Date.parse(q.get('to')!) - Date.parse(q.get('from')!), 'the last 24 hours').toBe(86_400_000);
    await waitFor(() => expect(screen.getByTestId('provider-connection').getAttribute('data-status'), 'the list is reloaded after the run').toBe('failed'));
    expect(within(screen.getByTestId('provider-connection')).getByTestId('connection-last-error').textContent).toBe('connection refused');
    fireEvent.click(within(screen.getByTestId('provider-connection')).getByTestId('connection-runs-toggle'));
    await waitFor(() => expect(screen.getAllByTestId('connection-run-row').length).toBe(1));
    expect(screen.getByTestId('connection-run-row').getAttribute('data-status')).toBe('failed');

    // Delete asks first.
    fireEvent.click(screen.getByTestId('connection-delete'));
    fireEvent.click(screen.getByTestId('connection-delete-confirm'));
    await waitFor(() => expect(screen.queryByTestId('provider-connection')).toBeNull());
    expect(calls.some((c) => c.method === 'DELETE' && c.url === '/api/providers/c1')).toBe(true);
  });

  it('says so when the server has no provider API', async () => {
    handler = () => undefined;
    render(<ReconciliationPage />);
    await screen.findByTestId('reconciliation-unavailable');
    await screen.findByTestId('providers-unavailable');
    expect((screen.getByTestId('connection-add') as HTMLButtonElement).disabled).toBe(true);
  });
});
