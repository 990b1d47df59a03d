/**
 * Where the package lives, found from this module's own location. The same code runs from
 * `src/cli/` (through tsx) and bundled into `dist/ptn.mjs`, so paths are found by walking up to
 * the package.json of this package rather than by a fixed number of `..`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const PACKAGE_NAME = 'partition-transfer-node';
let root: string | undefined;

/** The package root (the folder holding package.json and bin/). */
export function packageRoot(): string {
  if (root !== undefined) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pj = path.join(dir, 'package.json');
    if (fs.existsSync(pj)) {
      try {
        if ((JSON.parse(fs.readFileSync(pj, 'utf8')) as { name?: string }).name === PACKAGE_NAME) return (root = dir);
      } catch {
        /* not ours: keep walking */
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the ${PACKAGE_NAME} package root above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

/** Path of the `ptn` executable script. */
export function binPtnPath(): string {
  return path.join(packageRoot(), 'bin', 'ptn');
}

/** The package version from package.json. */
export function packageVersion(): string {
  return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}
