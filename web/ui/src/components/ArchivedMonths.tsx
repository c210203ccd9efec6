import { archiveBytes, listArchives } from '../archives';
import { errorText, formatTime } from '../format';
import { useAsync } from '../hooks';
import { formatUsd } from '../money';

/** Which months of usage events are archived to Parquet (their totals stay exact; raw events need a restore). */
export function ArchivedMonths({ version }: { version: number }) {
  const months = useAsync(() => listArchives(), [version]);
  return (
    <section className="card" data-testid="archived-months">
      <h4>Archived months</h4>
      {months.error ? <p className="error">{errorText(months.error)}</p> : null}
      {months.data && months.data.length === 0 && <p className="muted">No month is archived; every usage event is hot.</p>}
      {months.data && months.data.length > 0 && (
        <>
          <p className="muted small">
            Totals, invoices and analytics of archived months stay exact. Their raw events are not in the usage log below:
            restore a month with <code>tally archive restore YYYY-MM</code>.
          </p>
          <table className="cost-table">
            <thead>
              <tr>
                <th>Month</th>
                <th>Status</th>
                <th className="num">Events</th>
                <th className="num">Cost</th>
                <th className="num">Size</th>
                <th>Archived</th>
                <th>Verified</th>
              </tr>
            </thead>
            <tbody>
              {months.data.map((m) => (
                <tr key={m.month} data-testid="archived-month-row" data-month={m.month} data-status={m.status}>
                  <td>{m.month}</td>
                  <td>
                    <span className={`badge status-${m.status}`}>{m.archived ? 'archived' : m.status}</span>
                  </td>
                  <td className="num">{m.events ?? '—'}</td>
                  <td className="num money" data-amount={m.cost_total ?? ''}>
                    {m.cost_total === null ? '—' : formatUsd(m.cost_total)}
                  </td>
                  <td className="num">{m.files.length ? `${(archiveBytes(m) / 1024).toFixed(1)} KiB` : '—'}</td>
                  <td>{m.archived_at ? formatTime(m.archived_at) : '—'}</td>
                  <td>{m.verified_at ? formatTime(m.verified_at) : 'not yet'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
