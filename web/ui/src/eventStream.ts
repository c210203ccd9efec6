// Follow a long-lived server-sent events stream (GET) with fetch, so the request carries the
// Authorization header (EventSource cannot send headers, and a credential never goes in a URL).
// Reconnects like EventSource does: after the stream ends or the network fails, waiting the
// server's `retry` (or RETRY_MS), doubling on repeated failures up to MAX_RETRY_MS. A 401 stops
// and reports it; other 4xx answers stop (retrying would get the same answer); 5xx retries.

import { answerError, ApiError, withAuth } from './api';
import { getCredential } from './auth';
import { readSseStream, type SseEvent } from './sse';

export type StreamState = 'connecting' | 'live' | 'reconnecting' | 'closed';

export interface FollowOptions {
  url: string;
  onEvent: (ev: SseEvent) => void;
  /** The connection state, with the error that caused `reconnecting` or `closed`, if any. */
  onState: (state: StreamState, error: ApiError | null) => void;
  retryMs?: number;
  maxRetryMs?: number;
}

export const RETRY_MS = 1000;
export const MAX_RETRY_MS = 30_000;

/** Start following `url`; returns the function that stops it. */
export function followEventStream(opts: FollowOptions): () => void {
  const ctl = new AbortController();
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const base = opts.retryMs ?? RETRY_MS;
  const max = opts.maxRetryMs ?? MAX_RETRY_MS;
  let serverRetry: number | null = null;
  let failures = 0;

  const later = (err: ApiError | null) => {
    if (stopped) return;
    opts.onState('reconnecting', err);
    const wait = Math.min(max, (serverRetry ?? base) * 2 ** Math.min(failures, 16));
    failures++;
    timer = setTimeout(connect, wait);
  };

  const connect = async () => {
    if (stopped) return;
    const sent = getCredential();
    let res: Response;
    try {
      res = await fetch(opts.url, { method: 'GET', headers: withAuth({ Accept: 'text/event-stream' }), signal: ctl.signal, cache: 'no-store' });
    } catch (e) {
      if (stopped) return;
      later(new ApiError(0, 'network', `cannot reach the server: ${(e as Error)?.message ?? e}`));
      return;
    }
    if (!res.ok) {
      const err = await answerError(res, sent);
      if (stopped) return;
      if (res.status >= 400 && res.status < 500) {
        opts.onState('closed', err);
        return;
      }
      later(err);
      return;
    }
    if (!res.body) {
      later(new ApiError(res.status, 'no_stream', 'the server sent no stream body'));
      return;
    }
    failures = 0;
    opts.onState('live', null);
    try {
      await readSseStream(res.body, (ev) => {
        if (stopped) return;
        if (ev.retry !== undefined) serverRetry = ev.retry;
        opts.onEvent(ev);
      });
      later(null);
    } catch (e) {
      if (stopped) return;
      later(new ApiError(0, 'network', `the stream broke: ${(e as Error)?.message ?? e}`));
    }
  };

  opts.onState('connecting', null);
  void connect();
  return () => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    ctl.abort();
  };
}
