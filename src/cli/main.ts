/**
 * The `ptn` command line: the command tree, its flags and help, and how errors end a run.
 *
 * Start-up cost matters (`ptn --help` must answer well under a second), so this file only
 * declares commands; each action loads its implementation (`cmd-*.ts`) on demand, and the bundle
 * (scripts/build.mjs, code splitting) keeps those in separate chunks.
 *
 * Exit codes and errors: 0 success; 1 an operating error, a failed check or "not found"; 2 a
 * usage error or an invalid config; 130 interrupted (Ctrl-C). An error is ONE line on stderr —
 * `error ERR_CODE: message` for a coded error (usage errors are ERR_USAGE) — never a stack
 * trace (set PTN_DEBUG=1 to get one).
 */
import { Command, CommanderError, Option } from 'commander';
import { addressArg, collectArg, intArg, positiveNumberArg } from './args.js';
import { packageVersion } from './paths.js';

/** Exit code of a usage or configuration error. */
export const EXIT_USAGE = 2;
/** Exit code after Ctrl-C. */
export const EXIT_INTERRUPTED = 130;

type Action = () => Promise<number>;
type Opts = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- commander's parsed options

/** Where an action's exit code goes (commander's action results are not returned). */
interface RunState {
  code: number;
}

function clientOptions(cmd: Command, withDir = true): Command {
  cmd
    .option('--node <host:port>', 'node to talk to (default: $PTN_NODE, else the first running node of --dir, else 127.0.0.1:7401)', addressArg)
    .option('--secret <secret>', 'cluster secret (default: $PTN_SECRET, else --dir\'s cluster.json, else the config default)')
    .option('--cluster-id <id>', 'cluster id (default: $PTN_CLUSTER_ID, else --dir\'s cluster.json, else ptn-local)')
    .option('--timeout-ms <ms>', 'request timeout', intArg(10, 3_600_000));
  if (withDir) cmd.option('--dir <dir>', 'local cluster directory: its cluster.json supplies node, secret and cluster id');
  return cmd;
}

function jsonOption(cmd: Command): Command {
  return cmd.option('--json', 'print JSON for machines');
}

function cacheOption(cmd: Command): Command {
  return cmd.option('--cache <name>', 'cache name', 'default');
}

