import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { App, OPEN_MODE_TEXT } from './App';
import { CREDENTIAL_KEY, getCredential, resetCredentialCache, setCredential } from './auth';

const USER_KEY = `tk-0123456789ab-${'e'.repeat(64)}`;
const ADMIN_TOKEN = 'operator-set-admin-token';

type Reply = { status: number; body?: unknown };
type Handler = (method: string, url: string, auth: string | undefined) => Reply | undefined;
let handler: Handler;
let calls: { method: string; url: string; auth: string | undefined }[];

const who = (mode: string, caller: string, user_id: string | null = null) => ({ mode, caller, user_id, key_id: user_id ? 'k1' : null });

/** A token-mode server: the admin token and bob's key; bob's key sees bob's data only. */
function tokenServer(method: string, url: string, auth: string | undefined): Reply | undefined {
  const caller = auth === `Bearer ${ADMIN_TOKEN}` ? 'admin' : auth === `Bearer ${USER_KEY}` ? 'user' : auth ? 'bad' : 'anonymous';
  if (url === '/api/auth/whoami') {
    if (caller === 'bad') return { status: 401, body: { code: 'invalid_credentials', message: 'unknown credential' } };
    return { status: 200, body: who('token', caller, caller === 'user' ? 'bob' : null) };
  }
  if (caller === 'anonymous') return { status: 401, body: { code: 'unauthenticated', message: 'sign in' } };
  if (caller === 'bad') return { status: 401, body: { code: 'invalid_credentials', message: 'unknown credential' } };
  if (url.startsWith('/api/threads/?user_id=')) {
    const u = decodeURIComponent(url.split('=')[1]);
    if (caller === 'user' && u !== 'bob') return { status: 403, body: { code: 'forbidden', message: 'not yours' } };
    return { status: 200, body: [{ thread_id: `t-${u}`, user_id: u, title: `${u}'s thread`, model: 'm', created_at: '2026-12-04T00:00:00Z', updated_at: '2026-12-04T00:00:00Z', is_active: true, total_cost: '0' }] };
  }
  if (url === '/api/models') return { status: 200, body: [] };
  if (method === 'POST' && url === '/api/users/') return { status: 201, body: { user_id: 'carol', username: 'carol', email: null, created_at: '2026-12-04T00:00:00Z' } };
  return undefined;
}

beforeEach(() => {
  calls = [];
  window.sessionStorage.clear();
  window.localStorage.clear();
  resetCredentialCache();
  window.history.replaceState(null, '', '/');
  handler = tokenServer;
  vi.stubGlobal(
    'fetch',
    vi.fn(async (url: string, init?: RequestInit) => {
      const method = init?.method ?? 'GET';
      const auth = (init?.headers as Record<string, string> | undefined)?.Authorization;
      calls.push({ method, url, auth });
      const r = handler(method, url, auth) ?? { status: 404, body: { code: 'not_found', message: `no ${method} ${url}` } };
      return new Response(r.body === undefined ? null : JSON.stringify(r.body), { status: r.status });
    }),
  );
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  resetCredentialCache();
});

async function signInWith(credential: string) {
  fireEvent.change(await screen.findByTestId('sign-in-credential'), { target: { value: credential } });
  fireEvent.click(screen.getByTestId('sign-in-submit'));
}

