/**
 * Charts of the benchmark results, one function per chart kind (storage, transfer, catch-up,
 * scaling). Each takes the results document its bench writes to bench/results/*.json and writes
 * an SVG next to it.
 *
 * Rendering: Vega-Lite specs compiled to Vega and rendered to SVG headless (`renderer: 'none'`,
 * `view.toSVG()`): pure JavaScript, no canvas, no native module, no browser. Text widths are
 * estimated without a canvas, which is fine for axis labels.
 *
 * `node --import tsx bench/chart.ts FILE.json…` re-renders charts from saved results.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as vega from 'vega';
import * as vl from 'vega-lite';

// Vega-Lite's TopLevelSpec is a deep union; the specs below are plain objects checked by compile().
type Spec = Record<string, unknown>;
type Row = Record<string, string | number | null | undefined>;
type Doc = Record<string, any>;

const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
const FONT = { font: 'Helvetica, Arial, sans-serif' };

/** Compiles a Vega-Lite spec and writes it as SVG to `file`; returns the file. */
export async function renderVegaLite(spec: Spec, file: string): Promise<string> {
  const compiled = vl.compile({ $schema: SCHEMA, config: { ...FONT, axis: { labelFontSize: 11, titleFontSize: 12 } }, ...spec } as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    const svg = await view.toSVG();
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(file, svg);
  } finally {
    view.finalize();
  }
  console.log(`chart written to ${file}`);
  return file;
}

const bars = (title: string, rows: Row[], x: Spec, y: Spec, extra: Spec = {}): Spec => ({
  title,
  width: 260,
  height: 180,
  data: { values: rows },
  mark: { type: 'bar', tooltip: true },
  encoding: { x, y, ...extra },
});

/** bench:storage — put throughput by durability, and the two ratios against their targets. */
export function renderStorageChart(r: Doc, file: string): Promise<string> {
  const puts: Row[] = [
    { mode: 'fsync (group commit)', opsPerSec: r.puts?.fsync?.opsPerSec },
    { mode: 'background', opsPerSec: r.puts?.background?.opsPerSec },
  ];
  const ratios: Row[] = [
    { what: 'checkpoint/raw', ratio: r.checkpoint?.ratio, target: 0.7 },
    { what: 'open large/small', ratio: r.open?.ratio, target: 2 },
  ];
  return renderVegaLite(
    {
      title: `bench:storage (${r.when ?? ''})`,
      hconcat: [
        bars('put throughput (ops/s)', puts, { field: 'mode', type: 'nominal', title: null, axis: { labelAngle: 0, labelLimit: 200 } }, { field: 'opsPerSec', type: 'quantitative', title: 'ops/s' }),
        {
          title: 'ratios (red tick = target: checkpoint ≥, open ≤)',
          width: 260,
          height: 180,
          data: { values: ratios },
          encoding: { x: { field: 'what', type: 'nominal', title: null, axis: { labelAngle: 0, labelLimit: 200 } } },
          layer: [
            { mark: { type: 'bar', tooltip: true }, encoding: { y: { field: 'ratio', type: 'quantitative', title: 'ratio' } } },
            { mark: { type: 'tick', color: 'firebrick', thickness: 3, size: 50 }, encoding: { y: { field: 'target', type: 'quantitative' } } },
          ],
        },
      ],
    },
    file,
  );
}

/** bench:transfer — MB/s of every variant, with the raw fsync'd copy and raw TCP pipe as lines. */
export function renderTransferChart(r: Doc, file: string): Promise<string> {
  const rows: Row[] = (r.variants ?? []).map((v: Doc) => ({ variant: v.name, mbPerSec: v.mbPerSec, path: v.path }));
  const limits: Row[] = [
    { limit: "raw fsync'd copy", mbPerSec: r.limits?.rawCopyMBps },
    { limit: 'raw TCP pipe', mbPerSec: r.limits?.rawPipeMBps },
  ].filter((l) => typeof l.mbPerSec === 'number');
  return renderVegaLite(
    {
      title: `bench:transfer — ${Math.round((r.bytes ?? 0) / 1048576)} MiB in ${r.files ?? '?'} partition files`,
      width: 420,
      height: 240,
      layer: [
        {
          data: { values: rows },
          mark: { type: 'bar', tooltip: true },
          encoding: {
            x: { field: 'variant', type: 'nominal', sort: null, title: null, axis: { labelAngle: 0 } },
            y: { field: 'mbPerSec', type: 'quantitative', title: 'MB/s (MiB/s)' },
            color: { field: 'path', type: 'nominal', title: 'path' },
          },
        },
        {
          data: { values: limits },
          mark: { type: 'rule', strokeDash: [6, 3] },
          encoding: { y: { field: 'mbPerSec', type: 'quantitative' }, stroke: { field: 'limit', type: 'nominal', title: 'limit', scale: { range: ['firebrick', 'gray'] } } },
        },
      ],
      resolve: { scale: { color: 'independent' } },
    },
    file,
  );
}

