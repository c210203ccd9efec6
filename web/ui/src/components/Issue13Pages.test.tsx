import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { AlertBudget, Figures, PriceVersion, UsageEvent } from '../types';
import { SessionContext } from '../session';
import { AnalyticsPage } from './AnalyticsPage';
import { BudgetsPage } from './BudgetsPage';
import { DataTab } from './DataTab';
import { SettingsTab } from './SettingsTab';

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

function figures(cost: string, requests = 1): Figures {
  return {
    requests,
    failed: 0,
    success_rate: requests ? '1' : null,
    cost,
    avg_cost_per_request: requests ? cost : null,
    tokens: { input_tokens: '10', output_tokens: '5', cache_write_5m_tokens: '0', cache_write_1h_tokens: '0', cache_read_tokens: '0' },
    cost_by_kind: {},
  };
}

function event(n: number): UsageEvent {
  return {
    event_id: `ev-${n}`,
    event_seq: n,
    user_id: 'alice',
    thread_id: null,
    message_id: null,
    model: 'gpt-4o-mini',
    provider: 'openai',
    event_type: 'llm_call',
    source: 'gateway',
    task: n % 2 ? 'summarize' : null,
    key_id: '0192f000-0000-7000-8000-00000000c001',
    was_successful: n !== 2,
    idempotency_key: null,
    occurred_at: '2026-12-04T10:00:00Z',
    cost: `0.00${n}`,
    lines: [],
  };
}

describe('DataTab', () => {
  it('pages through the usage log with the cursor', async () => {
    handler = (_m, url) => {
      if (url === '/api/users/alice') return { status: 200, body: { user_id: 'alice', username: null, email: null, created_at: '2026-12-01T00:00:00Z' } };
      if (url === '/api/billing/invoices/user/alice') return { status: 200, body: [] };
      if (url === '/api/usage/events?user_id=alice&limit=100') return { status: 200, body: { events: [event(3), event(2)], next_cursor: 'c2' } };
      if (url === '/api/usage/events?user_id=alice&cursor=c2&limit=100') return { status: 200, body: { events: [event(1)], next_cursor: null } };
      return undefined;
    };
    render(<DataTab userId="alice" version={0} />);
    await waitFor(() => expect(screen.getAllByTestId('usage-event-row').length, 'first page').toBe(2));
    const failed = screen.getAllByTestId('usage-event-row')[1];
    expect(failed.getAttribute('data-status'), 'the failed event is marked').toBe('failed');
    expect(screen.getAllByTestId('usage-event-row')[0].textContent, 'task shown').toContain('summarize');
    fireEvent.click(screen.getByTestId('usage-events-more'));
    await waitFor(() => expect(screen.getAllByTestId('usage-event-row').length, 'second page appended').toBe(3));
    expect(screen.queryByTestId('usage-events-more'), 'no more pages, no button').toBeNull();
    expect(screen.getByTestId('usage-events-count').textContent).toContain('3 events shown (all)');
  });
});

