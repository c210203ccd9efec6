import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { listThreads, whoami } from './api';
import {
  authHeaders,
  canAdmin,
  checkCredential,
  clearCredential,
  CREDENTIAL_KEY,
  getCredential,
  onUnauthorized,
  parseWhoami,
  pinnedUser,
  resetCredentialCache,
  retryAfterSeconds,
  sessionFrom,
  setCredential,
} from './auth';
import { signIn, signOut, startSession, unauthorizedState } from './authFlow';

const KEY = `tk-0123456789ab-${'c'.repeat(64)}`;
const ADMIN = `tat-00112233aabb-${'d'.repeat(64)}`;

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };
let answer: (url: string, headers: Record<string, string>) => Answer;
let calls: { url: string; headers: Record<string, string> }[];

beforeEach(() => {
  calls = [];
  window.sessionStorage.clear();
  window.localStorage.clear();
  resetCredentialCache();
  answer = () => ({ status: 200, body: [] });
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init?: RequestInit) => {
      const headers = (init?.headers ?? {}) as Record<string, string>;
      calls.push({ url, headers });
      const a = answer(url, headers);
      return new Response(a.body === undefined ? null : JSON.stringify(a.body), { status: a.status, headers: a.headers });
    }),
  );
});
afterEach(() => {
  vi.unstubAllGlobals();
  resetCredentialCache();
});

const who = (mode: string, caller: string, user_id: string | null = null, key_id: string | null = null) => ({ mode, caller, user_id, key_id });

describe('parseWhoami', () => {
  it('accepts the contract shapes', () => {
    expect(parseWhoami(who('open', 'open'))).toEqual(who('open', 'open'));
    expect(parseWhoami(who('token', 'user', 'alice', 'k1'))).toEqual(who('token', 'user', 'alice', 'k1'));
    expect(parseWhoami({ mode: 'token', caller: 'admin' })).toEqual(who('token', 'admin'));
  });
  it('refuses anything else, saying what', () => {
    expect(() => parseWhoami(null)).toThrow(/not a JSON object/);
    expect(() => parseWhoami([])).toThrow(/not a JSON object/);
    expect(() => parseWhoami(who('closed', 'open'))).toThrow(/mode "closed"/);
    expect(() => parseWhoami(who('token', 'root'))).toThrow(/caller "root"/);
    expect(() => parseWhoami({ ...who('token', 'user'), user_id: 7 })).toThrow(/user_id 7/);
    expect(() => parseWhoami(who('token', 'user'))).toThrow(/without user_id/);
    expect(() => parseWhoami(who('open', 'admin'))).toThrow(/caller admin in open mode/);
    expect(() => parseWhoami(who('token', 'open'))).toThrow(/caller open in token mode/);
  });
});

describe('sessions and permissions', () => {
  it('maps whoami to a session; anonymous has none', () => {
    expect(sessionFrom(parseWhoami(who('open', 'open')))).toEqual({ mode: 'open', legacy: false });
    expect(sessionFrom(parseWhoami(who('token', 'admin', null, 'a1')))).toEqual({ mode: 'token', caller: 'admin', keyId: 'a1' });
    expect(sessionFrom(parseWhoami(who('token', 'user', 'bob', 'k2')))).toEqual({ mode: 'token', caller: 'user', userId: 'bob', keyId: 'k2' });
    expect(sessionFrom(parseWhoami(who('token', 'anonymous')))).toBeNull();
  });
  it('only open mode and the admin see admin-only things; a user is pinned to their id', () => {
    const user = sessionFrom(parseWhoami(who('token', 'user', 'bob')));
    expect(canAdmin({ mode: 'open', legacy: true })).toBe(true);
    expect(canAdmin(sessionFrom(parseWhoami(who('token', 'admin'))))).toBe(true);
    expect(canAdmin(user)).toBe(false);
    expect(canAdmin(null)).toBe(false);
    expect(pinnedUser(user)).toBe('bob');
    expect(pinnedUser(sessionFrom(parseWhoami(who('token', 'admin'))))).toBeNull();
    expect(pinnedUser({ mode: 'open', legacy: false })).toBeNull();
  });
});