/** bench:catchup — time until in sync (ptn join vs Redis full sync), write latency by phase and over time. */
export function renderCatchupChart(r: Doc, file: string): Promise<string> {
  const times: Row[] = [{ system: 'ptn join', seconds: r.ptn?.joinSeconds }];
  if (typeof r.redis?.syncSeconds === 'number') times.push({ system: 'Redis sync', seconds: r.redis.syncSeconds });
  // The disk floor of the same run: what a raw fsync'd write of the files, and of the values alone, takes.
  // Short labels: four bars share the axis.
  if (typeof r.floor?.fileSeconds === 'number') times.push({ system: 'disk: files', seconds: r.floor.fileSeconds });
  if (typeof r.floor?.valueSeconds === 'number') times.push({ system: 'disk: values', seconds: r.floor.valueSeconds });
  const lat: Row[] = [];
  for (const [system, run] of [['ptn', r.ptn], ['Redis', r.redis]] as const) {
    for (const phase of ['before', 'during', 'after']) {
      const p = run?.load?.phases?.[phase];
      if (p) lat.push({ system, phase, stat: 'p50', ms: p.p50Ms }, { system, phase, stat: 'p99', ms: p.p99Ms });
    }
  }
  const byPhase: Spec = {
    title: 'write latency (ms, log scale) before / during / after',
    // Points, not bars: a bar has no base on a log scale, and latencies span 1 ms to seconds.
    data: { values: lat.filter((row) => typeof row.ms === 'number' && (row.ms as number) > 0) },
    width: 170,
    height: 180,
    mark: { type: 'point', filled: true, size: 90, tooltip: true },
    encoding: {
      column: { field: 'system', type: 'nominal', title: null },
      x: { field: 'phase', type: 'nominal', sort: ['before', 'during', 'after'], title: null, axis: { labelAngle: 0 } },
      xOffset: { field: 'stat', type: 'nominal' },
      y: { field: 'ms', type: 'quantitative', title: 'ms', scale: { type: 'log' } },
      color: { field: 'stat', type: 'nominal', title: null },
    },
  };
  const toSync = bars("seconds until the new copy is in sync (disk: a raw fsync'd write)", times, { field: 'system', type: 'nominal', title: null, axis: { labelAngle: 0 } }, { field: 'seconds', type: 'quantitative', title: 's' });
  return renderVegaLite(
    {
      title: `bench:catchup — ${r.params?.entries ?? '?'} entries × ${r.params?.valueBytes ?? '?'} B, load ${Math.round(r.rate ?? 0)} writes/s`,
      vconcat: [{ hconcat: [toSync, byPhase], resolve: { scale: { x: 'independent', xOffset: 'independent', color: 'independent' } } }, latencyTimeline(r)],
      resolve: { scale: { color: 'independent' } },
    },
    file,
  );
}

/** Worst write latency per timeline window of each system, in seconds from the start of its join (0). */
function latencyTimeline(r: Doc): Spec {
  const rows: Row[] = [];
  const marks: Row[] = [{ what: 'join starts', atSec: 0 }];
  for (const [system, run] of [['ptn', r.ptn], ['Redis', r.redis]] as const) {
    const load = run?.load;
    if (!load?.timeline || load.phaseStartsMs?.during === undefined) continue;
    const joinAtSec = (load.phaseStartsMs.during - load.startedAtMs) / 1000;
    for (const w of load.timeline as Doc[]) if (w.ops > 0) rows.push({ system, atSec: w.atSec - joinAtSec, maxMs: Math.max(0.1, w.maxMs) });
    if (load.phaseStartsMs.after !== undefined) marks.push({ what: `${system} in sync`, atSec: (load.phaseStartsMs.after - load.phaseStartsMs.during) / 1000 });
  }
  return {
    title: 'worst write latency per 250 ms of due time (ms, log scale); dashed: join start, in sync',
    width: 640,
    height: 180,
    layer: [
      {
        data: { values: rows },
        mark: { type: 'line', interpolate: 'step-after', tooltip: true },
        encoding: {
          x: { field: 'atSec', type: 'quantitative', title: 'seconds from the start of the join' },
          y: { field: 'maxMs', type: 'quantitative', title: 'ms', scale: { type: 'log' } },
          color: { field: 'system', type: 'nominal', title: null },
        },
      },
      {
        data: { values: marks },
        mark: { type: 'rule', strokeDash: [4, 3], color: 'gray' },
        encoding: { x: { field: 'atSec', type: 'quantitative' }, tooltip: { field: 'what' } },
      },
    ],
  };
}

