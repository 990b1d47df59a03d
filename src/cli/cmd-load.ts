/**
 * `ptn load` and `ptn verify`: flag handling around load.ts and verify.ts.
 * Ctrl-C during a load stops issuing writes, lets those in flight finish (so every acknowledged
 * write reaches the ack log), prints the summary and exits 130.
 */
import { type ClientFlags, clusterAddresses, resolveClientSettings } from './client.js';
import { formatLoadResult, runLoad } from './load.js';
import { formatVerifyResult, runVerify } from './verify.js';

/** Flags of `ptn load`. */
export interface LoadFlags extends ClientFlags {
  entries: number;
  valueBytes: number;
  rate?: number;
  duration?: number;
  ackLog?: string;
  concurrency: number;
  cache: string;
  seed?: number;
  json?: boolean;
}

/** `ptn load`: exit 0, 1 when some writes failed, 130 after Ctrl-C. */
export async function load(f: LoadFlags): Promise<number> {
  const ac = new AbortController();
  const onSigint = () => {
    if (ac.signal.aborted) process.exit(130); // a second Ctrl-C: do not wait for in-flight writes
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    const r = await runLoad({
      settings: resolveClientSettings(f),
      extraAddresses: clusterAddresses(f.dir),
      entries: f.entries,
      valueBytes: f.valueBytes,
      ratePerSec: f.rate,
      durationSec: f.duration,
      concurrency: f.concurrency,
      cache: f.cache,
      ackLogPath: f.ackLog,
      seed: f.seed,
      signal: ac.signal,
    });
    process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : formatLoadResult(r));
    if (r.aborted) return 130;
    return r.failed > 0 ? 1 : 0;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** Flags of `ptn verify`. */
export interface VerifyFlags extends ClientFlags {
  ackLog?: string;
  cache?: string;
  waitMs: number;
  json?: boolean;
}

/** `ptn verify`: exit 0 only when every check holds. */
export async function verify(f: VerifyFlags): Promise<number> {
  const r = await runVerify({
    settings: resolveClientSettings(f),
    ackLogPath: f.ackLog,
    ackCache: f.cache ?? 'default',
    caches: f.cache !== undefined ? [f.cache] : undefined,
    waitRebalancedMs: f.waitMs,
  });
  process.stdout.write(f.json ? `${JSON.stringify(r)}\n` : formatVerifyResult(r));
  return r.ok ? 0 : 1;
}
