/**
 * Child process of the fault point tests: installs one rule from argv, prints `before`, hits the
 * point, prints `after` and exits 0. The parent checks how it ended (kill) or resumes it (stop).
 *
 * argv: action pointName
 */
import { FaultPoints, faults, installFaultPoints } from '../../../src/testing/index.js';

const [action, name] = process.argv.slice(2) as ['kill' | 'stop', string];
installFaultPoints(new FaultPoints([{ name: 'demander.phase.*', action }]));
process.stdout.write('before\n');
await faults().hit(name, { phase: name.split('.').pop() });
process.stdout.write('after\n');
