import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from '../helpers/nats.js';

/** The newest PostgreSQL server binaries installed (Debian layout), or `PG_BIN`. */
function pgBin(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, 'bin', 'initdb'))) return join(root, v, 'bin');
  throw new Error('no PostgreSQL server binaries: set PG_BIN to the folder of initdb and pg_ctl');
}

const asRoot = process.getuid?.() === 0;
/** initdb and postgres refuse to run as root: as root, run them as the `postgres` user. */
function pgArgs(cmd: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

const live = new Set<PgCluster>();
process.on('exit', () => {
  for (const c of live) c.stopSync();
});

/**
 * A PostgreSQL cluster of the test's own: initdb into a temp folder, on a free port, so the test
 * can kill and restart it without touching the shared server. The role `drover` (no superuser,
 * so `superuser_reserved_connections` leave the test room when drover's connections run out)
 * owns the database `chaos`; `url` is drover's, `adminUrl` the test's.
 */
export class PgCluster {
  readonly dir: string;
  private readonly bin = pgBin();
  private constructor(
    readonly port: number,
    readonly maxConnections: number,
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'drover-chaos-pg-'));
    if (asRoot) {
      const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
      const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
      chownSync(this.dir, uid, gid);
    }
    chmodSync(this.dir, 0o700);
  }

  static async create(options: { maxConnections?: number } = {}): Promise<PgCluster> {
    const c = new PgCluster(await freePort(), options.maxConnections ?? 60);
    c.run('initdb', ['-D', join(c.dir, 'data'), '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    live.add(c);
    c.start();
    const admin = new pg.Client({ connectionString: c.adminUrl.replace('/chaos', '/postgres') });
    await admin.connect();
    await admin.query('CREATE ROLE drover LOGIN');
    await admin.query('CREATE DATABASE chaos OWNER drover');
    await admin.end();
    return c;
  }

  get url(): string {
    return `postgres://drover@127.0.0.1:${this.port}/chaos`;
  }

  get adminUrl(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/chaos`;
  }

  private run(tool: string, args: string[]): void {
    const [cmd, argv] = pgArgs(join(this.bin, tool), args);
    const r = spawnSync(cmd, argv, { encoding: 'utf8', cwd: this.dir });
    if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  }

  /** Starts the server and waits until it takes connections. */
  start(): void {
    // fsync off: the machine never crashes under these tests, only the server processes do, and
    // a killed postmaster loses nothing the OS has (what `-m immediate` tests is crash recovery).
    const opts = [
      `-p ${this.port}`,
      '-c listen_addresses=127.0.0.1',
      `-c unix_socket_directories=${this.dir}`,
      `-c max_connections=${this.maxConnections}`,
      '-c fsync=off',
      '-c shared_buffers=64MB',
    ].join(' ');
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-l', join(this.dir, 'log'), '-o', opts, '-w', '-t', '60', 'start']);
  }

  /** `pg_ctl stop -m <mode>`: `immediate` kills every server process (crash recovery on start), `fast` ends every session and shuts down cleanly. */
  stop(mode: 'immediate' | 'fast' = 'fast'): void {
    this.run('pg_ctl', ['-D', join(this.dir, 'data'), '-m', mode, '-w', '-t', '60', 'stop']);
  }

  stopSync(): void {
    const [cmd, argv] = pgArgs(join(this.bin, 'pg_ctl'), ['-D', join(this.dir, 'data'), '-m', 'immediate', '-w', 'stop']);
    spawnSync(cmd, argv, { stdio: 'ignore' });
  }

  dispose(): void {
    this.stopSync();
    live.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
