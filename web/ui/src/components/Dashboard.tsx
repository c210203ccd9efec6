// The live cost dashboard at /dashboard, fed by GET /api/dashboard/stream (server-sent events,
// read with fetch so the request carries the signed-in credential; the server scopes the
// snapshot to a user's key).

import { useEffect, useReducer, useState } from 'react';
import { applySnapshot, applyUsage, initialDash, type DashState } from '../dashboardState';
import { followEventStream, type StreamState } from '../eventStream';
import { errorText, shortId } from '../format';
import { formatUsd } from '../money';
import type { DashboardUsage, Snapshot } from '../types';
import { Freshness } from './Freshness';
import { KindCosts } from './KindCosts';
import { MessageBreakdown } from './MessageBreakdown';
import { ModelCosts } from './ModelCosts';
import { RecentEvents } from './RecentEvents';
import { TopCosts } from './TopCosts';
import { UsageOverTime } from './UsageOverTime';

type Action = { type: 'snapshot'; snap: Snapshot; now: number } | { type: 'usage'; ev: DashboardUsage; now: number };

function reduce(s: DashState, a: Action): DashState {
  return a.type === 'snapshot' ? applySnapshot(s, a.snap, a.now) : applyUsage(s, a.ev, a.now);
}

interface Props {
  streamUrl?: string;
}

export function Dashboard({ streamUrl = '/api/dashboard/stream' }: Props) {
  const [state, dispatch] = useReducer(reduce, initialDash);
  const [conn, setConn] = useState<StreamState>('connecting');
  const [connError, setConnError] = useState<string | null>(null);
  const [topN, setTopN] = useState(10);

  useEffect(
    () =>
      followEventStream({
        url: streamUrl,
        onState: (st, err) => {
          setConn(st);
          setConnError(err && st === 'closed' ? errorText(err) : null);
        },
        onEvent: (ev) => {
          try {
            if (ev.event === 'snapshot') dispatch({ type: 'snapshot', snap: JSON.parse(ev.data) as Snapshot, now: Date.now() });
            else if (ev.event === 'usage') dispatch({ type: 'usage', ev: JSON.parse(ev.data) as DashboardUsage, now: Date.now() });
          } catch {
            // ignore a malformed frame; the next snapshot replaces it
          }
        },
      }),
    [streamUrl],
  );

  const s = state.snapshot;
  return (
    <main className="page dashboard" data-testid="dashboard">
      <div className="dash-head">
        <h2>Live costs</h2>
        <span className={`conn conn-${conn}`} data-testid="dashboard-connection">
          {conn}
        </span>
        <Freshness receivedAt={state.receivedAt} lastEventAt={s?.last_event_at ?? null} />
        <label className="small topn">
          top
          <select value={topN} onChange={(e) => setTopN(Number(e.target.value))} data-testid="dashboard-top-n">
            {[5, 10, 20].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </div>

      <div className="stat-row">
        <div className="stat card">
          <span className="muted small">Total cost</span>
          <strong className="money big" data-testid="dashboard-total-cost" data-amount={s?.total_cost ?? ''}>
            {s ? formatUsd(s.total_cost) : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Usage events</span>
          <strong className="big" data-testid="dashboard-event-count">
            {s ? s.event_count : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Events per second</span>
          <strong className="big" data-testid="dashboard-events-per-second">
            {s ? s.events_per_second : '—'}
          </strong>
        </div>
        <div className="stat card">
          <span className="muted small">Events seen live</span>
          <strong className="big">{state.usageEvents}</strong>
        </div>
      </div>

      {connError && (
        <p className="error" role="alert" data-testid="dashboard-error">
          The live stream stopped: {connError}
        </p>
      )}
      {!s && !connError && <p className="muted">Waiting for the first snapshot…</p>}
      {s && (
        <div className="dash-grid">
          <TopCosts
            title="Cost per thread"
            testId="dashboard-by-thread"
            rows={s.by_thread.slice(0, topN).map((t) => ({ key: t.thread_id, label: t.thread_id, sub: t.user_id, cost: t.cost, events: t.events }))}
            shortKeys
          />
          <TopCosts
            title="Cost per user"
            testId="dashboard-by-user"
            rows={s.by_user.slice(0, topN).map((u) => ({ key: u.user_id, label: u.user_id, cost: u.cost, events: u.events }))}
          />
          {s.by_key && s.by_key.length > 0 && (
            <TopCosts
              title="Spend per key"
              testId="dashboard-by-key"
              rows={s.by_key.slice(0, topN).map((k) => ({
                key: k.key_id,
                label: k.name || shortId(k.key_id),
                sub: [k.name ? shortId(k.key_id) : '', k.user_id ?? ''].filter(Boolean).join(' · ') || undefined,
                cost: k.cost,
                events: k.events ?? k.requests ?? 0,
              }))}
            />
          )}
          <MessageBreakdown threads={s.by_thread} />
          <UsageOverTime buckets={state.buckets} kinds={state.kinds} />
          <KindCosts kinds={s.by_kind} />
          <ModelCosts models={s.by_model} />
          <RecentEvents events={state.recent} />
        </div>
      )}
    </main>
  );
}
