// The CLI fed what a hostile or broken source hands over (issue 16): a link to /dev/zero or a FIFO given as
// an image is refused at once naming it (it grew without bound / hung), locally and with --server (item
// 4); in folder mode, image-named links to nothing, FIFOs and devices get their error line and exit 2
// instead of a silent skip (item 4); SIGTERM stops a run cleanly with a message and exit 130, as Ctrl-C does
// (item 10); TLS to an IP address prints no DEP0123 warning (item 10).
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bin, bottleDir, haveWeights, jsonLines, repoRoot, runLoupe, type CliResult } from './support/cli.js';

const haveData = existsSync(bottleDir);
if (!haveWeights || !haveData) process.stderr.write(`[hostile-input.test] NOTE: skipped: ${!haveWeights ? 'no weights cache' : `no shared datasets at ${bottleDir}`}\n`);

function files(sub: string, n: number, from = 0): string[] {
  const dir = join(bottleDir, sub);
  return readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(from, from + n).map((f) => join(dir, f));
}

/** `loupe ARGS`, failing the test (instead of hanging it) after `ms`. */
async function loupeWithin(args: string[], ms = 60_000): Promise<CliResult & { ms: number }> {
  const t0 = Date.now();
  const r = await Promise.race([runLoupe(args), new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`loupe ${args.join(' ')}: still running after ${ms} ms`)), ms))]);
  return { ...r, ms: Date.now() - t0 };
}

