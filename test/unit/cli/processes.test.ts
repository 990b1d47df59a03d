import test, { after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { busyPorts, clusterPorts, findFreeBasePort, isPortFree, isProcessAlive, signalProcess, stopProcess, waitForExit } from '../../../src/cli/processes.js';

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** A process that runs until killed; `ignoreTerm` makes it shrug off SIGTERM. */
async function sleeper(marker: string, ignoreTerm = false): Promise<number> {
  const script = `${ignoreTerm ? "process.on('SIGTERM', () => {});" : ''} process.stdout.write('up'); setInterval(() => {}, 1000);`;
  const c = spawn(process.execPath, ['-e', script, marker], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(c);
  await new Promise((resolve) => c.stdout!.once('data', resolve));
  return c.pid!;
}

test('a live process is ours only when its command line holds the marker', async () => {
  const pid = await sleeper('/tmp/ptn-marker-a.json');
  assert.equal(isProcessAlive(pid), true);
  assert.equal(isProcessAlive(pid, '/tmp/ptn-marker-a.json'), true);
  assert.equal(isProcessAlive(pid, '/tmp/other.json'), false);
  assert.equal(signalProcess(pid, '/tmp/other.json', 'SIGKILL'), false, 'never signals a stranger');
  assert.equal(isProcessAlive(pid), true);
  assert.equal(isProcessAlive(null), false);
  assert.equal(isProcessAlive(0), false);
});

test('stopProcess ends a process with SIGTERM, and a dead (even zombie) process counts as gone', async () => {
  const pid = await sleeper('/tmp/ptn-marker-b.json');
  assert.equal(await stopProcess(pid, '/tmp/ptn-marker-b.json', { termTimeoutMs: 10_000 }), 'terminated');
  assert.equal(isProcessAlive(pid), false);
  assert.equal(await stopProcess(pid, '/tmp/ptn-marker-b.json'), 'not-running');
});

test('a process that ignores SIGTERM is SIGKILLed after the timeout; --kill kills at once', async () => {
  const stubborn = await sleeper('/tmp/ptn-marker-c.json', true);
  assert.equal(await stopProcess(stubborn, '/tmp/ptn-marker-c.json', { termTimeoutMs: 300 }), 'killed');
  const other = await sleeper('/tmp/ptn-marker-d.json', true);
  assert.equal(await stopProcess(other, '/tmp/ptn-marker-d.json', { kill: true }), 'killed');
  assert.equal(await waitForExit(other, undefined, 1_000), true);
});

test('busy ports are found and free base ports avoid them', async () => {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  try {
    assert.equal(await isPortFree(port), false);
    assert.deepEqual(await busyPorts([port]), [port]);
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
  assert.equal(await isPortFree(port), true);
  assert.deepEqual(clusterPorts(7400, 2), [7401, 7501, 7402, 7502]);
  const base = await findFreeBasePort(4);
  assert.ok(base >= 20_000 && base + 104 < 32_768, `base ${base} below the ephemeral range`);
  assert.deepEqual(await busyPorts(clusterPorts(base, 4)), []);
});
