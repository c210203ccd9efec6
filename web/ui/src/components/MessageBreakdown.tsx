import { useEffect, useState } from 'react';
import { Bar, BarChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from 'recharts';
import { threadMetrics } from '../api';
import { chartNumber } from '../chart';
import { errorText, shortId } from '../format';
import { formatUsd } from '../money';
import type { Metrics, Snapshot } from '../types';

/** Cost per message of one chosen thread (GET /api/billing/metrics/thread/{id} → by_message). */
export function MessageBreakdown({ threads }: { threads: Snapshot['by_thread'] }) {
  const [chosen, setChosen] = useState<string>('');
  const [metrics, setMetrics] = useState<Metrics | null>(null);
  const [error, setError] = useState<string | null>(null);
  const threadId = chosen || threads[0]?.thread_id || '';
  // Refetch whenever that thread's cost in the snapshot changes.
  const costKey = threads.find((t) => t.thread_id === threadId)?.cost ?? '';

  useEffect(() => {
    if (!threadId) return;
    let live = true;
    threadMetrics(threadId)
      .then((m) => {
        if (live) {
          setMetrics(m);
          setError(null);
        }
      })
      .catch((e) => live && setError(errorText(e)));
    return () => {
      live = false;
    };
  }, [threadId, costKey]);

  const rows = metrics && metrics.thread_id === threadId ? Object.entries(metrics.metrics.by_message) : [];
  const data = rows.map(([id, amount], i) => ({ name: `#${i + 1}`, id, value: chartNumber(amount), costText: amount }));

  return (
    <section className="card dash-card" data-testid="dashboard-message-breakdown">
      <div className="row between">
        <h4>Cost per message</h4>
        <select value={threadId} onChange={(e) => setChosen(e.target.value)} data-testid="dashboard-thread-select">
          {threads.map((t) => (
            <option key={t.thread_id} value={t.thread_id}>
              {shortId(t.thread_id)} · {t.user_id} · {formatUsd(t.cost)}
            </option>
          ))}
        </select>
      </div>
      {error && <p className="error">{error}</p>}
      {!threadId && <p className="muted">No threads yet.</p>}
      {rows.length > 0 && (
        <>
          <div className="chart" style={{ height: 160 }}>
            <ResponsiveContainer width="100%" height="100%">
              <BarChart data={data} margin={{ left: 0, right: 8, top: 4, bottom: 4 }}>
                <XAxis dataKey="name" tick={{ fontSize: 11 }} />
                <YAxis hide />
                <Tooltip formatter={(_v, _n, item) => [formatUsd((item?.payload as { costText?: string })?.costText), 'cost']} />
                <Bar dataKey="value" fill="#ff8a3d" isAnimationActive={false} />
              </BarChart>
            </ResponsiveContainer>
          </div>
          <table className="cost-table">
            <tbody>
              {rows.map(([id, amount], i) => (
                <tr key={id} data-testid="dashboard-message-row">
                  <td>
                    #{i + 1} <code title={id}>{shortId(id)}</code>
                  </td>
                  <td className="num money" data-amount={amount}>
                    {formatUsd(amount)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
