import { formatTime, shortId } from '../format';
import { kindLabel } from '../kinds';
import { formatQuantity, formatUsd } from '../money';
import type { DashboardUsage } from '../types';

/** The latest priced usage events as they stream in. */
export function RecentEvents({ events }: { events: DashboardUsage[] }) {
  return (
    <section className="card dash-card wide" data-testid="dashboard-recent">
      <h4>Latest usage events</h4>
      {events.length === 0 ? (
        <p className="muted">None since this page opened.</p>
      ) : (
        <table className="cost-table">
          <tbody>
            {events.map((e) => (
              <tr key={e.event_id} data-testid="dashboard-recent-row">
                <td className="small">{formatTime(e.occurred_at)}</td>
                <td>{e.user_id}</td>
                <td>
                  <code title={e.thread_id ?? ''}>{shortId(e.thread_id)}</code>
                </td>
                <td className="small muted">{e.model}</td>
                <td className="small">{(e.cost?.lines ?? []).map((l) => `${kindLabel(l.kind)} ${formatQuantity(l.quantity)}`).join(' · ')}</td>
                <td className="num money" data-amount={e.cost?.total}>
                  {formatUsd(e.cost?.total)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
