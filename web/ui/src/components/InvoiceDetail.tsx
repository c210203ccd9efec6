import { useState } from 'react';
import { getInvoice, setInvoiceStatus } from '../api';
import { errorText, formatTime, formatTimeShort, shortId } from '../format';
import { useAsync } from '../hooks';
import { useCanAdmin } from '../session';
import { kindLabel } from '../kinds';
import { formatQuantity, formatUnitPrice, formatUsd } from '../money';

interface Props {
  invoiceId: string;
  onChanged: () => void;
  onClose: () => void;
}

/** One invoice with its line items; pending invoices can be marked paid. */
export function InvoiceDetail({ invoiceId, onChanged, onClose }: Props) {
  const inv = useAsync(() => getInvoice(invoiceId), [invoiceId]);
  // Changing an invoice's status is admin-only.
  const admin = useCanAdmin();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const markPaid = async () => {
    setBusy(true);
    setError(null);
    try {
      await setInvoiceStatus(invoiceId, 'paid');
      inv.reload();
      onChanged();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const i = inv.data;
  return (
    <section className="card invoice-detail" data-testid="invoice-detail" data-invoice-id={invoiceId}>
      <div className="row between">
        <h4>
          Invoice <code title={invoiceId}>{shortId(invoiceId)}</code>
        </h4>
        <button type="button" className="link" onClick={onClose}>
          close
        </button>
      </div>
      {inv.error ? <p className="error">{errorText(inv.error)}</p> : null}
      {!i && !inv.error && <p className="muted">Loading…</p>}
      {i && (
        <>
          <dl className="totals">
            <div>
              <dt>Status</dt>
              <dd>
                <span className={`badge status-${i.status}`} data-testid="invoice-detail-status">
                  {i.status}
                </span>
              </dd>
            </div>
            <div>
              <dt>Period</dt>
              <dd className="small">
                {formatTime(i.period_start)} – {formatTime(i.period_end)}
              </dd>
            </div>
            <div>
              <dt>Subtotal</dt>
              <dd className="money">{formatUsd(i.subtotal)}</dd>
            </div>
            <div>
              <dt>Total</dt>
              <dd className="money" data-testid="invoice-detail-total" data-amount={i.total}>
                <strong>{formatUsd(i.total)}</strong>
              </dd>
            </div>
          </dl>
          <table className="cost-table">
            <thead>
              <tr>
                <th>When</th>
                <th>Kind</th>
                <th className="num">Qty</th>
                <th className="num">Unit price</th>
                <th className="num">Amount</th>
              </tr>
            </thead>
            <tbody>
              {i.lines.map((l) => (
                <tr key={l.id} data-testid="invoice-line" data-kind={l.kind}>
                  <td className="small">
                    {formatTimeShort(l.occurred_at)}
                    <div className="muted">
                      msg <code title={l.message_id ?? ''}>{shortId(l.message_id)}</code>
                    </div>
                  </td>
                  <td>{kindLabel(l.kind)}</td>
                  <td className="num">{formatQuantity(l.quantity)}</td>
                  <td className="num">{formatUnitPrice(l.unit_price, l.unit)}</td>
                  <td className="num money" data-amount={l.amount}>
                    {formatUsd(l.amount)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {admin && i.status !== 'paid' && (
            <button type="button" data-testid="mark-paid" onClick={markPaid} disabled={busy}>
              {busy ? 'Saving…' : 'Mark paid'}
            </button>
          )}
          {error && <p className="error">{error}</p>}
        </>
      )}
    </section>
  );
}