describe('App access control', () => {
  it('open mode: the banner, the user-id entry and every page', async () => {
    handler = (_m, url) => (url === '/api/auth/whoami' ? { status: 200, body: who('open', 'open') } : undefined);
    render(<App />);
    expect((await screen.findByTestId('open-mode-banner')).textContent).toBe(OPEN_MODE_TEXT);
    expect(screen.getByTestId('user-id-input')).toBeTruthy();
    expect(screen.getByTestId('nav-budgets')).toBeTruthy();
    expect(screen.getByTestId('nav-reconciliation')).toBeTruthy();
    expect(screen.queryByTestId('sign-out')).toBeNull();
    expect(calls.every((c) => c.auth === undefined)).toBe(true);
  });

  it('a node without whoami (404) works as before, in open mode', async () => {
    handler = () => undefined;
    render(<App />);
    expect(await screen.findByTestId('user-id-input')).toBeTruthy();
    expect(screen.getByTestId('open-mode-banner')).toBeTruthy();
  });

  it('whoami failing (500) says so and offers a retry, instead of guessing a mode', async () => {
    let fail = true;
    handler = (_m, url) => (url === '/api/auth/whoami' ? (fail ? { status: 500, body: { code: 'internal', message: 'db down' } } : { status: 200, body: who('open', 'open') }) : undefined);
    render(<App />);
    expect((await screen.findByTestId('auth-failed')).textContent).toContain('db down');
    expect(screen.queryByTestId('user-id-input')).toBeNull();
    fail = false;
    fireEvent.click(screen.getByTestId('auth-retry'));
    expect(await screen.findByTestId('user-id-input')).toBeTruthy();
  });

  it('token mode: sign-in first; a wrong key is refused with its code and not kept', async () => {
    render(<App />);
    await signInWith(`tk-0123456789ab-${'f'.repeat(64)}`);
    expect((await screen.findByTestId('sign-in-error')).textContent).toContain('invalid_credentials');
    expect(getCredential()).toBeNull();
    expect(screen.queryByTestId('nav-chat')).toBeNull();
    expect(screen.queryByTestId('open-mode-banner')).toBeNull();
    expect((screen.getByTestId('sign-in-credential') as HTMLInputElement).type).toBe('password');
  });

  it("a user's key: their own threads, no user-id entry, no admin pages or actions", async () => {
    render(<App />);
    await signInWith(USER_KEY);
    expect((await screen.findByTestId('signed-in-as')).textContent).toBe('bob');
    expect(screen.getByTestId('signed-in').getAttribute('data-caller')).toBe('user');
    expect(screen.getByTestId('current-user').textContent).toBe('bob');
    expect(screen.queryByTestId('switch-user')).toBeNull();
    expect(screen.queryByTestId('user-id-input')).toBeNull();
    expect(screen.queryByTestId('nav-budgets')).toBeNull();
    expect(screen.queryByTestId('nav-reconciliation')).toBeNull();
    expect(screen.getByTestId('nav-dashboard')).toBeTruthy();
    const items = await screen.findAllByTestId('thread-item');
    expect(items.map((i) => i.textContent)).toEqual([expect.stringContaining("bob's thread")]);
    const threadCall = calls.find((c) => c.url.startsWith('/api/threads/'));
    expect(threadCall).toEqual({ method: 'GET', url: '/api/threads/?user_id=bob', auth: `Bearer ${USER_KEY}` });
    expect(window.sessionStorage.getItem(CREDENTIAL_KEY)).toBe(USER_KEY);

    // Keys tab: no "New key"; Settings: no price form.
    fireEvent.click(screen.getByTestId('tab-keys'));
    expect(await screen.findByTestId('keys-admin-note')).toBeTruthy();
    expect(screen.queryByTestId('new-key-button')).toBeNull();
    fireEvent.click(screen.getByTestId('tab-settings'));
    await waitFor(() => expect(screen.getByTestId('price-freshness')).toBeTruthy());
    expect(screen.queryByTestId('price-form-card')).toBeNull();

    // A deep link to an admin page shows why instead of calling the API.
    act(() => window.history.pushState(null, '', '/budgets'));
    act(() => window.dispatchEvent(new PopStateEvent('popstate')));
    expect(await screen.findByTestId('admin-only')).toBeTruthy();
    expect(calls.some((c) => c.url.startsWith('/api/budgets'))).toBe(false);
  });

  it('a 401 during use returns to sign-in with the reason, forgetting the key', async () => {
    setCredential(USER_KEY, true);
    let revoked = false;
    handler = (m, url, auth) => {
      if (revoked && url !== '/api/auth/whoami') return { status: 401, body: { code: 'invalid_credentials', message: 'key revoked' } };
      return tokenServer(m, url, auth);
    };
    render(<App />);
    expect((await screen.findByTestId('signed-in-as')).textContent).toBe('bob');
    revoked = true;
    fireEvent.click(screen.getByTestId('tab-keys'));
    expect((await screen.findByTestId('sign-in-message')).textContent).toContain('invalid_credentials: key revoked');
    expect(screen.queryByTestId('signed-in')).toBeNull();
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBeNull();
  });

  it('the admin token: every page, picks any user, and signs out', async () => {
    render(<App />);
    fireEvent.click(await screen.findByTestId('sign-in-remember'));
    await signInWith(ADMIN_TOKEN);
    expect((await screen.findByTestId('signed-in-as')).textContent).toBe('admin');
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBe(ADMIN_TOKEN);
    expect(screen.getByTestId('nav-budgets')).toBeTruthy();
    expect(screen.getByTestId('nav-reconciliation')).toBeTruthy();
    fireEvent.change(screen.getByTestId('user-id-input'), { target: { value: 'carol' } });
    fireEvent.click(screen.getByTestId('user-id-submit'));
    expect((await screen.findByTestId('current-user')).textContent).toBe('carol');
    expect(calls.find((c) => c.method === 'POST' && c.url === '/api/users/')?.auth).toBe(`Bearer ${ADMIN_TOKEN}`);
    expect(screen.getByTestId('switch-user')).toBeTruthy();

    fireEvent.click(screen.getByTestId('sign-out'));
    expect(await screen.findByTestId('sign-in')).toBeTruthy();
    expect(screen.queryByTestId('sign-in-message')).toBeNull();
    expect(getCredential()).toBeNull();
    expect(window.localStorage.getItem(CREDENTIAL_KEY)).toBeNull();
  });
});
