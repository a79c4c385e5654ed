// The progress bar's rate and ETA, on a fake terminal with a fake clock.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { ProgressBar } from '../src/progress.js';

/** A terminal-like stream that keeps what was last drawn. */
function fakeTty(): { stream: NodeJS.WriteStream; last: () => string } {
  const writes: string[] = [];
  const stream = { isTTY: true, columns: 100, write: (s: string) => writes.push(s) > 0 } as unknown as NodeJS.WriteStream;
  return { stream, last: () => (writes[writes.length - 1] ?? '').replace(/\r|\x1b\[K/g, '') };
}

describe('ProgressBar', () => {
  beforeEach(() => vi.useFakeTimers({ now: 0 }));
  afterEach(() => vi.useRealTimers());

  it('leaves set-up time out of the rate and shows no ETA before a second of progress', () => {
    const { stream, last } = fakeTty();
    const bar = new ProgressBar('features', 100, stream, true);
    vi.advanceTimersByTime(20_000); // model load, warm-up: no image done yet
    bar.update(0, true);
    expect(last()).toContain('0/100 20s');
    vi.advanceTimersByTime(500);
    bar.update(5, true);
    expect(last()).not.toMatch(/img\/s|ETA/);
    vi.advanceTimersByTime(1500);
    bar.update(20, true);
    // 20 images in the 2 s since the first update: 10 img/s, 80 left, not 20 / 22 s = 0.9 img/s
    expect(last()).toMatch(/20\/100 10\.0 img\/s ETA 8s$/);
  });

  it('follows a change of pace within the last few seconds', () => {
    const { stream, last } = fakeTty();
    const bar = new ProgressBar('scoring', 1000, stream, true);
    bar.update(0, true);
    for (let i = 1; i <= 10; i++) {
      vi.advanceTimersByTime(1000);
      bar.update(i * 50, true); // 50 img/s for 10 s
    }
    for (let i = 1; i <= 10; i++) {
      vi.advanceTimersByTime(1000);
      bar.update(500 + i * 10, true); // then 10 img/s
    }
    const rate = Number(/ (\d+\.\d) img\/s/.exec(last())?.[1]);
    expect(rate).toBeGreaterThanOrEqual(10);
    expect(rate).toBeLessThan(13); // the window holds only the slow part (one sample older than 5 s)
  });

  it('a burst of cache hits at the start leaves the estimate a second later', () => {
    const { stream, last } = fakeTty();
    const bar = new ProgressBar('features', 1000, stream, true);
    bar.update(0, true);
    vi.advanceTimersByTime(100);
    bar.update(500, true); // cached
    for (let i = 1; i <= 11; i++) {
      vi.advanceTimersByTime(100);
      bar.update(500 + i, true); // then 10 img/s
    }
    // 1.2 s in: the estimate starts after the burst (10 img/s, 489 left), not at 511 / 1.2 s
    expect(last()).toMatch(/511\/1000 10\.0 img\/s ETA 49s$/);
  });

  it('draws nothing when disabled and erases itself on clear', () => {
    const { stream, last } = fakeTty();
    const off = new ProgressBar('x', 10, stream, false);
    off.update(5, true);
    expect(last()).toBe('');
    const on = new ProgressBar('x', 10, stream, true);
    on.update(10, true);
    expect(last()).toContain('10/10');
    on.clear();
    expect(last()).toBe('');
  });
});