describe('AnalyticsPage', () => {
  it('shows the summary, exact table totals and a note without enough history', async () => {
    handler = (_m, url) => {
      const path = url.split('?')[0];
      if (path === '/api/analytics/summary') return { status: 200, body: { date_from: 'x', date_to: 'y', filters: {}, figures: figures('0.3000001', 3) } };
      if (path === '/api/analytics/by-user')
        return { status: 200, body: { groups: [{ user_id: 'alice', figures: figures('0.1') }, { user_id: 'bob', figures: figures('0.2000001', 2) }] } };
      if (path === '/api/analytics/trends')
        return { status: 200, body: { period: 'daily', date_from: 'x', date_to: 'y', buckets: [{ start: '2026-12-04', end: '2026-12-04', figures: figures('0.3000001', 3) }] } };
      if (path.startsWith('/api/analytics/')) return { status: 200, body: { groups: [] } };
      if (path === '/api/forecasts') return { status: 422, body: { code: 'insufficient_history', message: 'need 14 days, have 1' } };
      return undefined;
    };
    render(<AnalyticsPage />);
    await waitFor(() => expect(screen.getByTestId('analytics-total-cost').textContent).toBe('$0.3000001'));
    await waitFor(() => expect(screen.getByTestId('analytics-by-user-sum').getAttribute('data-amount'), 'exact sum of the rows').toBe('0.3000001'));
    expect(screen.getByTestId('analytics-success-rate').textContent).toBe('100%');
    await waitFor(() => expect(screen.getByTestId('analytics-forecast-note').getAttribute('data-code')).toBe('insufficient_history'));
    const summaryCall = calls.find((c) => c.url.startsWith('/api/analytics/summary'))!;
    expect(summaryCall.url, 'the default range is 30 days').toMatch(/date_from=\d{4}-\d\d-\d\d&date_to=\d{4}-\d\d-\d\d$/);

    fireEvent.change(screen.getByTestId('analytics-filter-provider'), { target: { value: 'openai' } });
    fireEvent.click(screen.getByTestId('analytics-apply'));
    await waitFor(() => expect(calls.some((c) => c.url.startsWith('/api/forecasts?scope=provider%3Aopenai')), 'forecast of the filtered provider').toBe(true));
    expect(calls.some((c) => c.url.includes('/api/analytics/by-model?') && c.url.includes('provider=openai')), 'filters reach the breakdowns').toBe(true);
  });
});

describe('AnalyticsPage for a user key', () => {
  it('does not ask for forecasts (admin-only) and says why', async () => {
    handler = (_m, url) => {
      const path = url.split('?')[0];
      if (path === '/api/analytics/summary') return { status: 200, body: { date_from: 'x', date_to: 'y', figures: figures('0.1') } };
      if (path === '/api/analytics/trends') return { status: 200, body: { period: 'daily', date_from: 'x', date_to: 'y', buckets: [] } };
      if (path.startsWith('/api/analytics/')) return { status: 200, body: { groups: [] } };
      return undefined;
    };
    render(
      <SessionContext.Provider value={{ mode: 'token', caller: 'user', userId: 'bob', keyId: null }}>
        <AnalyticsPage />
      </SessionContext.Provider>,
    );
    await waitFor(() => expect(screen.getByTestId('analytics-forecast-note').getAttribute('data-code')).toBe('admin_only'));
    await waitFor(() => expect(calls.some((c) => c.url.startsWith('/api/analytics/summary'))).toBe(true));
    expect(calls.some((c) => c.url.startsWith('/api/forecasts'))).toBe(false);
    // The user filter is fixed to the signed-in user.
    expect(calls.filter((c) => c.url.startsWith('/api/analytics/')).every((c) => c.url.includes('user_id=bob'))).toBe(true);
    expect((screen.getByTestId('analytics-filter-user_id') as HTMLInputElement).disabled).toBe(true);
  });
});

