import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { resetCredentialCache, setCredential } from './auth';
import { followEventStream, type StreamState } from './eventStream';
import type { SseEvent } from './sse';

/** Each fetch answers the next scripted reply: a status with a JSON body, or a whole SSE text. */
type Scripted = { status: number; body?: unknown } | { sse: string };
let script: Scripted[];
let seenHeaders: Record<string, string>[];

beforeEach(() => {
  script = [];
  seenHeaders = [];
  window.sessionStorage.clear();
  resetCredentialCache();
  vi.stubGlobal(
    'fetch',
    vi.fn(async (_url: string, init?: RequestInit) => {
      seenHeaders.push((init?.headers ?? {}) as Record<string, string>);
      const next = script.shift();
      if (!next) return new Promise<Response>(() => {}); // hang: no more scripted replies
      if ('sse' in next) return new Response(next.sse, { status: 200, headers: { 'Content-Type': 'text/event-stream' } });
      return new Response(JSON.stringify(next.body ?? {}), { status: next.status });
    }),
  );
});
afterEach(() => {
  vi.unstubAllGlobals();
  resetCredentialCache();
});

function follow(retryMs = 5) {
  const states: string[] = [];
  const events: SseEvent[] = [];
  const stop = followEventStream({
    url: '/api/dashboard/stream',
    retryMs,
    maxRetryMs: 40,
    onEvent: (e) => events.push(e),
    onState: (s: StreamState, err) => states.push(err ? `${s}:${err.code}` : s),
  });
  return { states, events, stop };
}

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 2));
  expect(cond(), what).toBe(true);
};

describe('followEventStream', () => {
  it('delivers events, and reconnects after the stream ends or the server fails (5xx)', async () => {
    script = [{ sse: 'event: snapshot\ndata: {"n":1}\n\n' }, { status: 503, body: { code: 'unavailable', message: 'busy' } }, { sse: 'event: snapshot\ndata: {"n":2}\n\n' }];
    const f = follow();
    await until(() => f.events.length === 2, 'both snapshots arrive across reconnects');
    f.stop();
    expect(f.events.map((e) => JSON.parse(e.data).n)).toEqual([1, 2]);
    expect(f.states.slice(0, 5)).toEqual(['connecting', 'live', 'reconnecting', 'reconnecting:unavailable', 'live']);
  });

  it('sends the credential on every (re)connection', async () => {
    setCredential(`tk-0123456789ab-${'a'.repeat(64)}`, false);
    script = [{ sse: ': hi\n\n' }, { sse: ': again\n\n' }];
    const f = follow();
    await until(() => seenHeaders.length >= 3, 'reconnected twice');
    f.stop();
    expect(seenHeaders.slice(0, 2).map((h) => h.Authorization)).toEqual([`Bearer tk-0123456789ab-${'a'.repeat(64)}`, `Bearer tk-0123456789ab-${'a'.repeat(64)}`]);
  });

  it('stops for good on a 4xx (retrying would get the same answer)', async () => {
    script = [{ status: 403, body: { code: 'forbidden', message: 'no' } }, { sse: 'event: snapshot\ndata: {}\n\n' }];
    const f = follow();
    await until(() => f.states.includes('closed:forbidden'), 'closed with the code');
    await new Promise((r) => setTimeout(r, 30));
    expect(vi.mocked(fetch)).toHaveBeenCalledTimes(1);
    expect(f.events).toEqual([]);
  });

  it('stop() ends the retries', async () => {
    script = [{ status: 500, body: { code: 'internal', message: 'x' } }];
    const f = follow(20);
    await until(() => f.states.includes('reconnecting:internal'), 'a retry is scheduled');
    f.stop();
    await new Promise((r) => setTimeout(r, 60));
    expect(vi.mocked(fetch)).toHaveBeenCalledTimes(1);
  });
});
