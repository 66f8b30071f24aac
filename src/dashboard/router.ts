// The dashboard's URLs, in the History API: a link click changes the path without a reload,
// and every path also loads on its own (the server answers each with the page).
import { useEffect, useState } from 'preact/hooks';

export type Route =
  | { view: 'machines' }
  | { view: 'machine'; machine: string; state: string | null }
  | { view: 'record'; machine: string; id: string }
  | { view: 'workers' }
  | { view: 'nodes' }
  | { view: 'missing'; path: string };

/** The view of a location. */
export function parseRoute(pathname: string, search: string): Route {
  const parts = pathname.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { view: 'machines' };
  if (parts[0] === 'machines' && parts.length === 2) return { view: 'machine', machine: parts[1] as string, state: new URLSearchParams(search).get('state') };
  if (parts[0] === 'machines' && parts.length === 4 && parts[2] === 'records') return { view: 'record', machine: parts[1] as string, id: parts[3] as string };
  if (parts[0] === 'workers' && parts.length === 1) return { view: 'workers' };
  if (parts[0] === 'nodes' && parts.length === 1) return { view: 'nodes' };
  return { view: 'missing', path: pathname };
}

export const paths = {
  machine: (machine: string, state?: string | null) => `/machines/${encodeURIComponent(machine)}${state ? `?state=${encodeURIComponent(state)}` : ''}`,
  record: (machine: string, id: string) => `/machines/${encodeURIComponent(machine)}/records/${encodeURIComponent(id)}`,
};

const listeners = new Set<() => void>();

/** Goes to `href` in this page (pushState), as a link click does. */
export function navigate(href: string, replace = false): void {
  if (replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  for (const f of listeners) f();
}

/** The current route, re-rendered on navigation and on back/forward. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.pathname, location.search));
  useEffect(() => {
    const update = () => setRoute(parseRoute(location.pathname, location.search));
    listeners.add(update);
    addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      removeEventListener('popstate', update);
    };
  }, []);
  return route;
}

/** Same-origin link clicks (no modifier key, no target) navigate in the page. */
export function interceptLinks(root: HTMLElement): void {
  root.addEventListener('click', (e) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const a = (e.target as Element | null)?.closest('a');
    if (!a || a.target || a.hasAttribute('download') || a.origin !== location.origin || a.pathname.startsWith('/api/')) return;
    e.preventDefault();
    navigate(a.pathname + a.search);
  });
}
