// A one-line progress bar on stderr, for interactive terminals only (never mixed into piped output).
import type { WriteStream } from 'node:tty';

// The rate is measured from the newest update at least a second old to now: measured from the start it
// counted set-up (model load, warm-up) as work, and a burst of cache hits at a stage's start promised an
// ETA the rest of the stage could not keep (a burst drops out of the estimate a second later). No rate or
// ETA is shown until a second of work is seen.
const RATE_WINDOW_MS = 5000;
const MIN_RATE_SPAN_MS = 1000;

export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;
  private readonly samples: { t: number; done: number }[] = [];

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled: boolean = Boolean((stream as WriteStream).isTTY),
    private readonly unit: string = 'img',
  ) {}

  update(done: number, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    const last = this.samples[this.samples.length - 1];
    if (!last || done !== last.done) this.samples.push({ t: now, done });
    while (this.samples.length > 2 && now - this.samples[1]!.t > RATE_WINDOW_MS) this.samples.shift();
    if (!force && now - this.lastDraw < 100 && done < this.total) return;
    this.lastDraw = now;
    const columns = (this.stream as WriteStream).columns || 80;
    const tail = ` ${done}/${this.total} ${this.rateText(now, done)}`;
    const width = Math.max(10, Math.min(40, columns - this.label.length - tail.length - 4));
    const filled = this.total > 0 ? Math.round((width * done) / this.total) : width;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    this.stream.write(`\r${this.label} [${bar}]${tail}\x1b[K`);
    this.drawn = true;
  }

  /** "12.3 img/s ETA 40s" once a second of progress is seen, else the time so far. */
  private rateText(now: number, done: number): string {
    let from: { t: number; done: number } | undefined;
    for (const s of this.samples) if (now - s.t >= MIN_RATE_SPAN_MS) from = s; // the newest such sample
    if (!from || done <= from.done) return `${Math.round((now - this.started) / 1000)}s`;
    const rate = ((done - from.done) * 1000) / (now - from.t);
    const eta = done < this.total ? ` ETA ${Math.ceil((this.total - done) / rate)}s` : '';
    return `${rate.toFixed(1)} ${this.unit}/s${eta}`;
  }

  /** Erases the bar so the next output starts on a clean line. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
