import { useState, type FormEvent } from 'react';
import { signIn, type AuthState } from '../authFlow';
import { MAX_CREDENTIAL_LEN } from '../auth';

interface Props {
  /** Why the sign-in screen is shown (signed out by a 401, stored credential refused), if anything. */
  message: string | null;
  onSignedIn: (state: AuthState) => void;
}

/** Token mode: a user's virtual key or the admin token, checked with whoami before it is kept. */
export function SignIn({ message, onSignedIn }: Props) {
  const [value, setValue] = useState('');
  const [remember, setRemember] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const r = await signIn(value, remember);
      if ('error' in r) {
        setError(r.error);
      } else {
        setValue('');
        onSignedIn(r.state);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="page narrow">
      <form className="card user-form" onSubmit={submit} data-testid="sign-in">
        <h2>Sign in</h2>
        <p className="muted">
          This server requires a key. Paste your virtual key (<code>tk-…</code>, from an admin) or the admin token.
        </p>
        {message && (
          <p className="notice" role="status" data-testid="sign-in-message">
            {message}
          </p>
        )}
        <label>
          Key or admin token
          <input
            type="password"
            data-testid="sign-in-credential"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            autoComplete="off"
            spellCheck={false}
            autoFocus
            maxLength={MAX_CREDENTIAL_LEN}
          />
        </label>
        <label className="check">
          <input type="checkbox" data-testid="sign-in-remember" checked={remember} onChange={(e) => setRemember(e.target.checked)} />
          Remember me on this browser (otherwise only until this tab closes)
        </label>
        <button type="submit" data-testid="sign-in-submit" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {error && (
          <p className="error" role="alert" data-testid="sign-in-error">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
