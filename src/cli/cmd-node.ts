/**
 * `ptn node start --config FILE`: one node in the foreground.
 *
 * Loads and validates the config (a bad one fails before anything starts, with one line naming
 * the file, the key and what was expected), starts the node, logs JSON lines to stdout, and on
 * SIGTERM or SIGINT closes it cleanly and exits 0. A second signal while closing exits at once
 * (code 1). A crash after start (uncaught exception) is logged as one fatal line, exit 1.
 */
import { checkTestFaultsAllowed, loadConfigFile } from '../config.js';
import { createLogger, type Logger } from '../util/log.js';

type Flushable = { flush?: (cb?: (err?: Error) => void) => void };

function flushLog(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    const f = (log as unknown as Flushable).flush;
    if (typeof f !== 'function') return resolve();
    try {
      f.call(log, () => resolve());
    } catch {
      resolve();
    }
  });
}

/** Runs the node until a signal stops it; resolves the exit code. */
export async function nodeStart(configPath: string): Promise<number> {
  const config = loadConfigFile(configPath);
  checkTestFaultsAllowed(config, configPath); // TEST ONLY guard: testFaults.enabled is refused unless PTN_ENABLE_TEST_FAULTS=1
  // Loaded only after the config passed: a bad config is reported without loading the node.
  const { startNode } = await import('../cluster/node.js');
  const log = createLogger({ level: config.logLevel, name: config.nodeId });
  const crash = (what: string) => (err: unknown) => {
    log.error({ err, fatal: what }, `fatal: ${what}: ${(err as Error)?.message ?? String(err)}`);
    void flushLog(log).finally(() => process.exit(1));
  };
  // The node logs its own crashes (to its log, as JSON) instead of the command line's one-liner.
  process.removeAllListeners('uncaughtException');
  process.removeAllListeners('unhandledRejection');
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled rejection'));

  let stopRequested: NodeJS.Signals | undefined;
  let wake: (() => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopRequested) {
      log.warn({ signal }, 'second signal while stopping: exiting now');
      void flushLog(log).finally(() => process.exit(1));
      return;
    }
    stopRequested = signal;
    wake?.();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  const node = await startNode(config, { log });
  if (!stopRequested) await new Promise<void>((resolve) => (wake = resolve));
  log.info({ signal: stopRequested }, 'stopping');
  let code = 0;
  try {
    await node.close();
    log.info({ signal: stopRequested }, 'closed cleanly on signal, exiting 0');
  } catch (err) {
    log.error({ err }, `close failed: ${(err as Error).message}`);
    code = 1;
  }
  await flushLog(log);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return code;
}
