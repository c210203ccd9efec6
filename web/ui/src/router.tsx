// A tiny history router: the path is state, links push history entries.

import { useEffect, useState, type AnchorHTMLAttributes, type MouseEvent } from 'react';

const EVENT = 'tally:navigate';

/** Go to a path inside the app without reloading. */
export function navigate(path: string, replace = false): void {
  if (path === window.location.pathname + window.location.search) return;
  if (replace) window.history.replaceState(null, '', path);
  else window.history.pushState(null, '', path);
  window.dispatchEvent(new Event(EVENT));
}

/** The current location path, updated on navigation and back/forward. */
export function usePath(): string {
  const [path, setPath] = useState(() => window.location.pathname);
  useEffect(() => {
    const update = () => setPath(window.location.pathname);
    window.addEventListener('popstate', update);
    window.addEventListener(EVENT, update);
    return () => {
      window.removeEventListener('popstate', update);
      window.removeEventListener(EVENT, update);
    };
  }, []);
  return path;
}

export type Route =
  | { name: 'home' }
  | { name: 'thread'; threadId: string }
  | { name: 'dashboard' }
  | { name: 'analytics' }
  | { name: 'budgets' }
  | { name: 'reconciliation' }
  | { name: 'notFound' };

/** Match a path against the app's routes. */
export function matchRoute(path: string): Route {
  const clean = path.replace(/\/+$/, '') || '/';
  if (clean === '/') return { name: 'home' };
  if (clean === '/dashboard') return { name: 'dashboard' };
  if (clean === '/analytics') return { name: 'analytics' };
  if (clean === '/budgets') return { name: 'budgets' };
  if (clean === '/reconciliation') return { name: 'reconciliation' };
  if (clean === '/threads') return { name: 'home' };
  const m = /^\/threads\/([^/]+)$/.exec(clean);
  if (m) return { name: 'thread', threadId: decodeURIComponent(m[1]) };
  return { name: 'notFound' };
}

/** An anchor that navigates client-side on a plain left click. */
export function Link({ href, onClick, ...rest }: AnchorHTMLAttributes<HTMLAnchorElement> & { href: string }) {
  const handle = (e: MouseEvent<HTMLAnchorElement>) => {
    onClick?.(e);
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href);
  };
  return <a href={href} onClick={handle} {...rest} />;
}
