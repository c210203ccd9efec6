import { useEffect, useState } from 'react';
import { getUser, listInvoices, usageEvents } from '../api';
import { errorText, formatTime, shortId } from '../format';
import { useAsync } from '../hooks';
import { kindLabel } from '../kinds';
import { formatQuantity, formatUsd } from '../money';
import type { UsageEvent } from '../types';
import { ArchivedMonths } from './ArchivedMonths';

/** Events per page of the usage log. */
const PAGE = 100;

interface Props {
  userId: string;
  version: number;
}

/** Data artifacts: the user record, invoice summaries and raw usage events. */
export function DataTab({ userId, version }: Props) {
  const user = useAsync(() => getUser(userId), [userId]);
  const invoices = useAsync(() => listInvoices(userId), [userId, version]);
  const first = useAsync(() => usageEvents({ user_id: userId, limit: PAGE }), [userId, version]);
  // Pages loaded with "Load more", after the first one; reset when the first page reloads.
  const [more, setMore] = useState<{ events: UsageEvent[]; cursor: string | null }>({ events: [], cursor: null });
  const [moreError, setMoreError] = useState<unknown>(null);
  const [loadingMore, setLoadingMore] = useState(false);
  useEffect(() => {
    setMore({ events: [], cursor: first.data?.next_cursor ?? null });
    setMoreError(null);
  }, [first.data]);
  const events = first.data ? [...first.data.events, ...more.events] : null;
  const loadMore = async () => {
    if (!more.cursor) return;
    setLoadingMore(true);
    setMoreError(null);
    try {
      const page = await usageEvents({ user_id: userId, limit: PAGE, cursor: more.cursor });
      setMore((m) => ({ events: [...m.events, ...page.events], cursor: page.next_cursor }));
    } catch (e) {
      setMoreError(e);
    } finally {
      setLoadingMore(false);
    }
  };

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
      <ArchivedMonths version={version} />
      <section className="card" data-testid="usage-events">
        <h4>Raw usage events</h4>
        {first.error ? <p className="error">{errorText(first.error)}</p> : null}
        {events && events.length === 0 && <p className="muted">No usage yet.</p>}
        {events && events.length > 0 && (
          <table className="cost-table events">
            <thead>
              <tr>
                <th>When</th>
                <th>Model · task</th>
                <th>Key</th>
                <th>Status</th>
                <th className="num">Cost</th>
              </tr>
            </thead>
            <tbody>
              {events.map((ev) => (
                <EventRow key={ev.event_id} ev={ev} />
              ))}
            </tbody>
          </table>
        )}
        {events && (
          <div className="row between small">
            <span className="muted" data-testid="usage-events-count">
              {events.length} event{events.length === 1 ? '' : 's'} shown{more.cursor ? '' : ' (all)'}
            </span>
            {more.cursor && (
              <button type="button" className="secondary small-button" data-testid="usage-events-more" onClick={loadMore} disabled={loadingMore}>
                {loadingMore ? 'Loading…' : 'Load more'}
              </button>
            )}
          </div>
        )}
        {moreError ? <p className="error">{errorText(moreError)}</p> : null}
      </section>
    </div>
  );
}

/** One usage event: a summary row that opens to its lines and the raw JSON. */
function EventRow({ ev }: { ev: UsageEvent }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <tr
        className="clickable"
        data-testid="usage-event-row"
        data-event-id={ev.event_id}
        data-status={ev.was_successful ? 'success' : 'failed'}
        onClick={() => setOpen((o) => !o)}
      >
        <td className="small">
          {formatTime(ev.occurred_at)}
          <div className="muted">{ev.event_type}</div>
        </td>
        <td className="small">
          {ev.model}
          <div className="muted">{ev.task ?? '—'}</div>
        </td>
        <td>{ev.key_id ? <code title={ev.key_id}>{shortId(ev.key_id)}</code> : <span className="muted small">—</span>}</td>
        <td>
          <span className={`badge status-${ev.was_successful ? 'success' : 'failed'}`}>{ev.was_successful ? 'ok' : 'failed'}</span>
        </td>
        <td className="num money" data-amount={ev.cost}>
          {formatUsd(ev.cost)}
        </td>
      </tr>
      {open && (
        <tr className="event-detail">
          <td colSpan={5}>
            <div className="muted small">{ev.lines.map((l) => `${kindLabel(l.kind)} ${formatQuantity(l.quantity)}`).join(' · ') || 'no priced lines'}</div>
            <pre>{JSON.stringify(ev, null, 2)}</pre>
          </td>
        </tr>
      )}
    </>
  );
}
