// Heavy synchronous work of concurrent calls (anomaly maps, heatmap overlays), one slice per event-loop
// turn. Each slice is bounded (a map of at most MAX_MAP_SIDE^2 pixels, a band of overlay rows), and slices
// of all callers go through one queue, one per check phase: between two of them the loop polls its I/O,
// so a server answers other calls (health checks included) in the meantime instead of after every image
// of a batch. (Slices queued with plain setImmediate would all run in the same check phase.)
const queue: (() => void)[] = [];
let scheduled = false;

function drain(): void {
  queue.shift()?.();
  if (queue.length > 0) setImmediate(drain);
  else scheduled = false;
}

/** Runs `fn` in a later event-loop turn, alone in it among the queued slices. */
export function inTurn<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    queue.push(() => {
      try {
        resolve(fn());
      } catch (err) {
        reject(err);
      }
    });
    if (!scheduled) {
      scheduled = true;
      setImmediate(drain);
    }
  });
}
