// /: every machine and version, with its records per status (GET /api/machines).
import { api, type MachineSummary } from '../api.js';
import { count } from '../format.js';
import { paths } from '../router.js';
import { Pending, useData } from '../ui.js';

const STATUSES = ['active', 'done', 'failed', 'cancelled'] as const;

export function MachinesView() {
  const machines = useData(() => api<MachineSummary[]>('/machines'), [], 5_000);
  return (
    <>
      <header class="view-header">
        <h1>Machines</h1>
      </header>
      <Pending loaded={machines} />
      {machines.data && machines.data.length === 0 && <p class="muted">No machine is registered on this runtime.</p>}
      {machines.data && machines.data.length > 0 && (
        <table class="machines">
          <caption class="visually-hidden">Registered machines and their records per status</caption>
          <thead>
            <tr>
              <th scope="col">machine</th>
              <th scope="col">version</th>
              <th scope="col">queue</th>
              {STATUSES.map((s) => (
                <th scope="col" class="num" key={s}>
                  {s}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {machines.data.map((m) => (
              <tr key={m.name} data-machine={m.name}>
                <th scope="row">
                  <a href={paths.machine(m.name)}>{m.name}</a>
                </th>
                <td>
                  v{m.version}
                  {m.versions.length > 1 && <span class="muted"> (registered: {m.versions.join(', ')})</span>}
                </td>
                <td>{m.queue}</td>
                {STATUSES.map((s) => (
                  <td class={`num count-${s}${m.counts[s] > 0 ? ' nonzero' : ''}`} key={s}>
                    {count(m.counts[s])}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
