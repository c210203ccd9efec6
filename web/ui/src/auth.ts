// Access control on the browser side: the credential (a user's virtual key or the admin
// token), where it is kept, what GET /api/auth/whoami said about it, and what the caller
// may see. The server enforces every rule; the UI only hides what would be refused.

/** What `GET /api/auth/whoami` answers. */
export interface Whoami {
  mode: 'open' | 'token';
  caller: 'open' | 'admin' | 'user' | 'anonymous';
  user_id: string | null;
  key_id: string | null;
}

/** Who is using the UI, once the server has said so. */
export type Session =
  /** Anyone on the port may act as any user. `legacy`: the node has no whoami (answered 404). */
  | { mode: 'open'; legacy: boolean }
  | { mode: 'token'; caller: 'admin'; keyId: string | null }
  | { mode: 'token'; caller: 'user'; userId: string; keyId: string | null };

/** Where the credential is kept: sessionStorage by default, localStorage with "remember me". */
export const CREDENTIAL_KEY = 'tally.credential';

/** Longest credential accepted from the sign-in form (keys are 80 characters; admin tokens are the operator's choice). */
export const MAX_CREDENTIAL_LEN = 4096;

const MODES = ['open', 'token'] as const;
const CALLERS = ['open', 'admin', 'user', 'anonymous'] as const;

/** Thrown when whoami answers something that is not the contract's shape. */
export class WhoamiShapeError extends Error {
  constructor(what: string) {
    super(`the server's /api/auth/whoami answer is not understood: ${what}`);
    this.name = 'WhoamiShapeError';
  }
}

/** Check an untrusted whoami body against the contract; throws WhoamiShapeError otherwise. */
export function parseWhoami(body: unknown): Whoami {
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new WhoamiShapeError('not a JSON object');
  const b = body as Record<string, unknown>;
  if (!MODES.includes(b.mode as never)) throw new WhoamiShapeError(`mode ${JSON.stringify(b.mode)}`);
  if (!CALLERS.includes(b.caller as never)) throw new WhoamiShapeError(`caller ${JSON.stringify(b.caller)}`);
  for (const f of ['user_id', 'key_id'] as const) {
    const v = b[f];
    if (v !== null && v !== undefined && typeof v !== 'string') throw new WhoamiShapeError(`${f} ${JSON.stringify(v)}`);
  }
  const w: Whoami = {
    mode: b.mode as Whoami['mode'],
    caller: b.caller as Whoami['caller'],
    user_id: typeof b.user_id === 'string' ? b.user_id : null,
    key_id: typeof b.key_id === 'string' ? b.key_id : null,
  };
  if (w.caller === 'user' && !w.user_id) throw new WhoamiShapeError('a user caller without user_id');
  if (w.mode === 'open' && w.caller !== 'open') throw new WhoamiShapeError(`caller ${w.caller} in open mode`);
  if (w.mode === 'token' && w.caller === 'open') throw new WhoamiShapeError('caller open in token mode');
  return w;
}

/** The session a whoami answer establishes, or null when the caller still has to sign in (anonymous). */
export function sessionFrom(w: Whoami): Session | null {
  if (w.mode === 'open') return { mode: 'open', legacy: false };
  if (w.caller === 'admin') return { mode: 'token', caller: 'admin', keyId: w.key_id };
  if (w.caller === 'user' && w.user_id) return { mode: 'token', caller: 'user', userId: w.user_id, keyId: w.key_id };
  return null;
}

/** Whether the caller may use admin-only pages and actions (open mode acts as anyone). */
export function canAdmin(s: Session | null): boolean {
  if (!s) return false;
  return s.mode === 'open' || s.caller === 'admin';
}

/** The user a user caller is pinned to; null when the caller may pick any user. */
export function pinnedUser(s: Session | null): string | null {
  return s && s.mode === 'token' && s.caller === 'user' ? s.userId : null;
}

