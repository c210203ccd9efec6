import { getUser, listInvoices, usageEvents } from '../api';
import { errorText, formatTime, shortId } from '../format';
import { useAsync } from '../hooks';
import { kindLabel } from '../kinds';
import { formatQuantity, formatUsd } from '../money';

interface Props {
  userId: string;
  version: number;
}

/** Data artifacts: the user record, invoice summaries and raw usage events. */
export function DataTab({ userId, version }: Props) {
  const user = useAsync(() => getUser(userId), [userId]);
  const invoices = useAsync(() => listInvoices(userId), [userId, version]);
  const events = useAsync(() => usageEvents(userId, 100), [userId, version]);

  return (
    <div className="data-tab">
      <section className="card" data-testid="user-details">
        <h4>User</h4>
        {user.error ? <p className="error">{errorText(user.error)}</p> : null}
        {user.data && (
          <dl className="kv">
            <dt>User id</dt>
            <dd data-testid="user-details-id">{user.data.user_id}</dd>
            <dt>Username</dt>
            <dd>{user.data.username ?? '—'}</dd>
            <dt>Email</dt>
            <dd>{user.data.email ?? '—'}</dd>
            <dt>Created</dt>
            <dd>{formatTime(user.data.created_at)}</dd>
          </dl>
        )}
      </section>
      <section className="card" data-testid="invoice-summaries">
        <h4>Invoice summaries</h4>
        {invoices.error ? <p className="error">{errorText(invoices.error)}</p> : null}
        {invoices.data && invoices.data.length === 0 && <p className="muted">No invoices.</p>}
        {invoices.data && invoices.data.length > 0 && (
          <table className="cost-table">
            <thead>
              <tr>
                <th>Invoice</th>
                <th>Thread</th>
                <th>Status</th>
                <th className="num">Lines</th>
                <th className="num">Total</th>
              </tr>
            </thead>
            <tbody>
              {invoices.data.map((i) => (
                <tr key={i.id} data-testid="invoice-summary-row">
                  <td>
                    <code title={i.id}>{shortId(i.id)}</code>
                    <div className="muted small">{formatTime(i.created_at)}</div>
                  </td>
                  <td>
                    <code title={i.thread_id ?? ''}>{shortId(i.thread_id)}</code>
                  </td>
                  <td>
                    <span className={`badge status-${i.status}`}>{i.status}</span>
                  </td>
                  <td className="num">{i.lines.length}</td>
                  <td className="num money" data-amount={i.total}>
                    {formatUsd(i.total)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
      <section className="card" data-testid="usage-events">
        <h4>Raw usage events (latest 100)</h4>
        {events.error ? <p className="error">{errorText(events.error)}</p> : null}
        {events.data && events.data.length === 0 && <p className="muted">No usage yet.</p>}
        {events.data?.map((ev) => (
          <details key={ev.event_id} className="event" data-testid="usage-event-row">
            <summary>
              <span className="small">{formatTime(ev.occurred_at)}</span> <strong>{ev.event_type}</strong>{' '}
              <span className="muted small">{ev.model}</span>{' '}
              <span className="money">{ev.cost ? formatUsd(ev.cost.total) : '—'}</span>
              <div className="muted small">
                {(ev.cost?.lines ?? []).map((l) => `${kindLabel(l.kind)} ${formatQuantity(l.quantity)}`).join(' · ')}
              </div>
            </summary>
            <pre>{JSON.stringify(ev, null, 2)}</pre>
          </details>
        ))}
      </section>
    </div>
  );
}
