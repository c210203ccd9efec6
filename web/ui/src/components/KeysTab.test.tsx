import { act, cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { BudgetView, KeyView, Model } from '../types';
import { SessionContext } from '../session';
import { KeysTab } from './KeysTab';

const KEY_ID = '0192f000-0000-7000-8000-00000000c001';
const SECRET = 'tk-0123456789ab-s3cr3ts3cr3ts3cr3t';

const MODELS: Model[] = [
  { model_id: 1, name: 'claude-3-5-haiku-20241022', provider: 'anthropic', description: null, is_active: true, is_default: true, simulated: false, prices: [] },
  { model_id: 2, name: 'gpt-4o-mini', provider: 'openai', description: null, is_active: true, is_default: false, simulated: false, prices: [] },
];

function budget(over: Partial<BudgetView> = {}): BudgetView {
  return {
    budget_id: 'b1',
    scope: 'key',
    scope_id: KEY_ID,
    period: 'daily',
    max_budget: '5',
    alert_threshold: '0.8',
    enabled: true,
    timezone: 'UTC',
    spent: '1.25',
    reserved: '0.5',
    remaining: '3.25',
    period_start: '2025-01-02T00:00:00Z',
    period_end: '2999-01-03T00:00:00Z',
    alert_state: 'ok',
    ...over,
  };
}

function key(over: Partial<KeyView> = {}): KeyView {
  return {
    key_id: KEY_ID,
    public_id: '0123456789ab',
    user_id: 'alice',
    name: 'backend',
    allowed_models: ['gpt-4o-mini'],
    expires_at: null,
    rpm_limit: 60,
    created_at: '2025-01-02T03:04:05Z',
    revoked_at: null,
    status: 'active',
    budgets: [budget()],
    ...over,
  };
}

type Handler = (method: string, url: string, body: unknown) => { status: number; body?: unknown };
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
      const r = handler(method, url, body);
      return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status });
    }),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

/** A server with `keys` (mutated by create/revoke/rotate/budget calls). */
function server(keys: KeyView[]): Handler {
  return (method, url, body) => {
    if (method === 'GET' && url === '/api/keys?user_id=alice') return { status: 200, body: keys };
    if (method === 'POST' && url === '/api/keys') {
      const b = body as { name: string; allowed_models: string[] | null; budgets: { max_budget: string; period: string; alert_threshold: string }[] };
      const k = key({ name: b.name, allowed_models: b.allowed_models, budgets: b.budgets.map((x) => budget({ max_budget: x.max_budget, spent: '0', reserved: '0', remaining: x.max_budget })) });
      keys.push(k);
      return { status: 201, body: { ...k, key: SECRET } };
    }
    if (method === 'GET' && url === `/api/billing/budget/${KEY_ID}`) return { status: 200, body: { key_id: KEY_ID, budgets: keys[0]?.budgets ?? [] } };
    if (method === 'GET' && url.startsWith(`/api/billing/spend/${KEY_ID}?period=`)) {
      return {
        status: 200,
        body: {
          key_id: KEY_ID,
          period: new URL(url, 'http://x').searchParams.get('period'),
          period_start: '2025-01-01T00:00:00Z',
          period_end: '2025-02-01T00:00:00Z',
          total_cost: '1.7500001',
          total_requests: 3,
          total_tokens: 12345,
          by_model: { 'gpt-4o-mini': '0.0000001', 'claude-3-5-haiku-20241022': '1.75' },
          by_provider: { openai: '0.0000001', anthropic: '1.75' },
        },
      };
    }
    if (method === 'POST' && url === `/api/keys/${KEY_ID}/revoke`) {
      keys[0] = { ...keys[0], status: 'revoked', revoked_at: '2025-01-02T05:00:00Z' };
      return { status: 200, body: keys[0] };
    }
    if (method === 'POST' && url === `/api/keys/${KEY_ID}/rotate`) return { status: 200, body: { ...keys[0], key: 'tk-0123456789ab-rotated' } };
    if (method === 'PUT' && url === `/api/billing/budget/${KEY_ID}`) return { status: 200, body: budget() };
    return { status: 404, body: { code: 'route_not_found', message: `no route for ${method} ${url}` } };
  };
}