/** Builds the command tree. `state.code` receives the exit code of the action that ran. */
export function buildProgram(state: RunState = { code: 0 }): Command {
  const program = new Command('ptn');
  program
    .description('partition-transfer-node: run nodes and local clusters, read and write data, load, verify, watch rebalances')
    .version(packageVersion(), '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ writeErr: () => {}, outputError: () => {} })
    .addHelpText('after', '\nRun `ptn <command> --help` for the flags of a command. Docs: README.md, docs/protocol.md.');
  const run = (action: Action) => async () => {
    state.code = await action();
  };

  addNodeCommands(program, run);
  addClusterCommands(program, run);
  addDataCommands(program, run);
  addCacheCommands(program, run);
  addLoadCommands(program, run);
  addRebalanceCommands(program, run);
  program
    .command('demo')
    .description('what `npm start` runs: a 3-node cluster, data, a 4th node added under load, rebalance, verify, clean stop')
    .option('--dir <dir>', 'cluster directory (default: a new temporary one)')
    .option('--keep', 'keep the directory (logs, data) afterwards')
    .option('--base-port <p>', 'base port (default: a free one)', intArg(1, 65000))
    .option('--entries <n>', 'keys to load', intArg(1, 10_000_000), 3000)
    .option('--value-bytes <b>', 'value size', intArg(0, 1_048_576), 256)
    .option('--rate <ops>', 'rate of the background load while the 4th node joins', positiveNumberArg, 300)
    .action(async (o: Opts) => run(async () => (await import('./demo.js')).runDemo(o as never))());
  return program;
}

type Run = (action: Action) => () => Promise<void>;

function addNodeCommands(program: Command, run: Run): void {
  const node = program.command('node').description('run a node');
  node
    .command('start')
    .description('run one node in the foreground until SIGTERM/SIGINT (then close it cleanly, exit 0)')
    .requiredOption('--config <file>', 'node config file (see config/node.schema.json)')
    .action((o: Opts) => run(async () => (await import('./cmd-node.js')).nodeStart(o.config))());
}

function addClusterCommands(program: Command, run: Run): void {
  const cluster = program.command('cluster').description('a local cluster of node processes in a directory');
  const dir = (c: Command) => c.requiredOption('--dir <dir>', 'cluster directory (holds cluster.json and node-<i>/)');
  const timeout = (c: Command, what: string) => c.option('--timeout-ms <ms>', what, intArg(100, 3_600_000));
  const impl = () => import('./cmd-cluster.js');

  const up = cluster.command('up').description('start N nodes (node-1 first, the others seeding the running ones) and wait until the cluster is rebalanced');
  dir(up).requiredOption('--nodes <n>', 'number of nodes', intArg(1, 99));
  up.option('--base-port <p>', 'node i listens on P+i (WebSocket) and P+100+i (admin HTTP)', intArg(1, 65000))
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--secret <secret>', 'cluster secret (default: $PTN_SECRET, else the config default)')
    .option('--cluster-id <id>', 'cluster id', 'ptn-local')
    .option('--node-config <file>', 'JSON object of extra config keys for every node (e.g. {"wal":{"durability":"background"}})');
  timeout(up, 'how long to wait for the cluster to be ready (default 60000)');
  jsonOption(up).action((o: Opts) => run(async () => (await impl()).clusterUp(o as never))());

  const down = cluster.command('down').description('stop every node (SIGTERM, SIGKILL after the timeout)');
  dir(down).option('--kill', 'SIGKILL at once');
  timeout(down, 'time a node gets to exit after SIGTERM (default 15000)');
  down.action((o: Opts) => run(async () => (await impl()).clusterDown(o as never))());

  const add = cluster.command('add').description('start one more node that joins the running cluster');
  dir(add).option('--no-wait', 'return once the node is healthy, without waiting for the rebalance');
  timeout(add, 'how long to wait (default 60000)');
  jsonOption(add).action((o: Opts) => run(async () => (await impl()).clusterAdd(o as never))());

  const stop = cluster.command('stop').description('stop one node');
  dir(stop).requiredOption('--node <id>', 'node id, e.g. node-2').option('--kill', 'SIGKILL (a crash) instead of SIGTERM');
  stop.option('--no-wait', 'do not wait until the other nodes have dropped it and rebalanced');
  timeout(stop, 'how long to wait for exit and for the cluster to settle (default 15000 / 60000)');
  stop.action((o: Opts) => run(async () => (await impl()).clusterStop(o as never))());

  const start = cluster.command('start').description('restart a stopped node on its own data');
  dir(start).requiredOption('--node <id>', 'node id, e.g. node-2');
  start.option('--no-wait', 'return once the node is healthy, without waiting for the rebalance');
  timeout(start, 'how long to wait (default 60000)');
  jsonOption(start).action((o: Opts) => run(async () => (await impl()).clusterStart(o as never))());

  const ls = cluster.command('ls').description('list the nodes with their state (pids are checked)');
  jsonOption(dir(ls)).action((o: Opts) => run(async () => (await impl()).clusterLs(o as never))());

  const wait = cluster.command('wait').description('wait until every running node lists all of them and the cluster is rebalanced');
  timeout(dir(wait), 'how long to wait (default 60000)');
  wait.action((o: Opts) => run(async () => (await impl()).clusterWait(o as never))());
}

function addDataCommands(program: Command, run: Run): void {
  const impl = () => import('./cmd-data.js');
  const put = program.command('put').description('write a value (JSON when VALUE parses as JSON, else a string)').argument('<key>').argument('<value>');
  jsonOption(cacheOption(clientOptions(put))).action((k: string, v: string, o: Opts) => run(async () => (await impl()).put(k, v, o as never))());
  const get = program.command('get').description('print a value as JSON (exit 1 and "not found" when absent)').argument('<key>');
  jsonOption(cacheOption(clientOptions(get))).action((k: string, o: Opts) => run(async () => (await impl()).get(k, o as never))());
  const del = program.command('del').description('delete a key').argument('<key>');
  jsonOption(cacheOption(clientOptions(del))).action((k: string, o: Opts) => run(async () => (await impl()).del(k, o as never))());
  const query = program.command('query').description('keys whose indexed FIELD equals VALUE (parsed like put\'s VALUE)').argument('<field>').argument('<value>');
  jsonOption(cacheOption(clientOptions(query))).action((f: string, v: string, o: Opts) => run(async () => (await impl()).query(f, v, o as never))());

  const status = program.command('status').description('topology, partition map with states, rebalance in progress');
  jsonOption(clientOptions(status)).option('--no-partitions', 'leave the per-partition map out of the text form');
  status.action((o: Opts) => run(async () => (await impl()).status(o as never))());

  const config = program.command('config').description('run-time settings of a node');
  const set = config.command('set').description('change a run-time setting (e.g. rebalance.throttleBytesPerSec)').argument('<key>').argument('<value>');
  jsonOption(clientOptions(set)).action((k: string, v: string, o: Opts) => run(async () => (await impl()).configSet(k, v, o as never))());
}

function addCacheCommands(program: Command, run: Run): void {
  const impl = () => import('./cmd-data.js');
  const cache = program.command('cache').description('create, drop and list caches');
  const create = cache.command('create').description('create a cache').argument('<name>');
  create
    .option('--partitions <p>', 'partition count (default 64)', intArg(1, 65536))
    .option('--backups <b>', 'backup copies per partition (default 1)', intArg(0, 16))
    .option('--index <field>', 'JSON field to index (repeatable)', collectArg);
  jsonOption(clientOptions(create)).action((n: string, o: Opts) => run(async () => (await impl()).cacheCreate(n, o as never))());
  const drop = cache.command('drop').description('drop a cache and its data').argument('<name>');
  jsonOption(clientOptions(drop)).action((n: string, o: Opts) => run(async () => (await impl()).cacheDrop(n, o as never))());
  const list = cache.command('list').description('list caches');
  jsonOption(clientOptions(list)).action((o: Opts) => run(async () => (await impl()).cacheList(o as never))());
}

function addLoadCommands(program: Command, run: Run): void {
  const impl = () => import('./cmd-load.js');
  const load = program
    .command('load')
    .description('load generator: fills k0..k<N-1> once, or writes random keys for --duration seconds')
    .requiredOption('--entries <n>', 'number of keys', intArg(1, 1_000_000_000))
    .requiredOption('--value-bytes <b>', 'bytes of JSON per value', intArg(0, 67_108_864))
    .option('--rate <ops>', 'at most this many writes per second', positiveNumberArg)
    .option('--duration <s>', 'random keys for this many seconds instead of one fill', positiveNumberArg)
    .option('--ack-log <file>', 'append every acknowledged write as "key counter sha1" for ptn verify')
    .option('--concurrency <c>', 'requests in flight', intArg(1, 4096), 16)
    .option('--seed <n>', 'seed of the random key choice', intArg(0, 2 ** 31 - 1));
  jsonOption(cacheOption(clientOptions(load))).action((o: Opts) => run(async () => (await impl()).load(o as never))());

  const verify = program
    .command('verify')
    .description('compare the digests of every copy of every partition and check the acknowledged writes of an ack log')
    .option('--ack-log <file>', 'ack log written by ptn load')
    .addOption(new Option('--cache <name>', 'only this cache; also the cache of the ack log (default: all caches; ack log: default)'))
    .option('--wait-ms <ms>', 'how long to wait for the cluster to be rebalanced first', intArg(0, 3_600_000), 60_000);
  jsonOption(clientOptions(verify)).action((o: Opts) => run(async () => (await impl()).verify(o as never))());
}

function addRebalanceCommands(program: Command, run: Run): void {
  const rebalance = program.command('rebalance').description('follow a rebalance in progress');
  const watch = rebalance
    .command('watch')
    .description('live progress bars (overall and per partition) until the cluster is rebalanced (exit 0); one plain line per refresh when stdout is not a terminal; Ctrl-C exits 130')
    .option('--node <host:port>', 'node to ask (default: $PTN_NODE, else the first running node of --dir, else 127.0.0.1:7401)', addressArg)
    .option('--secret <secret>', 'cluster secret (default: $PTN_SECRET, else --dir\'s cluster.json, else the config default)')
    .option('--cluster-id <id>', 'cluster id (default: $PTN_CLUSTER_ID, else --dir\'s cluster.json, else ptn-local)')
    .option('--dir <dir>', 'local cluster directory: its cluster.json supplies node, secret and cluster id')
    .option('--interval-ms <ms>', 'time between two status requests', intArg(50, 3_600_000), 500)
    .option('--timeout-ms <ms>', 'give up after this long with exit 1 (default: wait until rebalanced)', intArg(1, 2_147_483_647))
    .option('--cache <name>', 'only this cache: its tasks, and done when it has no MOVING copy');
  watch.action((o: Opts) => run(async () => (await import('./cmd-rebalance.js')).rebalanceWatch(o as never))());
}

/** One line for an error; `usage` tells whether it is a usage error (exit 2). */
export function describeError(err: unknown): { line: string; code: number } {
  if (err instanceof CommanderError) {
    const msg = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
    if (err.code === 'commander.help' || err.code === 'commander.executeSubCommandAsync') {
      return { line: 'error ERR_USAGE: missing command (see --help)', code: EXIT_USAGE };
    }
    return { line: `error ERR_USAGE: ${msg}`, code: EXIT_USAGE };
  }
  const e = err as { name?: string; code?: unknown; message?: unknown };
  const message = String(e?.message ?? err).replace(/\s*\n\s*/g, ' ');
  if (e?.name === 'PtnError' && typeof e.code === 'string') {
    return { line: `error ${e.code}: ${message}`, code: e.code === 'ERR_USAGE' || e.code === 'ERR_CONFIG_INVALID' ? EXIT_USAGE : 1 };
  }
  return { line: `error: ${message}`, code: 1 };
}

/** A crash outside any awaited path still ends as one error line (exit 1), not a stack trace. */
function installCrashHandlers(): void {
  const crash = (err: unknown) => {
    process.stderr.write(`${describeError(err).line}\n`);
    if (process.env.PTN_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
}

/** Runs the command line (without the node binary and script); resolves the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  installCrashHandlers();
  const state: RunState = { code: 0 };
  try {
    await buildProgram(state).parseAsync([...argv], { from: 'user' });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError && (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)) {
      return 0;
    }
    const { line, code } = describeError(err);
    process.stderr.write(`${line}\n`);
    if (process.env.PTN_DEBUG) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return code;
  }
}
