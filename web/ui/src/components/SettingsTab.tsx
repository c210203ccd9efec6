import { useEffect, useMemo, useState } from 'react';
import { listPrices, verifyPrice } from '../api';
import { errorText } from '../format';
import { isTokenKind, kindLabel } from '../kinds';
import { formatUnitPrice } from '../money';
import { useAsync } from '../hooks';
import { useCanAdmin } from '../session';
import type { Model, PriceVersion } from '../types';
import { PriceForm } from './PriceForm';
import { PriceTable, VerifiedCell } from './PriceTable';

interface Props {
  models: Model[];
  newThreadModel: string;
  onNewThreadModel: (m: string) => void;
  threadModel: string | null;
  onChanged: () => void;
}

/** Model for new threads; token and resource prices per model with their history and a form for new versions. */
export function SettingsTab({ models, newThreadModel, onNewThreadModel, threadModel, onChanged }: Props) {
  // Adding and verifying prices is for admins; a user's key sees the prices only.
  const admin = useCanAdmin();
  const [model, setModel] = useState<string>(threadModel ?? newThreadModel);
  const [saved, setSaved] = useState(0);
  useEffect(() => {
    if (!model && (threadModel || newThreadModel)) setModel(threadModel ?? newThreadModel);
  }, [model, threadModel, newThreadModel]);

  const history = useAsync(() => (model ? listPrices({ model, history: true }) : Promise.resolve([])), [model, saved]);
  const versions = history.data ?? [];
  const tokenVersions = useMemo(() => versions.filter((v) => v.kind.endsWith('_tokens')), [versions]);
  const resourceVersions = useMemo(() => versions.filter((v) => !v.kind.endsWith('_tokens')), [versions]);
  const knownKinds = useMemo(() => [...new Set(versions.map((v) => v.kind))], [versions]);
  // Current prices of every model, for the freshness check.
  const current = useAsync(() => listPrices({}), [saved]);
  const stale = (current.data ?? []).filter((v) => v.stale);
  const tracked = (current.data ?? []).some((v) => v.stale !== undefined);
  const [verifying, setVerifying] = useState<string | null>(null);
  const [verifyError, setVerifyError] = useState<string | null>(null);
  const onVerify = async (v: PriceVersion) => {
    setVerifying(v.id);
    setVerifyError(null);
    try {
      await verifyPrice(v.id);
      setSaved((s) => s + 1);
    } catch (e) {
      setVerifyError(errorText(e));
    } finally {
      setVerifying(null);
    }
  };

  return (
    <div className="settings-tab">
      <section className="card">
        <h4>Model for new threads</h4>
        <select data-testid="settings-model-select" value={newThreadModel} onChange={(e) => onNewThreadModel(e.target.value)}>
          {models
            .filter((m) => m.is_active)
            .map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
                {m.is_default ? ' (default)' : ''}
              </option>
            ))}
        </select>
        <p className="muted small">
          {models.find((m) => m.name === newThreadModel)?.description ?? ''}
          {models.find((m) => m.name === newThreadModel)?.simulated ? ' Replies are simulated.' : ''}
        </p>
      </section>

      <section className="card" data-testid="price-freshness" data-stale-count={tracked ? stale.length : ''}>
        <h4>Price freshness</h4>
        {current.error ? <p className="error">{errorText(current.error)}</p> : null}
        {verifyError && <p className="error">{verifyError}</p>}
        {current.data && !tracked && <p className="muted small">This server does not track when prices were verified.</p>}
        {current.data && tracked && stale.length === 0 && (
          <p className="muted small" data-testid="price-freshness-ok">
            All {current.data.length} current prices were verified recently.
          </p>
        )}
        {stale.length > 0 && (
          <>
            <p className="small">
              <strong data-testid="price-stale-count">{stale.length}</strong> of {current.data?.length} current prices are stale: check them against the provider&apos;s price list.
            </p>
            <table className="cost-table prices stale-list">
              <tbody>
                {stale.map((v) => (
                  <tr key={v.id} data-testid="stale-price-row" data-version-id={v.id} data-model={v.model} data-kind={v.kind}>
                    <td className="small">
                      {v.model}
                      <div className="muted">{kindLabel(v.kind)}</div>
                    </td>
                    <td className="num money small">{formatUnitPrice(v.price, isTokenKind(v.kind) ? 'tokens' : 'units')}</td>
                    <td className="small">
                      <VerifiedCell v={v} onVerify={admin ? onVerify : undefined} busy={verifying === v.id} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </section>

      {admin && (
        <section className="card" data-testid="price-form-card">
          <PriceForm
            models={models}
            model={model}
            onModel={setModel}
            knownKinds={knownKinds}
            onSaved={() => {
              setSaved((s) => s + 1);
              onChanged();
            }}
          />
        </section>
      )}

      {history.error ? <p className="error">{errorText(history.error)}</p> : null}
      <section className="card">
        <h4>Token prices · {model || '—'}</h4>
        <p className="muted small">USD per million tokens. The current version is marked; older ones keep pricing past usage.</p>
        <PriceTable versions={tokenVersions} />
      </section>
      <section className="card">
        <h4>Resource prices · {model || '—'}</h4>
        <p className="muted small">USD per unit for non-token resources (images, pixels, web searches…).</p>
        <PriceTable versions={resourceVersions} />
      </section>
    </div>
  );
}
