// Throughput of 1 MiB binary frames server → client (the direction file chunks travel), through
// the net API (CRC on both ends) against raw `ws` on the same machine, side by side in one run.
// The receiving (dialing) side runs in a worker thread, so each end has its own event loop as two
// nodes would; `--same-thread` puts both ends on one thread instead.
// Not a test (tests never assert times); run it by hand:
//   node --import tsx test/unit/net/throughput.measure.ts [MiB per run=256] [rounds=3] [--same-thread]
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { WebSocket, WebSocketServer } from 'ws';
import { NetServer } from '../../../src/net/server.js';
import { dial } from '../../../src/net/client.js';
import { prepareFrame } from '../../../src/net/frames.js';
import type { Connection } from '../../../src/net/connection.js';
import { crc32 } from '../../../src/util/crc32.js';
import { identity, netConfig } from './fixture.js';

type Mode = 'raw' | 'rawCrc' | 'apiReuse' | 'apiFresh';
const MiB = 1 << 20;
const config = netConfig({ frameBytesMax: 2 * MiB });
let crcSink = 0; // keeps the CRC work observable

/** The receiving end: connects to `port`, resolves once `totalBytes` arrived. */
async function receive(mode: Mode, port: number, totalBytes: number): Promise<void> {
  let received = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const count = (d: Buffer) => {
    received += d.length;
    if (received >= totalBytes) resolveDone();
  };
  if (mode === 'raw' || mode === 'rawCrc') {
    const client = new WebSocket(`ws://127.0.0.1:${port}/`, { perMessageDeflate: false, maxPayload: 2 * MiB });
    client.on('message', (d: Buffer) => {
      if (mode === 'rawCrc') crcSink ^= crc32(d);
      count(d);
    });
    await done;
    client.terminate();
  } else {
    const handlers = new Map([['chunk', (b: unknown) => count(b as Buffer)]]);
    const conn = await dial(`127.0.0.1:${port}`, { identity: identity('demander'), config, handlers });
    await done;
    await conn.close();
  }
}

/** Starts `receive` in a worker (or in this thread) and resolves when it reports done. */
function startReceiver(mode: Mode, port: number, totalBytes: number, sameThread: boolean): Promise<void> {
  if (sameThread) return receive(mode, port, totalBytes);
  // The worker needs tsx's loader registered before it can import this .ts file.
  const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
  const worker = new Worker(boot, { eval: true, workerData: { mode, port, totalBytes } });
  return once(worker, 'message').then(() => worker.terminate().then(() => undefined));
}

async function sendRaw(mode: Mode, MiBs: number, sameThread: boolean): Promise<number> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 2 * MiB });
  await once(wss, 'listening');
  const received = startReceiver(mode, (wss.address() as AddressInfo).port, MiBs * MiB, sameThread);
  const [server] = (await once(wss, 'connection')) as [WebSocket];
  const source = Buffer.alloc(MiB, 0x5a);
  // The same budget and wake-up as the API: wait below sendBufferBytesMax, re-check on each write callback.
  let wake: (() => void) | undefined;
  const onWritten = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const t0 = performance.now();
  for (let i = 0; i < MiBs; i++) {
    while (server.bufferedAmount >= config.sendBufferBytesMax) await new Promise<void>((r) => (wake = r));
    if (mode === 'rawCrc') crcSink ^= crc32(source);
    server.send(source, { binary: true }, onWritten);
  }
  await received;
  const ms = performance.now() - t0;
  server.terminate();
  await new Promise((r) => wss.close(r));
  return (MiBs * MiB) / ms / 1e6; // GB/s
}

async function sendApi(mode: Mode, MiBs: number, sameThread: boolean): Promise<number> {
  let accepted!: (c: Connection) => void;
  const acceptedP = new Promise<Connection>((r) => (accepted = r));
  const server = new NetServer({ host: '127.0.0.1', port: 0, identity: identity('supplier'), config, onConnection: accepted });
  const { port } = await server.listen();
  const received = startReceiver(mode, port, MiBs * MiB, sameThread);
  const conn = await acceptedP;
  const shared = prepareFrame(MiB, 'chunk');
  shared.body.fill(0x5a);
  const t0 = performance.now();
  for (let i = 0; i < MiBs; i++) {
    let frame = shared;
    if (mode === 'apiFresh') {
      frame = prepareFrame(MiB, 'chunk'); // what the streamer does: a fresh buffer filled in place
      shared.body.copy(frame.body);
    }
    await conn.notify('chunk', frame);
  }
  await received;
  const ms = performance.now() - t0;
  await server.close();
  return (MiBs * MiB) / ms / 1e6;
}

async function main() {
  const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const sameThread = process.argv.includes('--same-thread');
  const MiBs = Number(args[0] ?? 256);
  const rounds = Number(args[1] ?? 3);
  const modes: Array<[Mode, string]> = [
    ['raw', 'raw ws'],
    ['rawCrc', 'raw ws + crc32 on both ends'],
    ['apiReuse', 'API, one frame re-sent (CRC both ends)'],
    ['apiFresh', 'API, fresh frame per chunk (alloc+copy)'],
  ];
  const results = new Map<Mode, number[]>(modes.map(([m]) => [m, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [mode] of modes) {
      const send = mode.startsWith('raw') ? sendRaw : sendApi;
      results.get(mode)!.push(await send(mode, MiBs, sameThread));
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const raw = median(results.get('raw')!);
  const where = sameThread ? 'both ends on one thread' : 'receiver in a worker thread';
  console.log(`1 MiB binary frames server → client, ${where}, ${MiBs} MiB per run, ${rounds} rounds (GB/s: median [runs], ratio to raw ws)`);
  for (const [mode, label] of modes) {
    const xs = results.get(mode)!;
    console.log(`${label.padEnd(42)} ${median(xs).toFixed(2)}  [${xs.map((x) => x.toFixed(2)).join(' ')}]  ${(median(xs) / raw).toFixed(2)}`);
  }
  if (crcSink === 0.5) console.log('unreachable');
}

if (isMainThread) {
  await main();
} else {
  const { mode, port, totalBytes } = workerData as { mode: Mode; port: number; totalBytes: number };
  await receive(mode, port, totalBytes);
  parentPort!.postMessage('done');
}
