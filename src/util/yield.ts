/**
 * Lets the event loop run pending I/O callbacks (a timer-free macrotask hop): long CPU work — page
 * sealing in a checkpoint, a replay applying records to cached pages — awaits this between slices
 * so the writes the node is acknowledging are not held behind it.
 */
import { setImmediate as nextMacrotask } from 'node:timers/promises';

export function yieldToLoop(): Promise<void> {
  return nextMacrotask().then(() => undefined);
}
