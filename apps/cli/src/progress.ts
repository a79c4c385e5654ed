// A one-line progress bar on stderr, for interactive terminals only (never mixed into piped output).
import type { WriteStream } from 'node:tty';

export class ProgressBar {
  private readonly started = Date.now();
  private lastDraw = 0;
  private drawn = false;

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
    if (!force && now - this.lastDraw < 100 && done < this.total) return;
    this.lastDraw = now;
    const columns = (this.stream as WriteStream).columns || 80;
    const elapsed = (now - this.started) / 1000;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 && done < this.total ? ` ETA ${Math.ceil((this.total - done) / rate)}s` : '';
    const tail = ` ${done}/${this.total} ${rate.toFixed(1)} ${this.unit}/s${eta}`;
    const width = Math.max(10, Math.min(40, columns - this.label.length - tail.length - 4));
    const filled = this.total > 0 ? Math.round((width * done) / this.total) : width;
    const bar = '#'.repeat(filled) + '.'.repeat(width - filled);
    this.stream.write(`\r${this.label} [${bar}]${tail}\x1b[K`);
    this.drawn = true;
  }

  /** Erases the bar so the next output starts on a clean line. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
