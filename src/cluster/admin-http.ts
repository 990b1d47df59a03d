/**
 * Admin HTTP port: GET /status (the cluster status JSON), GET /metrics (Prometheus text),
 * GET /healthz (200 when the node is running). Anything else is 404; only GET is served, except
 * TEST ONLY /faults (GET, POST), which exists only when testFaults.enabled (src/testing/index.ts).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ClusterNode } from './node.js';
import { serveFaultsHttp } from '../testing/index.js'; // TEST ONLY: /faults (404 unless testFaults.enabled)

export class AdminHttp {
  private server: http.Server | undefined;

  constructor(private readonly node: ClusterNode) {}

  /** Listens; resolves with HOST:PORT actually bound. */
  listen(host: string, port: number): Promise<string> {
    const server = http.createServer((req, res) => {
      this.serve(req, res).catch((err) => {
        this.node.log.warn({ err, url: req.url }, 'admin request failed');
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: (err as { code?: string }).code ?? 'ERR_INTERNAL', message: String((err as Error)?.message ?? err) }));
      });
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        const a = server.address() as AddressInfo;
        resolve(`${host}:${a.port}`);
      });
    });
  }

  private async serve(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/faults') return serveFaultsHttp(this.node.testFaults, req, res); // TEST ONLY
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    switch (url.pathname) {
      case '/healthz': {
        const ok = this.node.status === 'running';
        res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok, nodeId: this.node.selfId, status: this.node.status }));
        return;
      }
      case '/status': {
        const body = await this.node.handlers.get('status')!({}, undefined as never);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
        return;
      }
      case '/metrics': {
        const text = await this.node.metrics.text();
        res.writeHead(200, { 'content-type': this.node.metrics.contentType });
        res.end(text);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not found' }));
    }
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
