import { useEffect, useState } from 'react';
import { ApiError, listKeys } from '../api';
import { durationText } from '../budget';
import { errorText, formatTimeShort } from '../format';
import { useAsync } from '../hooks';
import { allowedModelsText, keyStatus } from '../keys';
import { useCanAdmin } from '../session';
import type { KeyWithSecret, Model } from '../types';
import { KeyDetail } from './KeyDetail';
import { KeyForm } from './KeyForm';
import { SecretPanel } from './SecretPanel';

interface Props {
  userId: string;
  models: Model[];
}

/** How often relative times (expiry, budget reset) are refreshed. */
const CLOCK_MS = 15_000;

/** The user's virtual keys of the gateway: list, create (secret shown once), budgets, spend, revoke, rotate. */
export function KeysTab({ userId, models }: Props) {
  // Creating keys and setting their budgets is admin-only; a user sees their keys and spend.
  const admin = useCanAdmin();
  const [version, setVersion] = useState(0);
  const keys = useAsync(() => listKeys(userId), [userId, version]);
  const [openId, setOpenId] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  // The secret lives only here, in memory, until dismissed; it is never stored or listed again.
  const [secret, setSecret] = useState<{ title: string; value: string } | null>(null);
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const id = window.setInterval(() => setNow(Date.now()), CLOCK_MS);
    return () => window.clearInterval(id);
  }, []);

  const changed = () => {
    setVersion((v) => v + 1);
    setNow(Date.now());
  };
  const onCreated = (k: KeyWithSecret) => {
    setSecret({ title: `Key “${k.name}” created`, value: k.key });
    setCreating(false);
    setOpenId(k.key_id);
    changed();
  };
  const onRotated = (k: KeyWithSecret) => setSecret({ title: `New secret for “${k.name}”`, value: k.key });

  const missingApi = keys.error instanceof ApiError && keys.error.status === 404;
  const list = [...(keys.data ?? [])].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
  const open = list.find((k) => k.key_id === openId) ?? null;

  return (
    <div className="keys-tab">
      {secret && <SecretPanel title={secret.title} secret={secret.value} onDismiss={() => setSecret(null)} />}

      {!admin ? (
        <p className="muted small" data-testid="keys-admin-note">
          New keys and key budgets are set by an admin.
        </p>
      ) : creating ? (
        <KeyForm userId={userId} models={models} onCreated={onCreated} onCancel={() => setCreating(false)} />
      ) : (
        <div className="actions">
          <button type="button" data-testid="new-key-button" onClick={() => setCreating(true)} disabled={missingApi}>
            New key
          </button>
        </div>
      )}

      <section className="card" data-testid="keys-list">
        <h4>Keys of {userId}</h4>
        <p className="muted small">Virtual keys for the gateway&apos;s OpenAI- and Anthropic-compatible endpoints; their usage is billed to {userId}.</p>
        {missingApi ? (
          <p className="error" data-testid="keys-unavailable">
            This server has no virtual keys API: <code>GET /api/keys</code> answered 404 ({errorText(keys.error)}).
          </p>
        ) : keys.error ? (
          <p className="error">{errorText(keys.error)}</p>
        ) : null}
        {keys.data && list.length === 0 && <p className="muted">No keys yet.</p>}
        {list.length > 0 && (
          <table className="cost-table keys">
            <thead>
              <tr>
                <th>Key</th>
                <th>Status</th>
                <th>Models</th>
              </tr>
            </thead>
            <tbody>
              {list.map((k) => {
                const st = keyStatus(k, now);
                return (
                  <tr
                    key={k.key_id}
                    data-testid="key-row"
                    data-key-id={k.key_id}
                    data-public-id={k.public_id}
                    data-status={st.status}
                    className={k.key_id === openId ? 'selected clickable' : 'clickable'}
                    onClick={() => setOpenId(k.key_id === openId ? null : k.key_id)}
                  >
                    <td>
                      <strong data-testid="key-row-name">{k.name}</strong>
                      <div>
                        <code title={k.key_id}>{k.public_id}</code>
                      </div>
                      <div className="muted small">created {formatTimeShort(k.created_at)}</div>
                    </td>
                    <td>
                      <span className={`badge status-${st.status}`} data-testid="key-row-status">
                        {st.status}
                      </span>
                      <div className="muted small">
                        {st.status === 'active'
                          ? st.at
                            ? `expires in ${durationText(Date.parse(st.at) - now)}`
                            : 'never expires'
                          : `${st.detail} ${formatTimeShort(st.at)}`}
                      </div>
                    </td>
                    <td className="small" title={k.allowed_models?.join(', ') ?? 'all models'}>
                      {allowedModelsText(k.allowed_models)}
                      {k.budgets.length > 0 && (
                        <div className="muted">
                          {k.budgets.length} budget{k.budgets.length === 1 ? '' : 's'}
                        </div>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>

      {open && (
        <KeyDetail key={open.key_id} k={open} now={now} version={version} onChanged={changed} onRotated={onRotated} onClose={() => setOpenId(null)} />
      )}
    </div>
  );
}