describe('checkCredential', () => {
  it('trims and accepts keys, generated and hand-set admin tokens', () => {
    expect(checkCredential(`  ${KEY}\n`)).toEqual({ ok: KEY });
    expect(checkCredential(ADMIN)).toEqual({ ok: ADMIN });
    expect(checkCredential('operator-chosen-secret')).toEqual({ ok: 'operator-chosen-secret' });
  });
  it('refuses empty, spaced, non-ASCII, overlong and truncated credentials', () => {
    expect(checkCredential('   ')).toHaveProperty('error');
    expect(checkCredential('two words')).toHaveProperty('error', expect.stringMatching(/no spaces/));
    expect(checkCredential('clé')).toHaveProperty('error', expect.stringMatching(/non-ASCII/));
    expect(checkCredential('x'.repeat(4097))).toHaveProperty('error', expect.stringMatching(/longer than 4096/));
    expect(checkCredential(KEY.slice(0, -1))).toHaveProperty('error', expect.stringMatching(/virtual key .* cut short/));
    expect(checkCredential(ADMIN.slice(0, 40))).toHaveProperty('error', expect.stringMatching(/admin token .* cut short/));
  });
});

describe('credential storage and the Authorization header', () => {
  it('keeps the credential in sessionStorage by default, localStorage with remember me', () => {
    setCredential(KEY, false);
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBe(KEY);
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBeNull();
    setCredential(ADMIN, true);
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBeNull();
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBe(ADMIN);
    resetCredentialCache();
    expect(getCredential()).toBe(ADMIN);
    clearCredential();
    expect(getCredential()).toBeNull();
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBeNull();
    expect(authHeaders()).toEqual({});
  });

  it('every API call carries the header once signed in, and none in open mode', async () => {
    await listThreads('alice');
    expect(calls[0].headers.Authorization).toBeUndefined();
    setCredential(KEY, false);
    await listThreads('alice');
    expect(calls[1].url).toBe('/api/threads/?user_id=alice');
    expect(calls[1].headers.Authorization).toBe(`Bearer ${KEY}`);
    expect(calls[1].headers.Accept).toBe('application/json');
  });

  it('a 401 from any call signals sign-in; a late 401 for a replaced credential does not', async () => {
    const seen: string[] = [];
    const off = onUnauthorized((e) => seen.push(`${e.status} ${e.code}`));
    setCredential(KEY, false);
    answer = () => ({ status: 401, body: { code: 'invalid_credentials', message: 'revoked' } });
    await expect(listThreads('alice')).rejects.toMatchObject({ status: 401, code: 'invalid_credentials' });
    expect(seen).toEqual(['401 invalid_credentials']);

    // A call sent with the old key answers after the admin signed in: no sign-out.
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    vi.mocked(fetch).mockImplementationOnce(async () => {
      await gate;
      return new Response(JSON.stringify({ code: 'invalid_credentials', message: 'x' }), { status: 401 });
    });
    const late = listThreads('alice');
    setCredential(ADMIN, false);
    release();
    await expect(late).rejects.toMatchObject({ status: 401 });
    expect(seen).toHaveLength(1);

    // 403 is not a sign-out: the caller is known, only not allowed.
    answer = () => ({ status: 403, body: { code: 'forbidden', message: 'admin only' } });
    await expect(listThreads('bob')).rejects.toMatchObject({ status: 403, code: 'forbidden' });
    expect(seen).toHaveLength(1);
    off();
  });

  it('whoami sends only the credential it is given', async () => {
    setCredential(KEY, false);
    answer = () => ({ status: 200, body: who('token', 'admin') });
    await whoami(ADMIN);
    expect(calls[0].url).toBe('/api/auth/whoami');
    expect(calls[0].headers.Authorization).toBe(`Bearer ${ADMIN}`);
    await whoami(null);
    expect(calls[1].headers.Authorization).toBeUndefined();
  });
});

