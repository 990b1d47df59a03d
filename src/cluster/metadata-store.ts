/**
 * Where the cluster metadata (the topology: nodes, caches, partition map) is kept.
 *
 * The coordinator decides and every node keeps the latest topology it has seen, so the
 * next-oldest node can take over with the current state when the coordinator dies. The default
 * is embedded: an atomic, CRC'd JSON file in each node's data directory. A distributed store
 * (etcd, for clusters spanning machines) implements the same interface.
 */
import path from 'node:path';
import { readJsonFile, writeJsonFileAtomic } from '../util/json-file.js';
import type { Topology } from './topology.js';

export interface MetadataStore {
  /** The last saved topology, or undefined for a node that never joined. */
  load(): Promise<Topology | undefined>;
  /** Saves a topology durably (atomically replacing the previous one). */
  save(t: Topology): Promise<void>;
}

const KIND = 'ptn-topology';
const VERSION = 1;

/** The default: `<dataDir>/topology.json`. */
export class EmbeddedMetadataStore implements MetadataStore {
  private readonly file: string;
  private chain: Promise<void> = Promise.resolve();

  constructor(dataDir: string) {
    this.file = path.join(dataDir, 'topology.json');
  }

  async load(): Promise<Topology | undefined> {
    return (await readJsonFile<Topology>(this.file, KIND, [VERSION]))?.body;
  }

  save(t: Topology): Promise<void> {
    // Saves are serialized so an older topology never overwrites a newer one.
    this.chain = this.chain.then(() => writeJsonFileAtomic(this.file, KIND, VERSION, t));
    return this.chain;
  }
}