/** One log-log panel of the scaling chart: points and lines per series, the fitted exponent in the subtitle. */
function scalingPanel(title: string, rows: Row[], xTitle: string, yTitle: string, exponent: number | undefined): Spec {
  const k = exponent === undefined || !Number.isFinite(exponent) ? 'n/a' : exponent.toFixed(2);
  const series = new Set(rows.map((row) => row.series));
  return {
    title: { text: title, subtitle: `fitted exponent ${k} (1 = linear, 0 = flat)` },
    width: 240,
    height: 170,
    data: { values: rows.filter((row) => typeof row.x === 'number' && typeof row.y === 'number' && (row.x as number) > 0 && (row.y as number) > 0) },
    mark: { type: 'line', point: true, tooltip: true },
    encoding: {
      x: { field: 'x', type: 'quantitative', title: xTitle, scale: { type: 'log' } },
      y: { field: 'y', type: 'quantitative', title: yTitle, scale: { type: 'log' } },
      ...(series.size > 1 ? { color: { field: 'series', type: 'nominal', title: null, legend: { orient: 'bottom', direction: 'vertical', labelLimit: 300 } } } : {}),
    },
  };
}

/** bench:scaling — four log-log panels: transfer time, swap-in time, catch-up time, demander memory. */
export function renderScalingChart(r: Doc, file: string): Promise<string> {
  const MiB = 1048576;
  const pts = (list: Doc[] | undefined, x: (d: Doc) => unknown, y: (d: Doc) => unknown, series = ''): Row[] => (list ?? []).map((d) => ({ x: x(d) as number, y: y(d) as number, series }));
  const swap = [
    ...pts(r.swapIn?.points, (d) => d.entries, (d) => d.phaseMs, 'task phase SWAPPING → INDEXING'),
    ...pts(r.swapIn?.points, (d) => d.entries, (d) => d.restoreMs, 'restorePartition, in-process'),
  ];
  return renderVegaLite(
    {
      title: 'bench:scaling — how cost grows (log-log)',
      columns: 2,
      concat: [
        scalingPanel(`transfer time (${r.transfer?.timeOf ?? '?'}) vs partition size`, pts(r.transfer?.points, (d) => d.fileBytes / MiB, (d) => d.seconds), 'partition file (MiB)', 'seconds', r.transfer?.fit?.exponent),
        scalingPanel(`swap-in time vs entries (fit: ${r.swapIn?.source ?? '?'})`, swap, 'entries', 'ms', r.swapIn?.fit?.exponent),
        scalingPanel('catch-up time vs write rate', pts(r.catchUp?.points, (d) => d.rate, (d) => d.seconds), 'writes/s during the join', 'seconds', r.catchUp?.fit?.exponent),
        scalingPanel('demander memory vs file size', pts(r.memory?.points, (d) => d.fileBytes / MiB, (d) => d.rssDeltaBytes / MiB), 'partition file (MiB)', 'RSS peak − before (MiB)', r.memory?.fit?.exponent),
      ],
      resolve: { scale: { color: 'independent' } },
    },
    file,
  );
}

/** Renders the chart of a saved results file by its `bench` field or file name. */
export async function renderResultsFile(jsonFile: string): Promise<string> {
  const doc = JSON.parse(await fs.readFile(jsonFile, 'utf8')) as Doc;
  const kind = (doc.bench as string | undefined) ?? path.basename(jsonFile, '.json');
  const out = jsonFile.replace(/\.json$/, '') + '.svg';
  switch (kind) {
    case 'storage':
      return renderStorageChart(doc, out);
    case 'transfer':
      return renderTransferChart(doc, out);
    case 'catchup':
      return renderCatchupChart(doc, out);
    case 'scaling':
      return renderScalingChart(doc, out);
    default:
      throw new Error(`${jsonFile}: unknown bench kind ${kind} (storage, transfer, catchup, scaling)`);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  for (const f of process.argv.slice(2)) await renderResultsFile(f);
}
