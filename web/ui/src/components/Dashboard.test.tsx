import { act, cleanup, render, screen, waitFor, within } from '@testing-library/react';
import { onUnauthorized, resetCredentialCache, setCredential } from '../auth';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { THREAD_ID, snapshot } from '../fixtures';
import { Dashboard } from './Dashboard';

/** A dashboard stream served to the component's fetch: each emit sends one SSE frame. */
class FakeStream {
  static instances: FakeStream[] = [];
  private ctl: ReadableStreamDefaultController<Uint8Array> | null = null;
  readonly body: ReadableStream<Uint8Array>;
  constructor(
    public url: string,
    public headers: Record<string, string>,
  ) {
    this.body = new ReadableStream<Uint8Array>({ start: (c) => void (this.ctl = c) });
    FakeStream.instances.push(this);
  }
  /** Send one event and let the reader get to it. */
  async emit(type: string, data: unknown) {
    this.ctl?.enqueue(new TextEncoder().encode(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`));
    for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
  }
}

const METRICS = {
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
};

/** What the stream URL answers instead of a stream (e.g. 401), when set. */
let streamRefusal: { status: number; body: unknown } | null;

beforeEach(() => {
  FakeStream.instances = [];
  streamRefusal = null;
  resetCredentialCache();
  window.sessionStorage.clear();
  window.localStorage.clear();
  vi.stubGlobal(
    'fetch',
    vi.fn().mockImplementation(async (url: string, init?: RequestInit) => {
      if (url === '/api/dashboard/stream') {
        if (streamRefusal) return new Response(JSON.stringify(streamRefusal.body), { status: streamRefusal.status });
        const st = new FakeStream(url, (init?.headers ?? {}) as Record<string, string>);
        return new Response(st.body, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
      }
      return new Response(JSON.stringify(METRICS), { status: 200 });
    }),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  resetCredentialCache();
});

/** The stream the component opened (fetch resolves on a later tick). */
async function stream(n = 0): Promise<FakeStream> {
  await waitFor(() => expect(FakeStream.instances.length).toBeGreaterThan(n));
  return FakeStream.instances[n];
}

describe('Dashboard', () => {
  it('renders a snapshot from the stream with exact money strings', async () => {
    render(<Dashboard />);
    const es = await stream();
    expect(es.url).toBe('/api/dashboard/stream');
    expect(es.headers.Authorization).toBeUndefined();
    expect(screen.getByTestId('dashboard-updated').textContent).toBe('no data yet');

    await act(() => es.emit('snapshot', snapshot()));

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
    expect(vi.mocked(fetch).mock.calls.map((c) => c[0])).toContain(`/api/billing/metrics/thread/${THREAD_ID}`);
  });

  it('updates on a new snapshot and counts usage events', async () => {
    render(<Dashboard />);
    const es = await stream();
    await act(() => es.emit('snapshot', snapshot()));
    await act(() =>
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
    await act(() => es.emit('snapshot', snapshot({ total_cost: '12345.0000201' })));
    expect(screen.getByTestId('dashboard-total-cost').textContent).toBe('$12,345.0000201');
    expect(screen.getByTestId('dashboard-recent-row').textContent).toContain('$0.00002');
  });

  it('shows spend per key when the snapshot has it, and hides the panel otherwise', async () => {
    render(<Dashboard />);
    const es = await stream();
    await act(() => es.emit('snapshot', snapshot()));
    expect(screen.queryByTestId('dashboard-by-key')).toBeNull();
    await act(() => es.emit('snapshot', snapshot({ by_key: [] })));
    expect(screen.queryByTestId('dashboard-by-key')).toBeNull();

    await act(() =>
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

  it('reads the stream with fetch and sends the signed-in credential as a header, never in the URL', async () => {
    setCredential('tk-0123456789ab-' + 'a'.repeat(64), false);
    render(<Dashboard />);
    const es = await stream();
    expect(es.url).toBe('/api/dashboard/stream');
    expect(es.headers.Authorization).toBe('Bearer tk-0123456789ab-' + 'a'.repeat(64));
    await act(() => es.emit('snapshot', snapshot()));
    expect(screen.getByTestId('dashboard-connection').textContent).toBe('live');
    expect(screen.getByTestId('dashboard-total-cost').textContent).toBe('$12,345.0000001');
  });

  it('a 401 on the stream signals sign-out and stops (no reconnect loop)', async () => {
    setCredential('tk-0123456789ab-' + 'b'.repeat(64), false);
    streamRefusal = { status: 401, body: { code: 'invalid_credentials', message: 'key revoked' } };
    const seen: string[] = [];
    const off = onUnauthorized((e) => seen.push(e.code));
    render(<Dashboard />);
    await waitFor(() => expect(screen.getByTestId('dashboard-connection').textContent).toBe('closed'));
    expect(seen).toEqual(['invalid_credentials']);
    expect(screen.getByTestId('dashboard-error').textContent).toContain('invalid_credentials');
    await new Promise((r) => setTimeout(r, 50));
    expect(vi.mocked(fetch).mock.calls.filter((c) => c[0] === '/api/dashboard/stream')).toHaveLength(1);
    off();
  });

  it('a 403 on the stream stops with the server code shown', async () => {
    streamRefusal = { status: 403, body: { code: 'forbidden', message: 'not yours' } };
    render(<Dashboard />);
    await waitFor(() => expect(screen.getByTestId('dashboard-error').textContent).toContain('forbidden'));
    expect(screen.getByTestId('dashboard-connection').textContent).toBe('closed');
  });
});
