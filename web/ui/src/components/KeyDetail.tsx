import { useState } from 'react';
import { deleteKeyBudget, keyBudgets, putKeyBudget, revokeKey, rotateKey } from '../api';
import { PERIODS, durationText, periodNoun } from '../budget';
import { errorText, formatTime } from '../format';
import { useAsync } from '../hooks';
import { useCanAdmin, useSession } from '../session';
import { budgetInput, draftFromBudget, emptyBudgetDraft, keyStatus, type BudgetDraft } from '../keys';
import type { KeyView, KeyWithSecret } from '../types';
import { BudgetBar } from './BudgetBar';
import { BudgetFields } from './BudgetFields';
import { Confirm } from './Confirm';
import { KeySpendCard } from './KeySpendCard';

interface Props {
  k: KeyView;
  now: number;
  version: number;
  onChanged: () => void;
  onRotated: (k: KeyWithSecret) => void;
  onClose: () => void;
}

type Editing = { mode: 'add' | 'edit'; draft: BudgetDraft } | null;

/** One key: its facts, budget windows (with add/edit), spend by model and provider, revoke and rotate. */
export function KeyDetail({ k, now, version, onChanged, onRotated, onClose }: Props) {
  // Budgets are set by admins only; a user sees the bars.
  const admin = useCanAdmin();
  // Rotating or revoking the key this browser is signed in with ends the session (the next call answers 401).
  const session = useSession();
  const signedInWith = session.mode === 'token' && session.keyId !== null && session.keyId === k.key_id;
  const [budgetsVersion, setBudgetsVersion] = useState(0);
  const budgets = useAsync(() => keyBudgets(k.key_id), [k.key_id, version, budgetsVersion]);
  const [editing, setEditing] = useState<Editing>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const st = keyStatus(k, now);
  const live = st.status === 'active';
  const list = budgets.data?.budgets ?? k.budgets;
  const sortedBudgets = [...list].sort((a, b) => PERIODS.indexOf(a.period as never) - PERIODS.indexOf(b.period as never));
  const taken = list.map((b) => b.period);
  const freePeriod = PERIODS.find((p) => !taken.includes(p));

  const changed = () => {
    setBudgetsVersion((v) => v + 1);
    onChanged();
  };

  const saveBudget = async () => {
    if (!editing) return;
    const checked = budgetInput(editing.draft);
    if (checked.error !== undefined) {
      setError(checked.error);
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await putKeyBudget(k.key_id, checked.ok);
      setEditing(null);
      changed();
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const act = async (what: () => Promise<void>) => {
    setError(null);
    try {
      await what();
    } catch (e) {
      setError(errorText(e));
    }
  };

  return (
    <section className="card key-detail" data-testid="key-detail" data-key-id={k.key_id} data-status={st.status}>
      <div className="row between">
        <h4>
          {k.name} <span className={`badge status-${st.status}`}>{st.status}</span>
        </h4>
        <button type="button" className="link" onClick={onClose}>
          close
        </button>
      </div>
      <dl className="kv small">
        <dt>Public id</dt>
        <dd>
          <code data-testid="key-detail-public-id">{k.public_id}</code>
        </dd>
        <dt>Key id</dt>
        <dd>
          <code>{k.key_id}</code>
        </dd>
        <dt>Models</dt>
        <dd data-testid="key-detail-models">{k.allowed_models === null ? 'all models' : k.allowed_models.join(', ')}</dd>
        <dt>Rate limit</dt>
        <dd>{k.rpm_limit === null ? 'none' : `${k.rpm_limit} requests / min`}</dd>
        <dt>Created</dt>
        <dd>{formatTime(k.created_at)}</dd>
        <dt>Expires</dt>
        <dd>
          {k.expires_at ? formatTime(k.expires_at) : 'never'}
          {st.status === 'active' && st.at ? <span className="muted"> (in {durationText(Date.parse(st.at) - now)})</span> : null}
        </dd>
        {k.revoked_at && (
          <>
            <dt>Revoked</dt>
            <dd>{formatTime(k.revoked_at)}</dd>
          </>
        )}
      </dl>

      <h5>Budgets</h5>
      {budgets.error ? <p className="error small">{errorText(budgets.error)}</p> : null}
      {sortedBudgets.length === 0 && <p className="muted small">No budget on this key.</p>}
      {sortedBudgets.map((b) => (
        <div key={b.budget_id} className="budget-item">
          <BudgetBar budget={b} now={now} />
          {admin && live && !editing && (
            <div className="row budget-actions">
              <button type="button" className="link" data-testid="key-budget-edit" onClick={() => setEditing({ mode: 'edit', draft: draftFromBudget(b) })}>
                edit
              </button>
              <Confirm
                label="remove"
                question={`Remove the ${b.period} budget? Spend stops being limited per ${periodNoun(b.period)}.`}
                confirmLabel="Remove budget"
                danger
                asLink
                testId="key-budget-remove"
                onConfirm={() => act(async () => {
                  await deleteKeyBudget(k.key_id, b.period);
                  changed();
                })}
              />
            </div>
          )}
        </div>
      ))}
      {editing && (
        <div className="budget-edit" data-testid="key-budget-form">
          <h5>{editing.mode === 'add' ? 'New budget' : `Edit ${editing.draft.period} budget`}</h5>
          <BudgetFields
            draft={editing.draft}
            onChange={(d) => setEditing({ ...editing, draft: d })}
            takenPeriods={editing.mode === 'add' ? taken : []}
            lockPeriod={editing.mode === 'edit'}
          />
          <label className="check">
            <input type="checkbox" checked={editing.draft.enabled} onChange={(e) => setEditing({ ...editing, draft: { ...editing.draft, enabled: e.target.checked } })} />
            Enforced (calls are refused once it is spent)
          </label>
          <div className="row">
            <button type="button" data-testid="key-budget-save" onClick={saveBudget} disabled={busy}>
              {busy ? 'Saving…' : 'Save budget'}
            </button>
            <button type="button" className="secondary" onClick={() => setEditing(null)} disabled={busy}>
              Cancel
            </button>
          </div>
        </div>
      )}
      {admin && live && !editing && freePeriod && (
        <button type="button" className="secondary small-button" data-testid="key-budget-add" onClick={() => setEditing({ mode: 'add', draft: emptyBudgetDraft(freePeriod) })}>
          + Add budget
        </button>
      )}

      <KeySpendCard keyId={k.key_id} version={version + budgetsVersion} />

      {live && signedInWith && (
        <p className="notice small" data-testid="key-signed-in-with">
          You are signed in with this key: rotating or revoking it signs you out.
        </p>
      )}
      {live && (
        <div className="row key-actions">
          <Confirm
            label="Rotate secret"
            question="Issue a new secret? The current one stops working at once."
            confirmLabel="Rotate"
            testId="key-rotate"
            onConfirm={() => act(async () => {
              const r = await rotateKey(k.key_id);
              onRotated(r);
              onChanged();
            })}
          />
          <Confirm
            label="Revoke"
            question={`Revoke “${k.name}”? Calls with it are refused from now on. This cannot be undone.`}
            confirmLabel="Revoke key"
            danger
            testId="key-revoke"
            onConfirm={() => act(async () => {
              await revokeKey(k.key_id);
              onChanged();
            })}
          />
        </div>
      )}
      {error && (
        <p className="error" role="alert" data-testid="key-detail-error">
          {error}
        </p>
      )}
    </section>
  );
}
