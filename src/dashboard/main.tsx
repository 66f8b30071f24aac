// The drover dashboard: a client of the HTTP API (docs/http.md), served at `/` by the same
// server. Its views have their own URLs (router.ts); the token, when the server needs one, is
// taken once from `?token=` or asked for, and kept in sessionStorage.
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { adoptTokenFromUrl, setToken, unauthorized } from './api.js';
import { interceptLinks, type Route, useRoute } from './router.js';
import { MachineView } from './views/machine.js';
import { MachinesView } from './views/machines.js';
import { NodesView } from './views/nodes.js';
import { RecordPage } from './views/record.js';
import { WorkersView } from './views/workers.js';

function TokenForm({ onDone }: { onDone: () => void }) {
  return (
    <section class="panel token" aria-labelledby="token-title">
      <h1 id="token-title">This server needs a token</h1>
      <p>
        Paste the token it was started with (<code>drover serve --token</code>). It is kept in this tab only. You can also open the dashboard as{' '}
        <code>/?token=…</code>: the token is then removed from the address.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setToken(String(new FormData(e.currentTarget).get('token') ?? ''));
          onDone();
        }}
      >
        <label>
          Token <input name="token" type="password" required autoComplete="current-password" autoFocus />
        </label>{' '}
        <button type="submit" class="primary">
          Use it
        </button>
      </form>
    </section>
  );
}

function View({ route }: { route: Route }) {
  switch (route.view) {
    case 'machines':
      return <MachinesView />;
    case 'machine':
      return <MachineView machine={route.machine} state={route.state} />;
    case 'record':
      return <RecordPage machine={route.machine} id={route.id} />;
    case 'workers':
      return <WorkersView />;
    case 'nodes':
      return <NodesView />;
    case 'missing':
      return (
        <p class="error" role="alert">
          No page at <code>{route.path}</code>. <a href="/">See the machines</a>.
        </p>
      );
  }
}

const TITLES: Record<Route['view'], string> = { machines: 'Machines', machine: 'Statechart', record: 'Record', workers: 'Workers', nodes: 'Nodes', missing: 'Not found' };

function App() {
  const route = useRoute();
  const [needsToken, setNeedsToken] = useState(false);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const f = () => setNeedsToken(true);
    unauthorized.add(f);
    return () => void unauthorized.delete(f);
  }, []);
  useEffect(() => {
    const name = route.view === 'machine' || route.view === 'record' ? `${route.machine} · ` : '';
    document.title = `${name}${TITLES[route.view]} · drover`;
  }, [route]);
  const section = route.view === 'machine' || route.view === 'record' ? 'machines' : route.view;
  const link = (href: string, label: string, id: string) => (
    <a href={href} aria-current={section === id ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/">
          drover
        </a>
        <nav aria-label="Sections">
          {link('/', 'Machines', 'machines')}
          {link('/workers', 'Workers', 'workers')}
          {link('/nodes', 'Nodes', 'nodes')}
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        {needsToken ? (
          <TokenForm
            onDone={() => {
              setNeedsToken(false);
              setGeneration((g) => g + 1);
            }}
          />
        ) : (
          <View key={generation} route={route} />
        )}
      </main>
    </>
  );
}

adoptTokenFromUrl();
const root = document.getElementById('app') as HTMLElement;
root.textContent = '';
interceptLinks(root);
render(<App />, root);
