import { formatTimeShort, shortId } from '../format';
import { isTokenKind, kindLabel, kindOrder } from '../kinds';
import { formatUnitPrice } from '../money';
import type { PriceVersion } from '../types';

/** Price versions grouped by kind, newest first; a stale current version is marked. */
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
            data-stale={v.stale ? 'true' : 'false'}
            title={v.is_current && v.verified_at !== undefined ? `verified ${v.verified_at ? formatTimeShort(v.verified_at) : 'never'}` : undefined}
            className={v.is_current ? 'current' : 'old'}
          >
            <td>
              {kindLabel(v.kind)}
              {v.is_current && <span className="badge current">current</span>}
              {v.is_current && v.stale && (
                <span className="badge status-stale" data-testid="price-stale" title={`last verified: ${v.verified_at ? formatTimeShort(v.verified_at) : 'never'}`}>
                  stale
                </span>
              )}
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

/** When a current version was last verified, a stale mark, and the button to verify it now. */
export function VerifiedCell({ v, onVerify, busy }: { v: PriceVersion; onVerify?: (v: PriceVersion) => void; busy?: boolean }) {
  if (v.verified_at === undefined && v.stale === undefined) return <span className="muted">—</span>;
  return (
    <span className="verified">
      {v.verified_at ? formatTimeShort(v.verified_at) : <span className="muted">never</span>}
      {v.stale && (
        <span className="badge status-stale" title="not verified within the server's stale window">
          stale
        </span>
      )}
      {onVerify && (
        <button type="button" className="link" disabled={busy} onClick={() => onVerify(v)} data-testid="price-verify" data-version-id={v.id}>
          {busy ? 'verifying…' : 'Mark verified'}
        </button>
      )}
    </span>
  );
}