/** `loupe serve ARGS` on 127.0.0.1; resolves with its address once it logs "serving". */
async function startServe(args: string[]): Promise<{ address: string; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, [bin, '--threads', '2', 'serve', '--port', '0', '--host', '127.0.0.1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  const logs: string[] = [];
  const address = await new Promise<string>((resolvePromise, reject) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) if (line.includes('"msg":"serving"')) resolvePromise(`127.0.0.1:${(JSON.parse(line) as { address: string }).address.split(':').pop()}`);
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    child.stderr.on('data', (d: Buffer) => logs.push(d.toString()));
    void exited.then(() => reject(new Error(`loupe serve exited:\n${logs.join('')}`)));
  });
  return {
    address,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

describe.skipIf(!haveWeights || !haveData)('hostile input to the CLI', () => {
  let tmp: string;
  let model: string;
  let good: string;
  let folder: string;

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'loupe-cli-hostile-'));
    mkdirSync(join(tmp, 'good-photos'));
    for (const f of files('train/good', 12, 30)) copyFileSync(f, join(tmp, 'good-photos', basename(f)));
    const t = await runLoupe(['--threads', '2', 'train', join(tmp, 'good-photos'), '--mode', 'one-class', '--out', join(tmp, 'models', 'bottle'), '--json']);
    if (t.code !== 0) throw new Error(`train failed (${t.code}): ${t.stderr}`);
    model = join(tmp, 'models', 'bottle.loupe');
    good = files('test/good', 1)[0]!;
    symlinkSync('/dev/zero', join(tmp, 'zero.png'));
    execFileSync('mkfifo', [join(tmp, 'fifo.png')]);
    // A folder as a camera share might leave it: good images, a link to nothing, a FIFO, a device, a note.
    folder = join(tmp, 'line3');
    mkdirSync(folder);
    for (const f of files('test/good', 2)) copyFileSync(f, join(folder, basename(f)));
    symlinkSync(join(folder, 'deleted.png'), join(folder, 'dangling.png'));
    execFileSync('mkfifo', [join(folder, 'pipe.png')]);
    symlinkSync('/dev/zero', join(folder, 'zero.png'));
    writeFileSync(join(folder, 'notes.txt'), 'shift 2\n');
  });

  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('predict: a link to /dev/zero and a FIFO are refused at once, naming them; the other image is inspected (exit 2)', async () => {
    const r = await loupeWithin(['--threads', '2', 'predict', model, join(tmp, 'zero.png'), join(tmp, 'fifo.png'), good, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const lines = jsonLines(r.stdout);
    expect(lines[0]).toEqual({ file: join(tmp, 'zero.png'), error: { code: 'IMAGE_READ', message: `cannot read image ${join(tmp, 'zero.png')}: not a regular file (a character device): images are read from regular files only` } });
    expect(lines[1]).toEqual({ file: join(tmp, 'fifo.png'), error: { code: 'IMAGE_READ', message: `cannot read image ${join(tmp, 'fifo.png')}: not a regular file (a FIFO (named pipe)): images are read from regular files only` } });
    expect(lines[2]).toMatchObject({ file: good, verdict: expect.stringMatching(/^(good|anomalous)$/) });
  });

  it('predict DIR: image-named links to nothing, FIFOs and devices each get an error line (exit 2), not a silent skip', async () => {
    const r = await loupeWithin(['--threads', '2', 'predict', model, folder, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const byFile = new Map(jsonLines(r.stdout).filter((l) => 'file' in l).map((l) => [basename(String(l['file'])), l]));
    expect([...byFile.keys()].sort()).toEqual(['000.png', '001.png', 'dangling.png', 'pipe.png', 'zero.png']);
    expect(byFile.get('dangling.png')).toMatchObject({ error: { code: 'IMAGE_READ', message: expect.stringMatching(/: a symbolic link to nothing \(dangling\)$/) } });
    expect(byFile.get('pipe.png')).toMatchObject({ error: { code: 'IMAGE_READ', message: expect.stringMatching(/not a regular file \(a FIFO/) } });
    expect(byFile.get('zero.png')).toMatchObject({ error: { code: 'IMAGE_READ', message: expect.stringMatching(/not a regular file \(a character device\)/) } });
    expect(byFile.get('000.png')).toHaveProperty('verdict');
  });

  it('--server predict: the client refuses to send a FIFO or a link to /dev/zero (UNREADABLE), at once', async () => {
    mkdirSync(join(tmp, 'served'));
    copyFileSync(model, join(tmp, 'served', 'bottle.loupe'));
    const srv = await startServe(['--models', join(tmp, 'served')]);
    try {
      const r = await loupeWithin(['--server', srv.address, 'predict', 'bottle', join(tmp, 'zero.png'), join(tmp, 'fifo.png'), good, '--json']);
      expect(r.code, r.stderr).toBe(2);
      const lines = jsonLines(r.stdout);
      expect(lines[0]).toMatchObject({ file: join(tmp, 'zero.png'), error: { code: 'UNREADABLE', message: expect.stringMatching(/not a regular file \(a device\)/) } });
      expect(lines[1]).toMatchObject({ file: join(tmp, 'fifo.png'), error: { code: 'UNREADABLE', message: expect.stringMatching(/not a regular file \(a FIFO\)/) } });
      expect(lines[2]).toHaveProperty('verdict');
    } finally {
      await srv.stop();
    }
  });

  it('SIGTERM stops a run cleanly, says so, and exits 130 (as Ctrl-C does)', async () => {
    const child = spawn(process.execPath, [bin, '--threads', '2', 'predict', model, join(bottleDir, 'train', 'good'), '--json'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.split('\n').length > 3 && !child.killed) child.kill('SIGTERM');
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    expect(stderr).toMatch(/loupe: terminated \(SIGTERM\), stopping/);
    expect(stderr).toMatch(/loupe: interrupted\n$/);
    // It stopped early: far fewer lines than the folder's 209 images.
    expect(stdout.trim().split('\n').length).toBeLessThan(150);
  });

  it('TLS to an IP address: no DEP0123 warning (the SNI server name is not sent for an address)', async () => {
    const certs = join(tmp, 'certs');
    mkdirSync(certs);
    const p = (f: string): string => join(certs, f);
    const ossl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
    ossl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=test-ca');
    ossl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=server');
    writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
    ossl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('server.ext'));
    mkdirSync(join(tmp, 'tls-models'));
    const srv = await startServe(['--models', join(tmp, 'tls-models'), '--tls-cert', p('server.pem'), '--tls-key', p('server.key')]);
    try {
      const r = await loupeWithin(['--server', srv.address, '--tls', '--ca', p('ca.pem'), 'models', 'list', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).not.toMatch(/DEP0123|ServerName to an IP address/);
      expect(r.stderr).toBe('');
      // The certificate is still checked against the address: one for another address is refused.
      const other = join(certs, 'other');
      mkdirSync(other);
      writeFileSync(p('other.ext'), 'subjectAltName=IP:127.0.0.2\nextendedKeyUsage=serverAuth\n');
      ossl('x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', join(other, 'server.pem'), '-days', '2', '-extfile', p('other.ext'));
      mkdirSync(join(tmp, 'tls-models-2'));
      const wrong = await startServe(['--models', join(tmp, 'tls-models-2'), '--tls-cert', join(other, 'server.pem'), '--tls-key', p('server.key')]);
      try {
        const bad = await loupeWithin(['--server', wrong.address, '--tls', '--ca', p('ca.pem'), 'models', 'list']);
        expect(bad.code).toBe(1);
        expect(bad.stderr).toMatch(/UNAVAILABLE/);
      } finally {
        await wrong.stop();
      }
    } finally {
      await srv.stop();
    }
  });
});
