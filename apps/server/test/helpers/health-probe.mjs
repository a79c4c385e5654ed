// Health.Check('') of ADDRESS every EVERY_MS with a DEADLINE_MS deadline, from a process of its own (so its
// timings are the server's, not those of a busy test process). On SIGTERM prints one JSON line:
// {"checks", "notServing": [...], "worstMs", "p99Ms"} and exits.
// Usage: node health-probe.mjs ADDRESS EVERY_MS DEADLINE_MS
import { LoupeClient } from '../../dist/index.js';

const [address, everyMs, deadlineMs] = process.argv.slice(2);
const c = new LoupeClient(address);
const times = [];
const notServing = [];
let running = true;
process.on('SIGTERM', () => (running = false));
process.stdout.write('ready\n');
while (running) {
  const t0 = performance.now();
  try {
    const s = await c.checkHealth('', Number(deadlineMs));
    if (s !== 'SERVING') notServing.push(s);
  } catch (err) {
    notServing.push(err.message);
  }
  times.push(performance.now() - t0);
  await new Promise((r) => setTimeout(r, Number(everyMs)));
}
times.sort((a, b) => a - b);
process.stdout.write(`${JSON.stringify({ checks: times.length, notServing, worstMs: times[times.length - 1] ?? 0, p99Ms: times[Math.floor(times.length * 0.99)] ?? 0 })}\n`);
c.close();
process.exit(0);
