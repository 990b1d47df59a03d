#!/usr/bin/env node
// Bundles the `ptn` command (src/cli/main.ts) into dist/ with esbuild, so bin/ptn starts without
// compiling TypeScript. Run by `npm run build` and by `prepare` (on `npm ci`).
// Packages stay external (node_modules is there at run time). Code splitting keeps the command
// implementations, and the packages they import, out of the entry chunk: `ptn --help` loads
// only commander and the command tree.
// Without esbuild (an install without dev dependencies) it says so and exits 0: bin/ptn then
// runs the sources through tsx.
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.error('build: esbuild is not installed; bin/ptn will run the TypeScript sources through tsx');
  process.exit(0);
}
const outdir = join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });
const started = performance.now();
try {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: { ptn: 'src/cli/main.ts' },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    outdir,
    outExtension: { '.js': '.mjs' },
    // Chunks sit next to ptn.mjs: src/config.ts finds config/node.schema.json at ../config from its own file.
    chunkNames: '[name]-[hash]',
    sourcemap: 'linked',
    logLevel: 'warning',
  });
} catch {
  // esbuild has printed the errors already.
  console.error('build: failed; bin/ptn runs the TypeScript sources through tsx until a build succeeds');
  process.exit(1);
}
console.log(`build: dist/ptn.mjs in ${Math.round(performance.now() - started)} ms`);
