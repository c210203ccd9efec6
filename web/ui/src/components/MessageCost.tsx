import { formatTime, shortId } from '../format';
import { isTokenKind, kindLabel, kindOrder } from '../kinds';
import { formatQuantity, formatUnitPrice, formatUsd } from '../money';
import type { MessageView, PriceVersion } from '../types';

interface Props {
  message: MessageView;
  priceIndex?: Map<string, PriceVersion>;
}

/** Tokens and cost by kind for one message, with the price version each line used. */
export function MessageCost({ message, priceIndex }: Props) {
  const lines = [...(message.cost?.lines ?? [])].sort((a, b) => kindOrder(a.kind, b.kind));
  return (
    <div className="message-cost-box">
      <table className="cost-table">
        <thead>
          <tr>
            <th>Kind</th>
            <th className="num">Quantity</th>
            <th className="num">Unit price</th>
            <th className="num">Cost</th>
            <th>Price version</th>
          </tr>
        </thead>
        <tbody>
          {lines.map((l) => {
            const v = priceIndex?.get(l.price_version_id);
            return (
              <tr key={l.kind} data-testid="message-kind-row" data-kind={l.kind}>
                <td>{kindLabel(l.kind)}</td>
                <td className="num" data-testid="message-kind-quantity" data-quantity={l.quantity}>
                  {formatQuantity(l.quantity)} {l.unit === 'tokens' || isTokenKind(l.kind) ? 'tok' : l.kind}
                </td>
                <td className="num" data-testid="message-kind-unit-price" data-amount={l.unit_price}>
                  {formatUnitPrice(l.unit_price, l.unit)}
                </td>
                <td className="num money" data-testid="message-kind-amount" data-amount={l.amount}>
                  {formatUsd(l.amount)}
                </td>
                <td className="version" title={`price version ${l.price_version_id}`} data-testid="message-kind-version" data-version={l.price_version_id}>
                  {v ? `from ${formatTime(v.effective_from)}` : ''} <code>{shortId(l.price_version_id)}</code>
                </td>
              </tr>
            );
          })}
        </tbody>
        <tfoot>
          <tr>
            <td colSpan={3}>Message total</td>
            <td className="num money">
              <strong data-testid="message-cost" data-amount={message.cost_total}>
                {formatUsd(message.cost_total)}
              </strong>
            </td>
            <td className="muted small" title="The thread's running total after this message">
              thread {formatUsd(message.thread_total_after)}
            </td>
          </tr>
        </tfoot>
      </table>
    </div>
  );
}
