/**
 * Prometheus metrics of one node (prom-client, a registry per node so several nodes can live in
 * one test process). Values are read from the node's components when scraped.
 */
import client from 'prom-client';
import type { ClusterNode } from './node.js';
import { isRebalanced } from './topology.js';

export class NodeMetrics {
  readonly registry = new client.Registry();

  constructor(private readonly node: ClusterNode) {
    this.registry.setDefaultLabels({ node: node.selfId });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'ptn_' }); // → ptn_process_resident_memory_bytes …
    const gauge = (name: string, help: string, read: () => number | undefined, labelNames: string[] = []) =>
      new client.Gauge({
        name,
        help,
        labelNames,
        registers: [this.registry],
        collect() {
          const v = read();
          if (v !== undefined) this.set(v);
        },
      });
    const n = this.node;
    const ready = () => n.status === 'running' && n.store !== undefined;
    gauge('ptn_topology_version', 'Topology version this node has applied.', () => n.topology()?.version);
    gauge('ptn_cluster_rebalanced', '1 when no copy of any partition is MOVING.', () => (isRebalanced(n.topology()) ? 1 : 0));
    gauge('ptn_rebalance_partitions_left', 'Copies still MOVING in the cluster.', () => {
      let left = 0;
      for (const parts of Object.values(n.topology().partitions)) for (const pc of parts) left += Object.values(pc.copies).filter((s) => s === 'MOVING').length;
      return left;
    });
    gauge('ptn_rebalance_partitions_total', 'Rebalance tasks known to this node (as demander).', () => (ready() ? (n.demander?.list().length ?? n.rebalancer.list().length) : undefined));
    new client.Gauge({
      name: 'ptn_rebalance_bytes_received',
      help: 'Bytes received by rebalancing on this node, by path (file, historical, full).',
      labelNames: ['path'],
      registers: [this.registry],
      collect() {
        if (!ready()) return;
        const by = n.demander?.counters.bytesReceived ?? { file: 0, historical: 0, full: n.rebalancer.bytesReceived };
        for (const [path, v] of Object.entries(by)) this.set({ path }, v);
      },
    });
    new client.Gauge({
      name: 'ptn_rebalance_bytes_sent',
      help: 'Bytes sent by rebalancing from this node, by path (file: snapshot chunks, historical: WAL history, full: entry batches).',
      labelNames: ['path'],
      registers: [this.registry],
      collect() {
        if (!ready()) return;
        this.set({ path: 'full' }, n.rebalancer.bytesSent);
        if (n.supplier) {
          this.set({ path: 'file' }, n.supplier.counters.bytesSent);
          this.set({ path: 'historical' }, n.supplier.counters.historyBytesSent);
        }
      },
    });
    gauge('ptn_rebalance_temp_wal_bytes', 'Bytes in the temporary (catch-up) WALs of partitions being received.', () =>
      ready() && n.demander ? n.demander.list().reduce((a, t) => a + (t.tempWalBytes ?? 0), 0) : undefined,
    );
    gauge('ptn_rebalance_replay_lag_records', 'Records the temporary-WAL replays still have to apply (sum over partitions).', () =>
      ready() && n.demander ? n.demander.list().reduce((a, t) => a + (t.replayLagRecords ?? 0), 0) : undefined,
    );
    gauge('ptn_rebalance_fence_pause_ms', 'Length of the last replay fence (writes to that partition paused).', () => (ready() ? n.demander?.counters.lastFenceMs : undefined));
    gauge('ptn_rebalance_temp_wal_truncated_bytes', 'Bytes cut from torn temporary-WAL tails when a restarted node recovered them.', () => (ready() ? n.demander?.counters.tempWalTruncatedBytes : undefined));
    gauge('ptn_rebalance_bytes_not_resent', 'Verified bytes a resumed transfer did not have to receive again.', () => (ready() ? n.demander?.counters.bytesNotResent : undefined));
    gauge('ptn_rebalance_bytes_prewarmed', 'Bytes of swapped-in partition files read into the page cache before their replay.', () => (ready() ? n.demander?.counters.bytesPrewarmed : undefined));
    gauge('ptn_rebalance_transfers_supplying', 'Snapshots this node is serving right now.', () => (ready() && n.supplier ? n.supplier.transferCount : undefined));
    gauge('ptn_rebalance_yield_waits', 'Rebalance steps that waited for the event loop to catch up (rebalance.yieldLagMs).', () => n.pacer.counts.waits);
    gauge('ptn_rebalance_yield_wait_seconds', 'Seconds rebalance steps waited for foreground work in all.', () => n.pacer.counts.waitedMs / 1000);
    gauge('ptn_event_loop_lag_ms', 'Recent event-loop lag while a rebalance paces itself (0 when none runs).', () => n.pacer.lagMs());
    gauge('ptn_rebalance_throttle_bytes_per_second', 'Rebalance byte-rate limit in force (0 = none).', () => n.config.rebalance.throttleBytesPerSec);
    gauge('ptn_writes_primary', 'Writes this node applied as the primary.', () => (ready() ? n.writes.counts.primaryWrites : undefined));
    gauge('ptn_writes_replica_applied', 'Replicated writes this node applied as a copy.', () => (ready() ? n.writes.counts.replicaApplied : undefined));
    gauge('ptn_wal_bytes', 'Bytes in the node WAL.', () => (ready() ? n.store.stats().wal.bytes : undefined));
    gauge('ptn_page_cache_bytes', 'Bytes held by the page cache.', () => (ready() ? n.store.stats().pageMemory.cachedBytes : undefined));
    gauge('ptn_page_cache_dirty_bytes', 'Dirty bytes in the page cache.', () => (ready() ? n.store.stats().pageMemory.dirtyBytes : undefined));
    gauge('ptn_checkpoints', 'Checkpoints completed since start.', () => (ready() ? n.store.stats().checkpoints : undefined));
    gauge('ptn_page_reads', 'Pages read from partition files since start (cache misses, prewarm and verification).', () => (ready() ? n.store.stats().pageMemory.pageReads : undefined));
    gauge('ptn_page_reads_sync', 'Single page reads done synchronously on the event loop (storage.syncPageReads).', () => (ready() ? n.store.stats().pageMemory.pageReadsSync : undefined));
    gauge('ptn_page_reads_slow', 'Synchronous page reads slower than a read from memory (250 us).', () => (ready() ? n.store.stats().pageMemory.pageReadsSlow : undefined));
    gauge('ptn_page_read_holds', 'Times page reads went to the thread pool for 1 s because most recent synchronous ones were slow.', () => (ready() ? n.store.stats().pageMemory.pageReadHolds : undefined));
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
