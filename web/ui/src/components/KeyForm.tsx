import { useState, type FormEvent } from 'react';
import { createKey } from '../api';
import { PERIODS } from '../budget';
import { errorText } from '../format';
import { createKeyRequest, emptyBudgetDraft, emptyKeyDraft, MAX_KEY_NAME_LEN, type KeyDraft } from '../keys';
import type { KeyWithSecret, Model } from '../types';
import { BudgetFields } from './BudgetFields';

interface Props {
  userId: string;
  models: Model[];
  onCreated: (k: KeyWithSecret) => void;
  onCancel: () => void;
}

/** Create a virtual key: name, allowed models, expiry, rate limit and budgets. */
export function KeyForm({ userId, models, onCreated, onCancel }: Props) {
  const [draft, setDraft] = useState<KeyDraft>(emptyKeyDraft);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const set = (patch: Partial<KeyDraft>) => setDraft((d) => ({ ...d, ...patch }));

  const sorted = [...models].sort((a, b) => (a.provider + a.name < b.provider + b.name ? -1 : 1));
  const taken = draft.budgets.map((b) => b.period);
  const nextPeriod = PERIODS.find((p) => !taken.includes(p));

  const toggleModel = (name: string, on: boolean) =>
    set({ models: on ? [...draft.models.filter((m) => m !== name), name] : draft.models.filter((m) => m !== name) });

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const checked = createKeyRequest(userId, draft, Date.now());
    if (checked.error !== undefined) {
      setError(checked.error);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const created = await createKey(checked.ok);
      setDraft(emptyKeyDraft());
      onCreated(created);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form className="card key-form" onSubmit={submit} data-testid="key-form">
      <div className="row between">
        <h4>New key</h4>
        <button type="button" className="link" onClick={onCancel}>
          cancel
        </button>
      </div>
      <label>
        Name
        <input
          data-testid="key-form-name"
          value={draft.name}
          onChange={(e) => set({ name: e.target.value })}
          maxLength={MAX_KEY_NAME_LEN}
          placeholder="e.g. backend service"
          autoFocus
        />
      </label>

      <fieldset className="models-pick">
        <legend>Models</legend>
        <label className="check">
          <input type="checkbox" data-testid="key-form-all-models" checked={draft.allModels} onChange={(e) => set({ allModels: e.target.checked })} />
          All models
        </label>
        {!draft.allModels && (
          <div className="model-list" data-testid="key-form-models">
            {sorted.length === 0 && <p className="muted small">No models in the catalogue.</p>}
            {sorted.map((m) => (
              <label key={m.name} className="check">
                <input
                  type="checkbox"
                  data-testid="key-form-model"
                  value={m.name}
                  checked={draft.models.includes(m.name)}
                  onChange={(e) => toggleModel(m.name, e.target.checked)}
                />
                <span>
                  {m.name} <span className="muted small">{m.provider}{m.is_active ? '' : ' · inactive'}</span>
                </span>
              </label>
            ))}
          </div>
        )}
      </fieldset>

      <div className="two-col">
        <label>
          Expires (blank = never)
          <input data-testid="key-form-expires" type="datetime-local" value={draft.expiresAt} onChange={(e) => set({ expiresAt: e.target.value })} />
        </label>
        <label>
          Requests per minute (blank = no limit)
          <input data-testid="key-form-rpm" value={draft.rpm} onChange={(e) => set({ rpm: e.target.value })} inputMode="numeric" placeholder="none" />
        </label>
      </div>

      <fieldset className="budgets-pick">
        <legend>Budgets</legend>
        {draft.budgets.length === 0 && <p className="muted small">No budget: the key may spend without a limit.</p>}
        {draft.budgets.map((b, i) => (
          <BudgetFields
            key={i}
            draft={b}
            takenPeriods={taken.filter((_, j) => j !== i)}
            onChange={(nb) => set({ budgets: draft.budgets.map((o, j) => (j === i ? nb : o)) })}
            onRemove={() => set({ budgets: draft.budgets.filter((_, j) => j !== i) })}
          />
        ))}
        {nextPeriod && (
          <button type="button" className="secondary small-button" data-testid="key-form-add-budget" onClick={() => set({ budgets: [...draft.budgets, emptyBudgetDraft(nextPeriod)] })}>
            + Add budget
          </button>
        )}
      </fieldset>

      <button type="submit" data-testid="key-form-submit" disabled={busy}>
        {busy ? 'Creating…' : 'Create key'}
      </button>
      {error && (
        <p className="error" role="alert" data-testid="key-form-error">
          {error}
        </p>
      )}
    </form>
  );
}
