import { useEffect, useMemo, useState } from 'react';
import { listPrices } from '../api';
import { errorText } from '../format';
import { useAsync } from '../hooks';
import type { Model } from '../types';
import { PriceForm } from './PriceForm';
import { PriceTable } from './PriceTable';

interface Props {
  models: Model[];
  newThreadModel: string;
  onNewThreadModel: (m: string) => void;
  threadModel: string | null;
  onChanged: () => void;
}

/** Model for new threads; token and resource prices per model with their history and a form for new versions. */
export function SettingsTab({ models, newThreadModel, onNewThreadModel, threadModel, onChanged }: Props) {
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

      <section className="card">
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