/** Routes only an admin (or open mode) may open. */
export const ADMIN_ROUTES: readonly string[] = ['budgets', 'reconciliation'];

/** Check what was typed into the sign-in form; the trimmed credential, or what is wrong with it. */
export function checkCredential(raw: string): { ok: string } | { error: string } {
  const v = raw.trim();
  if (!v) return { error: 'Enter a key (tk-…) or the admin token.' };
  if (v.length > MAX_CREDENTIAL_LEN) return { error: `That is longer than ${MAX_CREDENTIAL_LEN} characters; paste only the key or token.` };
  // A header value: visible ASCII only (a space or a line break means something else was pasted).
  if (!/^[\x21-\x7e]+$/.test(v)) return { error: 'A key or token has no spaces, line breaks or non-ASCII characters.' };
  if (/^(tk|tat)-[0-9a-f]{12}-/.test(v) && !/^(tk|tat)-[0-9a-f]{12}-[0-9a-f]{64}$/.test(v)) {
    // Keys and generated admin tokens have one shape (a truncated paste is caught here);
    // a hand-set TALLY_ADMIN_TOKEN may be any other string and is left to the server.
    return { error: `That looks like a ${v.startsWith('tk-') ? 'virtual key' : 'generated admin token'} but is cut short or altered: it is ${v.startsWith('tk-') ? 'tk' : 'tat'}-<12 hex>-<64 hex>.` };
  }
  return { ok: v };
}

// --- the credential in memory and in browser storage ---

let current: string | null = null;
let loaded = false;

function storages(): Storage[] {
  const out: Storage[] = [];
  for (const pick of [() => window.sessionStorage, () => window.localStorage]) {
    try {
      const st = pick();
      if (st) out.push(st);
    } catch {
      // storage disabled
    }
  }
  return out;
}

/** The credential API calls send; read from storage the first time (sessionStorage first). */
export function getCredential(): string | null {
  if (!loaded) {
    loaded = true;
    for (const st of storages()) {
      try {
        const v = st.getItem(CREDENTIAL_KEY);
        if (v) {
          current = v;
          break;
        }
      } catch {
        // unreadable storage: treat as empty
      }
    }
  }
  return current;
}

/** Keep the credential for this tab (sessionStorage) or, with `remember`, across restarts (localStorage). */
export function setCredential(value: string, remember: boolean): void {
  clearCredential();
  current = value;
  loaded = true;
  try {
    (remember ? window.localStorage : window.sessionStorage).setItem(CREDENTIAL_KEY, value);
  } catch {
    // storage disabled: keep it in memory only
  }
}

/** Forget the credential everywhere (sign-out, or the server refused it). */
export function clearCredential(): void {
  current = null;
  loaded = true;
  for (const st of storages()) {
    try {
      st.removeItem(CREDENTIAL_KEY);
    } catch {
      // nothing to remove
    }
  }
}

/** Forget what was read from storage, so the next getCredential() reads it again (tests). */
export function resetCredentialCache(): void {
  current = null;
  loaded = false;
}

/** The Authorization header of the current credential, if any. */
export function authHeaders(): Record<string, string> {
  const c = getCredential();
  return c ? { Authorization: `Bearer ${c}` } : {};
}

// --- 401 anywhere: back to sign-in ---

type Listener = (err: { status: number; code: string; message: string }) => void;
const listeners = new Set<Listener>();

/** Be told when any API call answered 401; returns the unsubscribe function. */
export function onUnauthorized(fn: Listener): () => void {
  listeners.add(fn);
  return () => {
    listeners.delete(fn);
  };
}

/** Called by the API client when the server answered 401. */
export function notifyUnauthorized(err: { status: number; code: string; message: string }): void {
  for (const fn of [...listeners]) fn(err);
}

/** Seconds from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function retryAfterSeconds(header: string | null, now = Date.now()): number | null {
  if (!header) return null;
  const h = header.trim();
  if (/^\d+$/.test(h)) return parseInt(h, 10);
  const at = Date.parse(h);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}
