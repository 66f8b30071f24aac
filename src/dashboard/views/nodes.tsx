// /nodes: the live nodes, from their heartbeats (GET /api/nodes).
import { api, type NodeInfo } from '../api.js';
import { ago, date } from '../format.js';
import { Pending, useData } from '../ui.js';

export function NodesView() {
  const nodes = useData(() => api<NodeInfo[]>('/nodes'), [], 5_000);
  return (
    <>
      <header class="view-header">
        <h1>Nodes</h1>
      </header>
      <Pending loaded={nodes} />
      {nodes.data && nodes.data.length === 0 && <p class="muted">No live node: no runtime of this database has sent a heartbeat lately.</p>}
      {nodes.data && nodes.data.length > 0 && (
        <table class="nodes">
          <caption class="visually-hidden">Live nodes</caption>
          <thead>
            <tr>
              <th scope="col">id</th>
              <th scope="col">host</th>
              <th scope="col" class="num">pid</th>
              <th scope="col">started</th>
              <th scope="col">last heartbeat</th>
            </tr>
          </thead>
          <tbody>
            {nodes.data.map((n) => (
              <tr key={n.id}>
                <th scope="row">
                  <code>{n.id}</code>
                </th>
                <td>{n.host}</td>
                <td class="num">{n.pid}</td>
                <td>{date(n.startedAt)}</td>
                <td>
                  <time dateTime={n.lastSeen} title={date(n.lastSeen)}>
                    {ago(n.lastSeen)}
                  </time>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
