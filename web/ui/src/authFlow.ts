// The steps of signing in and out: what the app shows after asking the server (whoami) at
// start, after the sign-in form, after sign-out and after a 401 from any call.

import { ApiError, whoami } from './api';
import { checkCredential, clearCredential, getCredential, sessionFrom, setCredential, type Session } from './auth';
import { errorText } from './format';

export type AuthState =
  | { phase: 'checking' }
  /** whoami could not be asked or answered nonsense: say so, offer to retry. */
  | { phase: 'failed'; message: string }
  /** Token mode without a usable credential. `message` says why, when there is a reason. */
  | { phase: 'signin'; message: string | null }
  | { phase: 'ready'; session: Session };

/** The words for a refused credential or a whoami failure. */
export function refusalText(e: unknown): string {
  if (e instanceof ApiError) {
    if (e.status === 401) return `The server did not accept that key or token: ${e.message} (${e.code}).`;
    if (e.status === 429) {
      const secs = (e.body as { retryAfter?: number | null } | undefined)?.retryAfter;
      return `Too many failed sign-ins from this address; try again ${typeof secs === 'number' ? `in ${secs} s` : 'later'} (${e.code}).`;
    }
  }
  return errorText(e);
}

/** At start: ask whoami with the stored credential (if any) and decide what to show. */
export async function startSession(): Promise<AuthState> {
  const stored = getCredential();
  try {
    const w = await whoami(stored);
    if (w.mode === 'open') {
      // Nothing to send in open mode; a credential left from a token-mode run would only confuse.
      if (stored) clearCredential();
      return { phase: 'ready', session: { mode: 'open', legacy: w.legacy } };
    }
    const session = sessionFrom(w);
    if (session) return { phase: 'ready', session };
    if (stored) {
      clearCredential();
      return { phase: 'signin', message: 'The stored credential is not accepted any more; sign in again.' };
    }
    return { phase: 'signin', message: null };
  } catch (e) {
    if (e instanceof ApiError && e.status === 401 && stored) {
      // Forget it and ask again without it: the node may have restarted in open mode.
      clearCredential();
      const again = await startSession();
      return again.phase === 'signin' ? { phase: 'signin', message: `Signed out: ${refusalText(e)}` } : again;
    }
    if (e instanceof ApiError && e.status === 401) return { phase: 'signin', message: refusalText(e) };
    if (e instanceof ApiError && e.status === 429) return { phase: 'signin', message: refusalText(e) };
    return { phase: 'failed', message: `Cannot tell whether this server needs a key: ${errorText(e)}` };
  }
}

/** The sign-in form: check the typed credential with whoami; keep it only if the server accepts it. */
export async function signIn(raw: string, remember: boolean): Promise<{ state: AuthState } | { error: string }> {
  const checked = checkCredential(raw);
  if ('error' in checked) return { error: checked.error };
  let w;
  try {
    w = await whoami(checked.ok);
  } catch (e) {
    return { error: refusalText(e) };
  }
  if (w.mode === 'open') return { state: { phase: 'ready', session: { mode: 'open', legacy: w.legacy } } };
  const session = sessionFrom(w);
  if (!session) return { error: 'The server did not recognise that key or token (it answered: anonymous).' };
  setCredential(checked.ok, remember);
  return { state: { phase: 'ready', session } };
}

/** Sign-out: forget the credential; token mode goes back to sign-in. */
export function signOut(): AuthState {
  clearCredential();
  return { phase: 'signin', message: null };
}

/** A 401 from any call: the credential is missing, expired, revoked or rotated. */
export function unauthorizedState(err: { code: string; message: string }): AuthState {
  clearCredential();
  return { phase: 'signin', message: `Signed out: the server refused the request (${err.code}: ${err.message}). Sign in again.` };
}