describe('startSession (whoami at start)', () => {
  it('open mode: ready with the banner session; a leftover credential is dropped', async () => {
    setCredential(KEY, true);
    answer = () => ({ status: 200, body: who('open', 'open') });
    expect(await startSession()).toEqual({ phase: 'ready', session: { mode: 'open', legacy: false } });
    expect(getCredential()).toBeNull();
  });

  it('a node without whoami (404) is an open-mode node', async () => {
    answer = () => ({ status: 404, body: { code: 'not_found', message: 'no route' } });
    expect(await startSession()).toEqual({ phase: 'ready', session: { mode: 'open', legacy: true } });
  });

  it('token mode without a credential asks to sign in', async () => {
    answer = () => ({ status: 200, body: who('token', 'anonymous') });
    expect(await startSession()).toEqual({ phase: 'signin', message: null });
  });

  it('token mode with a stored key: the user session, the key sent', async () => {
    setCredential(KEY, false);
    answer = (_u, h) => (h.Authorization === `Bearer ${KEY}` ? { status: 200, body: who('token', 'user', 'bob', 'k1') } : { status: 200, body: who('token', 'anonymous') });
    expect(await startSession()).toEqual({ phase: 'ready', session: { mode: 'token', caller: 'user', userId: 'bob', keyId: 'k1' } });
  });

  it('a stored credential the server refuses is forgotten, with a message', async () => {
    setCredential(KEY, true);
    answer = (_u, h) => (h.Authorization ? { status: 401, body: { code: 'invalid_credentials', message: 'unknown key' } } : { status: 200, body: who('token', 'anonymous') });
    const s = await startSession();
    expect(s).toMatchObject({ phase: 'signin', message: expect.stringContaining('invalid_credentials') });
    expect(getCredential()).toBeNull();
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBeNull();
  });

  it('a refused stored credential on a node now in open mode: open mode, not a sign-in', async () => {
    setCredential(KEY, false);
    answer = (_u, h) => (h.Authorization ? { status: 401, body: { code: 'invalid_credentials', message: 'unknown key' } } : { status: 200, body: who('open', 'open') });
    expect(await startSession()).toEqual({ phase: 'ready', session: { mode: 'open', legacy: false } });
    expect(getCredential()).toBeNull();
  });

  it('an unreadable answer or a server error fails visibly instead of guessing a mode', async () => {
    answer = () => ({ status: 200, body: { mode: 'token', caller: 'god' } });
    expect(await startSession()).toMatchObject({ phase: 'failed', message: expect.stringContaining('bad_whoami') });
    answer = () => ({ status: 500, body: { code: 'internal', message: 'boom' } });
    expect(await startSession()).toMatchObject({ phase: 'failed', message: expect.stringContaining('internal') });
  });
});

describe('signIn', () => {
  it('a malformed credential is refused without asking the server', async () => {
    expect(await signIn('', false)).toHaveProperty('error');
    expect(await signIn(KEY.slice(0, 30), false)).toHaveProperty('error');
    expect(calls).toHaveLength(0);
  });

  it('a refused credential is not kept and the code is shown', async () => {
    answer = () => ({ status: 401, body: { code: 'invalid_credentials', message: 'no such key' } });
    const r = await signIn(KEY, true);
    expect(r).toEqual({ error: expect.stringContaining('(invalid_credentials)') });
    expect(getCredential()).toBeNull();
  });

  it('too many failures: the wait from Retry-After is shown', async () => {
    answer = () => ({ status: 429, body: { code: 'too_many_failed_auth', message: 'slow down' }, headers: { 'Retry-After': '42' } });
    const r = await signIn(KEY, false);
    expect(r).toEqual({ error: expect.stringMatching(/try again in 42 s \(too_many_failed_auth\)/) });
  });

  it('an accepted key is kept (session or local storage) and gives the user session', async () => {
    answer = () => ({ status: 200, body: who('token', 'user', 'bob', 'k1') });
    const r = await signIn(`  ${KEY} `, false);
    expect(r).toEqual({ state: { phase: 'ready', session: { mode: 'token', caller: 'user', userId: 'bob', keyId: 'k1' } } });
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBe(KEY);
    answer = () => ({ status: 200, body: who('token', 'admin') });
    await signIn(ADMIN, true);
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBe(ADMIN);
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBeNull();
  });

  it('sign-out and a 401 forget the credential', () => {
    setCredential(KEY, true);
    expect(signOut()).toEqual({ phase: 'signin', message: null });
    expect(getCredential()).toBeNull();
    setCredential(KEY, false);
    expect(unauthorizedState({ code: 'invalid_credentials', message: 'revoked' })).toEqual({
      phase: 'signin',
      message: expect.stringContaining('invalid_credentials: revoked'),
    });
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBeNull();
  });
});

describe('retryAfterSeconds', () => {
  it('reads seconds or an HTTP date', () => {
    expect(retryAfterSeconds('30')).toBe(30);
    expect(retryAfterSeconds(new Date(10_000 + 5_500).toUTCString(), 10_000)).toBe(5);
    expect(retryAfterSeconds('soon')).toBeNull();
    expect(retryAfterSeconds(null)).toBeNull();
  });
});
