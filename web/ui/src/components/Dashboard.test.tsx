import { act, cleanup, render, screen, within } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { THREAD_ID, snapshot } from '../fixtures';
import { Dashboard } from './Dashboard';

class FakeEventSource {
  static instances: FakeEventSource[] = [];
  readyState = 0;
  onopen: (() => void) | null = null;
  onerror: (() => void) | null = null;
  private listeners = new Map<string, ((e: MessageEvent) => void)[]>();
  constructor(public url: string) {
    FakeEventSource.instances.push(this);
  }
  addEventListener(type: string, fn: (e: MessageEvent) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  removeEventListener(type: string, fn: (e: MessageEvent) => void) {
    this.listeners.set(type, (this.listeners.get(type) ?? []).filter((f) => f !== fn));
  }
  close() {
    this.readyState = 2;
  }
  emit(type: string, data: unknown) {
    for (const fn of this.listeners.get(type) ?? []) fn(new MessageEvent(type, { data: JSON.stringify(data) }));
  }
}

beforeEach(() => {
  FakeEventSource.instances = [];
  vi.stubGlobal('EventSource', FakeEventSource);
  vi.stubGlobal(
    'fetch',
    vi.fn().mockImplementation(async () =>
      new Response(
        JSON.stringify({
          user_id: 'alice',
          thread_id: THREAD_ID,
          model: 'claude-3-5-haiku-20241022',
          metrics: {
            total_cost: '12000.0000001',
            invoiced_cost: '0',
            uninvoiced_cost: '12000.0000001',
            by_kind: {},
            by_model: {},
            by_thread: {},
            by_message: { m1: '0.0000001', m2: '12000' },
            event_count: 2,
          },
        }),
        { status: 200 },
      ),
    ),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('Dashboard', () => {
  it('renders a snapshot from the stream with exact money strings', async () => {
    render(<Dashboard />);
    expect(FakeEventSource.instances).toHaveLength(1);
    const es = FakeEventSource.instances[0];
    expect(es.url).toBe('/api/dashboard/stream');
    expect(screen.getByTestId('dashboard-updated').textContent).toBe('no data yet');

    await act(async () => es.emit('snapshot', snapshot()));

    expect(screen.getByTestId('dashboard-total-cost').textContent).toBe('$12,345.0000001');
    expect(screen.getByTestId('dashboard-events-per-second').textContent).toBe('12.5');
    expect(screen.getByTestId('dashboard-event-count').textContent).toBe('42');
    expect(screen.getByTestId('dashboard-updated').textContent).toMatch(/^updated \d+\.\d s ago$/);
    expect(screen.getByTestId('dashboard-connection').textContent).toBe('live');

    const threads = screen.getAllByTestId('dashboard-by-thread-row');
    expect(threads).toHaveLength(2);
    expect(threads[0].textContent).toContain('$12,000.0000001');
    const users = screen.getAllByTestId('dashboard-by-user-row');
    expect(users.map((u) => u.getAttribute('data-key'))).toEqual(['alice', 'bob']);
    expect(users[1].textContent).toContain('$345.00');

    const kinds = screen.getAllByTestId('dashboard-kind-row');
    expect(kinds.map((k) => k.getAttribute('data-kind'))).toEqual(['input_tokens', 'output_tokens', 'images']);
    expect(kinds[1].textContent).toContain('1,000,000 tok');
    expect(within(screen.getByTestId('dashboard-resources')).getByText(/Images: 3 images/)).toBeTruthy();
    expect(screen.getByTestId('dashboard-model-row').textContent).toContain('$12,345.0000001');

    // Message-level breakdown of the top thread, fetched from the billing metrics.
    const rows = await screen.findAllByTestId('dashboard-message-row');
    expect(rows.map((r) => r.textContent)).toEqual([expect.stringContaining('$0.0000001'), expect.stringContaining('$12,000.00')]);
    expect(vi.mocked(fetch).mock.calls[0][0]).toBe(`/api/billing/metrics/thread/${THREAD_ID}`);
  });

  it('updates on a new snapshot and counts usage events', async () => {
    render(<Dashboard />);
    const es = FakeEventSource.instances[0];
    await act(async () => es.emit('snapshot', snapshot()));
    await act(async () =>
      es.emit('usage', {
        event_id: 'e1',
        user_id: 'alice',
        thread_id: THREAD_ID,
        message_id: 'm3',
        model: 'claude-3-5-haiku-20241022',
        occurred_at: new Date().toISOString(),
        committed_at: new Date().toISOString(),
        cost: { lines: [{ kind: 'output_tokens', unit: 'tokens', quantity: '5', unit_price: '4', price_version_id: 'v', amount: '0.00002' }], total: '0.00002' },
      }),
    );
    await act(async () => es.emit('snapshot', snapshot({ total_cost: '12345.0000201' })));
    expect(screen.getByTestId('dashboard-total-cost').textContent).toBe('$12,345.0000201');
    expect(screen.getByTestId('dashboard-recent-row').textContent).toContain('$0.00002');
  });

  it('shows spend per key when the snapshot has it, and hides the panel otherwise', async () => {
    render(<Dashboard />);
    const es = FakeEventSource.instances[0];
    await act(async () => es.emit('snapshot', snapshot()));
    expect(screen.queryByTestId('dashboard-by-key')).toBeNull();
    await act(async () => es.emit('snapshot', snapshot({ by_key: [] })));
    expect(screen.queryByTestId('dashboard-by-key')).toBeNull();

    await act(async () =>
      es.emit(
        'snapshot',
        snapshot({
          by_key: [
            { key_id: '0192f000-0000-7000-8000-00000000c001', name: 'backend', cost: '12.0000001', events: 7 },
            { key_id: '0192f000-0000-7000-8000-00000000c002', cost: '0.5', events: 1 },
          ],
        }),
      ),
    );
    const rows = screen.getAllByTestId('dashboard-by-key-row');
    expect(rows.map((r) => r.getAttribute('data-key'))).toEqual(['0192f000-0000-7000-8000-00000000c001', '0192f000-0000-7000-8000-00000000c002']);
    expect(rows[0].textContent).toContain('backend');
    expect(rows[0].textContent).toContain('7 ev');
    expect(rows[0].textContent).toContain('$12.0000001');
    expect(rows[1].textContent).toContain('0000c002');
    expect(within(screen.getByTestId('dashboard-by-key')).getByText('Spend per key')).toBeTruthy();
  });
});