describe('KeysTab', () => {
  it('lists the user keys with status, public id and models', async () => {
    handler = server([key(), key({ key_id: 'k2', public_id: 'fedcba987654', name: 'old', status: 'revoked', revoked_at: '2025-01-01T00:00:00Z', allowed_models: null, created_at: '2025-01-01T00:00:00Z' })]);
    render(<KeysTab userId="alice" models={MODELS} />);
    const rows = await screen.findAllByTestId('key-row');
    expect(rows.map((r) => r.getAttribute('data-status'))).toEqual(['active', 'revoked']);
    expect(rows[0].textContent).toContain('0123456789ab');
    expect(rows[0].textContent).toContain('gpt-4o-mini');
    expect(rows[0].textContent).toContain('never expires');
    expect(rows[1].textContent).toContain('all models');
  });

  it('creates a key with a budget, shows the secret once, then forgets it', async () => {
    const keys: KeyView[] = [];
    handler = server(keys);
    render(<KeysTab userId="alice" models={MODELS} />);
    await screen.findByText('No keys yet.');

    fireEvent.click(screen.getByTestId('new-key-button'));
    fireEvent.change(screen.getByTestId('key-form-name'), { target: { value: 'backend' } });
    fireEvent.click(screen.getByTestId('key-form-all-models'));
    fireEvent.click(within(screen.getByTestId('key-form-models')).getAllByTestId('key-form-model')[1]);
    fireEvent.click(screen.getByTestId('key-form-add-budget'));
    fireEvent.change(screen.getByTestId('budget-row-amount'), { target: { value: '5.00' } });
    await act(async () => fireEvent.click(screen.getByTestId('key-form-submit')));

    const post = calls.find((c) => c.method === 'POST' && c.url === '/api/keys');
    expect(post?.body).toEqual({
      user_id: 'alice',
      name: 'backend',
      allowed_models: ['gpt-4o-mini'],
      expires_at: null,
      rpm_limit: null,
      budgets: [{ max_budget: '5.00', period: 'daily', alert_threshold: '0.8', enabled: true, timezone: 'UTC' }],
    });
    expect((screen.getByTestId('key-secret-value') as HTMLInputElement).value).toBe(SECRET);
    expect(screen.getByTestId('key-secret').textContent).toContain('you will not see it again');
    await screen.findByTestId('key-row');
    expect(await screen.findByTestId('key-detail')).toBeTruthy();

    fireEvent.click(screen.getByTestId('key-secret-dismiss'));
    expect(screen.queryByTestId('key-secret')).toBeNull();
    expect(document.body.innerHTML).not.toContain(SECRET);
  });

  it('shows form problems without calling the server', async () => {
    handler = server([]);
    render(<KeysTab userId="alice" models={MODELS} />);
    await screen.findByText('No keys yet.');
    fireEvent.click(screen.getByTestId('new-key-button'));
    fireEvent.change(screen.getByTestId('key-form-name'), { target: { value: 'k' } });
    fireEvent.click(screen.getByTestId('key-form-add-budget'));
    fireEvent.change(screen.getByTestId('budget-row-amount'), { target: { value: '-1' } });
    await act(async () => fireEvent.click(screen.getByTestId('key-form-submit')));
    expect(screen.getByTestId('key-form-error').textContent).toMatch(/positive amount/);
    expect(calls.some((c) => c.method === 'POST')).toBe(false);
  });

  it('shows the server error message', async () => {
    const base = server([]);
    handler = (m, u, b) => (m === 'POST' && u === '/api/keys' ? { status: 400, body: { code: 'unknown_model', message: '"x" is not in the catalogue' } } : base(m, u, b));
    render(<KeysTab userId="alice" models={MODELS} />);
    await screen.findByText('No keys yet.');
    fireEvent.click(screen.getByTestId('new-key-button'));
    fireEvent.change(screen.getByTestId('key-form-name'), { target: { value: 'k' } });
    await act(async () => fireEvent.click(screen.getByTestId('key-form-submit')));
    expect(screen.getByTestId('key-form-error').textContent).toBe('"x" is not in the catalogue (unknown_model)');
  });

  it('opens a key: budget bars, spend by model and provider, rotate and revoke after confirming', async () => {
    const keys = [key()];
    handler = server(keys);
    render(<KeysTab userId="alice" models={MODELS} />);
    fireEvent.click(await screen.findByTestId('key-row'));
    const detail = await screen.findByTestId('key-detail');

    const bar = await within(detail).findByTestId('key-budget-bar');
    expect([bar.getAttribute('data-spent-pct'), bar.getAttribute('data-reserved-pct'), bar.getAttribute('data-remaining-pct')]).toEqual(['25', '10', '65']);
    expect(within(detail).getByTestId('key-budget-spent').textContent).toBe('$1.25');
    expect(within(detail).getByTestId('key-budget-remaining').textContent).toBe('$3.25');
    expect(within(detail).getByTestId('key-budget').textContent).toMatch(/resets in/);

    await waitFor(() => expect(within(detail).getByTestId('key-spend-total').textContent).toBe('$1.7500001'));
    const models = within(detail).getAllByTestId('key-spend-model-row');
    expect(models.map((r) => r.getAttribute('data-key'))).toEqual(['claude-3-5-haiku-20241022', 'gpt-4o-mini']);
    expect(models[1].textContent).toContain('$0.0000001');
    expect(within(detail).getAllByTestId('key-spend-provider-row')[0].textContent).toContain('anthropic');
    fireEvent.change(within(detail).getByTestId('key-spend-period'), { target: { value: 'daily' } });
    await waitFor(() => expect(calls.some((c) => c.url === `/api/billing/spend/${KEY_ID}?period=daily`)).toBe(true));

    // Rotate: asks first, then shows the new secret once.
    fireEvent.click(within(detail).getByTestId('key-rotate'));
    expect(calls.some((c) => c.url.endsWith('/rotate'))).toBe(false);
    await act(async () => fireEvent.click(within(detail).getByTestId('key-rotate-confirm')));
    expect((screen.getByTestId('key-secret-value') as HTMLInputElement).value).toBe('tk-0123456789ab-rotated');

    // Revoke: cancel does nothing, confirm revokes.
    fireEvent.click(within(detail).getByTestId('key-revoke'));
    fireEvent.click(within(detail).getByTestId('key-revoke-cancel'));
    expect(calls.some((c) => c.url.endsWith('/revoke'))).toBe(false);
    fireEvent.click(within(detail).getByTestId('key-revoke'));
    await act(async () => fireEvent.click(within(detail).getByTestId('key-revoke-confirm')));
    await waitFor(() => expect(screen.getByTestId('key-row').getAttribute('data-status')).toBe('revoked'));
    expect(screen.queryByTestId('key-revoke')).toBeNull();
  });

  it('edits a budget with the threshold sent as an exact fraction', async () => {
    handler = server([key()]);
    render(<KeysTab userId="alice" models={MODELS} />);
    fireEvent.click(await screen.findByTestId('key-row'));
    const detail = await screen.findByTestId('key-detail');
    fireEvent.click(await within(detail).findByTestId('key-budget-edit'));
    const form = within(detail).getByTestId('key-budget-form');
    expect((within(form).getByTestId('budget-row-threshold') as HTMLInputElement).value).toBe('80');
    expect((within(form).getByTestId('budget-row-period') as HTMLSelectElement).disabled).toBe(true);
    fireEvent.change(within(form).getByTestId('budget-row-amount'), { target: { value: '7.5' } });
    fireEvent.change(within(form).getByTestId('budget-row-threshold'), { target: { value: '12.5' } });
    await act(async () => fireEvent.click(within(detail).getByTestId('key-budget-save')));
    const put = calls.find((c) => c.method === 'PUT');
    expect(put?.body).toEqual({ max_budget: '7.5', period: 'daily', alert_threshold: '0.125', enabled: true, timezone: 'UTC' });
  });

  it('says clearly when the server has no keys API', async () => {
    handler = () => ({ status: 404, body: { code: 'route_not_found', message: 'no route for GET /api/keys' } });
    render(<KeysTab userId="alice" models={MODELS} />);
    expect((await screen.findByTestId('keys-unavailable')).textContent).toContain('GET /api/keys answered 404');
    expect((screen.getByTestId('new-key-button') as HTMLButtonElement).disabled).toBe(true);
  });

  it("a user's key sees its keys and budget bars, but no create or budget actions (admin-only)", async () => {
    handler = server([key()]);
    render(
      <SessionContext.Provider value={{ mode: 'token', caller: 'user', userId: 'alice', keyId: KEY_ID }}>
        <KeysTab userId="alice" models={MODELS} />
      </SessionContext.Provider>,
    );
    const row = await screen.findByTestId('key-row');
    expect(screen.queryByTestId('new-key-button')).toBeNull();
    expect(screen.getByTestId('keys-admin-note').textContent).toContain('admin');
    fireEvent.click(row);
    const detail = await screen.findByTestId('key-detail');
    await waitFor(() => expect(within(detail).getAllByTestId('key-budget-bar').length).toBe(1));
    expect(within(detail).queryByTestId('key-budget-edit')).toBeNull();
    expect(within(detail).queryByTestId('key-budget-add')).toBeNull();
    expect(within(detail).queryByTestId('key-budget-remove')).toBeNull();
    expect(within(detail).getByTestId('key-signed-in-with').textContent).toContain('signs you out');
  });
});