describe('BudgetsPage', () => {
  const budget: AlertBudget = {
    budget_id: 'b1',
    name: 'team',
    amount: '100',
    period: 'monthly',
    scope: { kind: 'provider', value: 'openai' },
    thresholds: [50, 80, 100],
    emails: ['ops@example.com'],
    webhook_url: null,
    enabled: true,
    created_at: '2026-12-01T00:00:00Z',
    updated_at: '2026-12-01T00:00:00Z',
  };

  it('lists budgets with their bar and shows server errors by code', async () => {
    const budgets = [budget];
    handler = (method, url) => {
      if (url === '/api/models') return { status: 200, body: [] };
      if (url === '/api/budgets' && method === 'GET') return { status: 200, body: { budgets } };
      if (url === '/api/budgets' && method === 'POST') return { status: 400, body: { code: 'invalid_amount', message: 'amount must be positive' } };
      if (url === '/api/budgets/check')
        return {
          status: 200,
          body: {
            checked_at: '2026-12-04T10:00:00Z',
            budgets: [
              {
                budget,
                window_start: '2026-12-01T00:00:00Z',
                window_end: '2027-01-01T00:00:00Z',
                spent: '85.5',
                percent_used: '85.5',
                remaining: '14.5',
                projected_spend: '250',
                projected_breach_date: '2026-12-10',
                thresholds_fired: ['50', '80'],
                status: 'warning',
              },
            ],
          },
        };
      if (url.startsWith('/api/alerts/deliveries')) return { status: 200, body: { deliveries: [] } };
      if (url === '/api/budgets/b1/test_alert')
        return { status: 200, body: { deliveries: [{ delivery_id: 'd1', source: 'test', subject_id: 'b1', alert_kind: 'test', channel: 'email', target: 'ops@example.com', status: 'pending', attempts: 0, last_error: null, created_at: 'x', updated_at: 'x' }] } };
      return undefined;
    };
    render(<BudgetsPage />);
    const card = await screen.findByTestId('alert-budget');
    await waitFor(() => expect(within(card).getByTestId('alert-budget-bar').getAttribute('data-width')).toBe('85.5'));
    const marks = within(card).getAllByTestId('alert-budget-threshold');
    expect(marks.map((m) => m.className), 'fired thresholds are marked').toEqual(['threshold fired', 'threshold fired', 'threshold']);
    expect(within(card).getByTestId('alert-budget-breach').textContent).toContain('2026-12-10');
    expect(card.getAttribute('data-status')).toBe('warning');

    fireEvent.click(within(card).getByTestId('alert-budget-test'));
    await waitFor(() => expect(within(card).getByTestId('alert-budget-test-result').textContent).toContain('email ops@example.com pending'));

    fireEvent.click(screen.getByTestId('new-budget-button'));
    fireEvent.change(screen.getByTestId('budget-form-name'), { target: { value: 'x' } });
    fireEvent.change(screen.getByTestId('budget-form-amount'), { target: { value: '-1' } });
    fireEvent.click(screen.getByTestId('budget-form-submit'));
    const err = await screen.findByTestId('budget-form-error');
    expect(err.getAttribute('data-code'), 'the server code').toBe('invalid_amount');
    expect(err.textContent).toContain('amount must be positive');
    expect(calls.find((c) => c.method === 'POST' && c.url === '/api/budgets')?.body, 'the amount is sent as the typed string').toMatchObject({ amount: '-1', thresholds: [50, 80, 100] });
  });
});

describe('SettingsTab price freshness', () => {
  it('lists stale current prices and marks one verified', async () => {
    const versions: PriceVersion[] = [
      { id: 'p1', model: 'gpt-4o-mini', kind: 'input_tokens', price: '0.15', effective_from: '2024-01-01T00:00:00Z', effective_to: null, is_current: true, verified_at: null, stale: true },
      { id: 'p2', model: 'gpt-4o-mini', kind: 'output_tokens', price: '0.60', effective_from: '2024-01-01T00:00:00Z', effective_to: null, is_current: true, verified_at: '2026-12-01T00:00:00Z', stale: false },
    ];
    handler = (method, url) => {
      if (method === 'GET' && url.startsWith('/api/prices')) return { status: 200, body: versions };
      if (method === 'POST' && url === '/api/prices/p1/verify') {
        versions[0] = { ...versions[0], verified_at: '2026-12-04T10:00:00Z', stale: false };
        return { status: 200, body: versions[0] };
      }
      return undefined;
    };
    const models = [{ model_id: 1, name: 'gpt-4o-mini', provider: 'openai', description: null, is_active: true, is_default: true, simulated: false, prices: [] }];
    render(<SettingsTab models={models} newThreadModel="gpt-4o-mini" onNewThreadModel={() => {}} threadModel={null} onChanged={() => {}} />);
    await waitFor(() => expect(screen.getByTestId('price-freshness').getAttribute('data-stale-count')).toBe('1'));
    const row = screen.getByTestId('stale-price-row');
    expect(row.getAttribute('data-version-id')).toBe('p1');
    await waitFor(() => expect(screen.getAllByTestId('price-stale').length, 'the stale version is marked in the price table').toBe(1));
    fireEvent.click(within(row).getByTestId('price-verify'));
    await waitFor(() => expect(screen.getByTestId('price-freshness').getAttribute('data-stale-count')).toBe('0'));
    expect(screen.getByTestId('price-freshness-ok').textContent).toContain('All 2 current prices');
    expect(calls.some((c) => c.method === 'POST' && c.url === '/api/prices/p1/verify'), 'verify was called').toBe(true);
  });
});
