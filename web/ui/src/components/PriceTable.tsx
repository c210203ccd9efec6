import { formatTimeShort, shortId } from '../format';
import { isTokenKind, kindLabel, kindOrder } from '../kinds';
import { formatUnitPrice } from '../money';
import type { PriceVersion } from '../types';

/** Price versions grouped by kind, newest first. */
export function PriceTable({ versions }: { versions: PriceVersion[] }) {
  if (versions.length === 0) return <p className="muted">No prices.</p>;
  const sorted = [...versions].sort((a, b) => {
    const k = kindOrder(a.kind, b.kind);
    if (k !== 0) return k;
    return a.effective_from < b.effective_from ? 1 : a.effective_from > b.effective_from ? -1 : 0;
  });
  return (
    <table className="cost-table prices">
      <thead>
        <tr>
          <th>Kind</th>
          <th className="num">Price</th>
          <th>From</th>
          <th>Until</th>
          <th>Version</th>
        </tr>
      </thead>
      <tbody>
        {sorted.map((v) => (
          <tr
            key={v.id}
            data-testid="price-history-row"
            data-kind={v.kind}
            data-model={v.model}
            data-current={v.is_current ? 'true' : 'false'}
            data-price={v.price}
            className={v.is_current ? 'current' : 'old'}
          >
            <td>
              {kindLabel(v.kind)}
              {v.is_current && <span className="badge current">current</span>}
            </td>
            <td className="num money">{formatUnitPrice(v.price, isTokenKind(v.kind) ? 'tokens' : 'units')}</td>
            <td className="small">{formatTimeShort(v.effective_from)}</td>
            <td className="small">{v.effective_to ? formatTimeShort(v.effective_to) : '—'}</td>
            <td>
              <code title={v.id}>{shortId(v.id)}</code>
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
