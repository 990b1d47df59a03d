// A fake `ptn` for cluster-manager tests: `fake-node-process.mjs node start --config FILE`.
// FAKE_MODE=exit-node-2: node-2 logs one error line and exits 3 at start.
// FAKE_MODE=no-health: listens nowhere. Otherwise: answers GET /healthz on the admin port
// (but speaks no WebSocket, so the cluster never becomes ready) and exits 0 on SIGTERM.
import fs from 'node:fs';
import http from 'node:http';

const cfg = JSON.parse(fs.readFileSync(process.argv[process.argv.indexOf('--config') + 1], 'utf8'));
const mode = process.env.FAKE_MODE ?? '';
const log = (level, msg) => process.stdout.write(`${JSON.stringify({ level, nodeId: cfg.nodeId, msg })}\n`);
if (mode === 'exit-node-2' && cfg.nodeId === 'node-2') {
  log(50, `cannot open ${cfg.dataDir}: boom`);
  process.exit(3);
}
process.on('SIGTERM', () => {
  log(30, 'node stopped');
  process.exit(0);
});
if (mode !== 'no-health') {
  http.createServer((req, res) => res.end('ok')).listen(cfg.adminPort, cfg.host, () => log(30, 'node started'));
} else {
  setInterval(() => {}, 1000);
}
