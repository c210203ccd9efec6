import { useState } from 'react';
import { ApiError, generateThreadInvoice, listInvoices, threadMetrics, userMetrics } from '../api';
import { errorText, formatTime, shortId } from '../format';
import { useAsync } from '../hooks';
import { formatUsd } from '../money';
import { CostBreakdown } from './CostBreakdown';
import { InvoiceDetail } from './InvoiceDetail';

interface Props {
  userId: string;
  threadId: string | null;
  version: number;
  onChanged: () => void;
}

/** Thread and user cost breakdowns, invoice generation, invoices and their lines. */
export function BillingTab({ userId, threadId, version, onChanged }: Props) {
  const thread = useAsync(() => (threadId ? threadMetrics(threadId) : Promise.resolve(null)), [threadId, version]);
  const user = useAsync(() => userMetrics(userId), [userId, version]);
  const invoices = useAsync(() => listInvoices(userId), [userId, version]);
  const [openId, setOpenId] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<string | null>(null);

  const generate = async () => {
    if (!threadId) return;
    setBusy(true);
    setMessage(null);
    try {
      const inv = await generateThreadInvoice(threadId);
      setOpenId(inv.id);
      setMessage(`Invoice ${shortId(inv.id)} created: ${formatUsd(inv.total)}.`);
      onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.code === 'nothing_to_invoice') setMessage('Nothing to invoice: all usage of this thread is already invoiced.');
      else setMessage(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const list = [...(invoices.data ?? [])].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));

  return (
    <div className="billing-tab">
      {threadId ? (
        thread.data ? (
          <CostBreakdown title="This thread" summary={thread.data.metrics} testId="thread-metrics" />
        ) : (
          <p className="muted">{thread.error ? errorText(thread.error) : 'Loading thread costs…'}</p>
        )
      ) : (
        <p className="muted">Open a thread to see its costs.</p>
      )}
      <div className="actions">
        <button type="button" data-testid="generate-invoice" onClick={generate} disabled={!threadId || busy}>
          {busy ? 'Generating…' : 'Generate invoice for this thread'}
        </button>
      </div>
      {message && (
        <p className="notice" role="status" data-testid="billing-message">
          {message}
        </p>
      )}
      <section className="card">
        <h4>Invoices</h4>
        {invoices.error ? <p className="error">{errorText(invoices.error)}</p> : null}
        {list.length === 0 && !invoices.loading && <p className="muted">No invoices yet.</p>}
        <table className="cost-table invoices">
          <tbody>
            {list.map((inv) => (
              <tr
                key={inv.id}
                data-testid="invoice-row"
                data-invoice-id={inv.id}
                className={inv.id === openId ? 'selected clickable' : 'clickable'}
                onClick={() => setOpenId(inv.id === openId ? null : inv.id)}
              >
                <td>
                  <code title={inv.id}>{shortId(inv.id)}</code>
                  <div className="muted small">{formatTime(inv.created_at)}</div>
                </td>
                <td>
                  <span className={`badge status-${inv.status}`} data-testid="invoice-status">
                    {inv.status}
                  </span>
                </td>
                <td className="num">{inv.lines.length} lines</td>
                <td className="num money" data-testid="invoice-total" data-amount={inv.total}>
                  {formatUsd(inv.total)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      {openId && <InvoiceDetail key={`${openId}:${version}`} invoiceId={openId} onChanged={onChanged} onClose={() => setOpenId(null)} />}
      {user.data ? (
        <CostBreakdown title={`User ${userId}`} summary={user.data.metrics} showThreads testId="user-metrics" />
      ) : (
        <p className="muted">{user.error ? errorText(user.error) : 'Loading user costs…'}</p>
      )}
    </div>
  );
}
