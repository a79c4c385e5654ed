// Remote mode end to end: the built `loupe serve` in its own process on 127.0.0.1 over a models folder that
// `loupe train --out DIR/NAME` wrote into, a model trained on it remotely (`models train`), then
// `loupe --server ... inspect --json` and the other remote verbs; and the one output contract: local
// `loupe predict MODEL DIR` and remote `loupe --server H:P inspect DIR --model NAME` print the same lines
// and exit with the same code. Needs the real weights and the shared MVTec bottle images (skipped, with a
// note, without them).
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, isAbsolute, join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { bin, bottleDir, haveWeights, jsonLines, runLoupe, type CliResult } from './support/cli.js';

const bottle = bottleDir;
const haveData = existsSync(bottle);
if (!haveWeights || !haveData) process.stderr.write(`[remote.test] NOTE: skipped: ${!haveWeights ? 'no weights cache' : `no shared datasets at ${bottle}`}\n`);

const loupe = (args: string[]): Promise<CliResult> => runLoupe(args);

function files(sub: string, n: number, from = 0): string[] {
  const dir = join(bottle, sub);
  return readdirSync(dir).filter((f) => f.endsWith('.png')).sort().slice(from, from + n).map((f) => join(dir, f));
}

/** `loupe serve ARGS` on 127.0.0.1 in its own process, resolved once it logs "serving". */
async function startServe(args: string[], logs: string[]): Promise<{ child: ChildProcess; address: string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [bin, '--threads', '2', 'serve', '--port', '0', '--host', '127.0.0.1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const address = await new Promise<string>((resolvePromise, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        if (line.trim()) logs.push(line);
        if (line.includes('"msg":"serving"')) resolvePromise(`127.0.0.1:${(JSON.parse(line) as { address: string }).address.split(':').pop()}`);
      }
      buf = buf.slice(buf.lastIndexOf('\n') + 1);
    });
    child.stderr!.on('data', (d: Buffer) => logs.push(d.toString()));
    void exited.then((c) => reject(new Error(`loupe serve exited (${c}):\n${logs.join('\n')}`)));
  });
  return { child, address, exited };
}

describe.skipIf(!haveWeights || !haveData)('loupe serve + loupe --server', () => {
  let tmp: string;
  let server: ChildProcess;
  let exited: Promise<number | null>;
  let address: string;
  const logs: string[] = [];
  const remote = (...args: string[]): Promise<CliResult> => loupe(['--server', address, ...args]);

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'loupe-cli-remote-'));
    mkdirSync(join(tmp, 'models'));
    // A one-class model trained locally on a plain folder of good PNGs, written as models/bottle-oc
    // (train adds .loupe): the server must load it at start.
    mkdirSync(join(tmp, 'good-photos'));
    for (const f of files('train/good', 20, 10)) copyFileSync(f, join(tmp, 'good-photos', basename(f)));
    const t = await loupe(['--threads', '2', 'train', join(tmp, 'good-photos'), '--mode', 'one-class', '--out', join(tmp, 'models', 'bottle-oc'), '--json']);
    if (t.code !== 0) throw new Error(`train failed (${t.code}): ${t.stderr}`);
    ({ child: server, address, exited } = await startServe(['--models', join(tmp, 'models'), '--metrics-port', '0'], logs));
    // training data laid out as the CLI reads it: <label>/ folders
    for (const [label, sub, from] of [['good', 'train/good', 0], ['broken', 'test/broken_large', 0]] as const) {
      mkdirSync(join(tmp, 'train', label), { recursive: true });
      for (const f of files(sub, 4, from)) copyFileSync(f, join(tmp, 'train', label, f.split('/').pop()!));
    }
    mkdirSync(join(tmp, 'good'));
    for (const f of files('train/good', 3, 4)) copyFileSync(f, join(tmp, 'good', f.split('/').pop()!));
  });

  afterAll(async () => {
    if (server && server.exitCode === null) {
      server.kill('SIGKILL');
      await exited;
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('models train: trains on the server with live progress, loads the new version', async () => {
    const r = await remote('models', 'train', 'bottle', '--kind', 'svm', join(tmp, 'train'), '--json');
    expect(r.stderr).toMatch(/receiving/);
    expect(r.stderr).toMatch(/features/);
    expect(r.code, r.stderr).toBe(0);
    const [m] = jsonLines(r.stdout);
    expect(m).toMatchObject({ name: 'bottle', version: '1', kind: 'svm', state: 'loaded', classes: ['broken', 'good'] });
  });

  it('models list / unload / load; serve loaded what `loupe train --out DIR/NAME` wrote', async () => {
    const list = await remote('models', 'list', '--json');
    expect(list.code).toBe(0);
    const models = jsonLines(list.stdout);
    expect(models.map((m) => `${String(m['name'])}@${String(m['version'])}:${String(m['state'])}`).sort()).toEqual(['bottle-oc@1:loaded', 'bottle@1:loaded']);
    expect(models.find((m) => m['name'] === 'bottle-oc')).toMatchObject({ kind: 'one-class', state: 'loaded' });
    expect(logs.join('\n')).not.toMatch(/skip/i); // no file of the folder was ignored
    const un = await remote('models', 'unload', 'bottle', '--json');
    expect(jsonLines(un.stdout)[0]).toMatchObject({ state: 'available' });
    const again = await remote('models', 'unload', 'bottle');
    expect(again.code).toBe(0);
    expect(again.stdout).toBe("model 'bottle' was not loaded: nothing to unload\n");
    const ld = await remote('models', 'load', 'bottle', '--json');
    expect(jsonLines(ld.stdout)[0]).toMatchObject({ state: 'loaded' });
    const missing = await remote('models', 'load', 'nope');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/NOT_FOUND.*nope/);
  });

  it('inspect --json: one line per image, a summary line; exit 0 when all good', async () => {
    const r = await remote('inspect', join(tmp, 'good'), '--model', 'bottle', '--json');
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.length).toBe(4);
    const results = lines.slice(0, 3);
    for (const l of results) {
      expect(Object.keys(l)).toEqual(['file', 'verdict', 'score', 'rawScore', 'defectType', 'classScores']);
      expect(l['verdict']).toBe('good');
      expect(l['defectType']).toBeNull(); // as local predict writes it, not proto3's ''
      expect(Object.keys(l['classScores'] as object)).toEqual(['broken', 'good']);
    }
    // In input order (the answers may arrive in another).
    expect(results.map((l) => l['file'])).toEqual(readdirSync(join(tmp, 'good')).sort().map((f) => join(tmp, 'good', f)));
    expect(lines[3]).toEqual({ total: 3, good: 3, anomalous: 0, errors: 0 });
  });

  it('inspect: exit 1 when some image is anomalous, 2 when some image could not be inspected', async () => {
    const broken = files('test/broken_large', 1)[0]!;
    const anomalous = await remote('inspect', broken, join(tmp, 'good'), '--model', 'bottle', '--json', '--window', '2');
    expect(anomalous.code, anomalous.stderr).toBe(1);
    const lines = jsonLines(anomalous.stdout);
    expect(lines.find((l) => l['file'] === broken)).toMatchObject({ verdict: 'anomalous', defectType: 'broken' });
    expect(lines[lines.length - 1]).toEqual({ total: 4, good: 3, anomalous: 1, errors: 0 });

    const junk = join(tmp, 'junk.png');
    writeFileSync(junk, 'not a png');
    const bad = await remote('inspect', junk, join(tmp, 'good'), '--model', 'bottle', '--json');
    expect(bad.code).toBe(2);
    const badLines = jsonLines(bad.stdout);
    // The Loupe error code (ItemError.reason), as local predict prints it, naming the file.
    expect(badLines.find((l) => l['file'] === junk)!['error']).toMatchObject({ code: 'IMAGE_DECODE', message: expect.stringContaining(junk) });
    expect(badLines[badLines.length - 1]).toEqual({ total: 4, good: 3, anomalous: 0, errors: 1 });

    // Over the message limit: that image is an error, the stream and the other images go on.
    const huge = join(tmp, 'huge.png');
    writeFileSync(huge, Buffer.alloc(17 * 2 ** 20, 1));
    const big = await remote('inspect', huge, join(tmp, 'good'), '--model', 'bottle', '--json');
    expect(big.code, big.stderr).toBe(2);
    const bigLines = jsonLines(big.stdout);
    expect(bigLines.find((l) => l['file'] === huge)!['error']).toMatchObject({ code: 'TOO_LARGE' });
    expect(bigLines[bigLines.length - 1]).toEqual({ total: 4, good: 3, anomalous: 0, errors: 1 });

    const unknown = await remote('inspect', junk, '--model', 'no-such-model', '--json');
    expect(unknown.code).toBe(2);
    expect(jsonLines(unknown.stdout)[0]!['error']).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('health: SERVING and exit 0; a model it does not have: SERVICE_UNKNOWN and exit 1 (the container health check)', async () => {
    const ok = await remote('health');
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('SERVING\n');
    const unknown = await remote('health', '--service', 'no-such-model');
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('SERVICE_UNKNOWN\n');
  });

  it('stats --json: every GetStats field', async () => {
    const r = await remote('stats', '--json');
    expect(r.code, r.stderr).toBe(0);
    const st = jsonLines(r.stdout)[0]!;
    for (const k of ['startedAt', 'uptimeS', 'inspections', 'queueDepth', 'maxBatchSize', 'maxQueueDelayMs', 'maxInFlight', 'maxQueue', 'recorded', 'loadedModels', 'trainingsRunning', 'meanImagesPerBatch', 'dedupe']) expect(st, k).toHaveProperty(k);
    expect(st['loadedModels']).toBe(2);
    expect(st['trainingsRunning']).toBe(0);
    expect(Date.parse(st['startedAt'] as string)).toBeLessThanOrEqual(Date.now());
  });

  it('inspections list --since: the recorded results', async () => {
    const r = await remote('inspections', 'list', '--since', '1h', '--json', '--limit', '1000');
    expect(r.code, r.stderr).toBe(0);
    const rows = jsonLines(r.stdout);
    expect(rows.length).toBe(3 + 4 + 3 + 3); // the good images of the four inspect runs that reached the model
    expect(rows.map((x) => x['id'])).toContain(join(tmp, 'good', readdirSync(join(tmp, 'good')).sort()[0]!)); // the file path is the image's id
    expect(rows.every((x) => x['model'] === 'bottle')).toBe(true);
    const none = await remote('inspections', 'list', '--since', new Date(Date.now() + 3_600_000).toISOString(), '--json');
    expect(none.stdout).toBe('');
    const bad = await remote('inspections', 'list', '--since', 'yesterday-ish');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--since/);
  });

  /** A few MVTec bottle test images and, with `corrupt`, a file that is no image. */
  function parityImages(name: string, corrupt: boolean): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    for (const [sub, n] of [['test/good', 2], ['test/broken_large', 2], ['test/contamination', 1]] as const) {
      for (const f of files(sub, n)) copyFileSync(f, join(dir, `${sub.split('/')[1]}-${basename(f)}`));
    }
    if (corrupt) writeFileSync(join(dir, 'corrupt.png'), 'this is not a PNG');
    return dir;
  }

  /** The file of a model version on the server (ListModels). */
  async function modelFile(name: string): Promise<string> {
    const m = jsonLines((await remote('models', 'list', '--name', name, '--json')).stdout)[0]!;
    const file = String(m['file']);
    return isAbsolute(file) ? file : join(tmp, 'models', file);
  }

  for (const [kind, name] of [['SVM', 'bottle'], ['one-class', 'bottle-oc']] as const) {
    it(`local predict MODEL DIR and remote inspect DIR --model NAME: the same lines, the same exit code (${kind} model)`, async () => {
      const file = await modelFile(name);
      expect(existsSync(file)).toBe(true);
      for (const corrupt of [true, false]) {
        const dir = parityImages(`parity-${name}-${corrupt ? 'corrupt' : 'clean'}`, corrupt);
        const local = await loupe(['--threads', '2', 'predict', file, dir, '--json']);
        const inspect = await remote('inspect', dir, '--model', name, '--json');
        const predict = await remote('predict', name, dir, '--json');
        const ll = jsonLines(local.stdout);
        const rl = jsonLines(inspect.stdout);
        expect(ll.length, local.stderr).toBe(6 + (corrupt ? 1 : 0));
        // Every field of every line: verdict, score, rawScore, defectType (and the classes' scores).
        expect(rl).toEqual(ll);
        expect(jsonLines(predict.stdout)).toEqual(ll);
        const anomalous = ll.filter((l) => l['verdict'] === 'anomalous').length;
        expect(anomalous).toBeGreaterThan(0); // the broken_large bottles
        if (corrupt) expect(ll.find((l) => basename(String(l['file'])) === 'corrupt.png')!['error']).toMatchObject({ code: 'IMAGE_DECODE' });
        expect(local.code).toBe(corrupt ? 2 : 1);
        expect(inspect.code).toBe(local.code);
        expect(predict.code).toBe(local.code);
        // The human lines too: one formatter for both.
        const lh = await loupe(['--threads', '2', 'predict', file, dir]);
        const rh = await remote('inspect', dir, '--model', name);
        expect(rh.stdout).toBe(lh.stdout);
        expect(rh.code).toBe(lh.code);
      }
    });
  }

  it('remote inspect --heatmaps DIR: asks for heatmaps and writes the overlays the server returns, with an index.html', async () => {
    const dir = parityImages('heat-inputs', false);
    const heat = join(tmp, 'heat-remote');
    const r = await remote('inspect', dir, '--model', 'bottle-oc', '--json', '--heatmaps', heat);
    expect([0, 1]).toContain(r.code);
    const lines = jsonLines(r.stdout).slice(0, -1);
    expect(lines).toHaveLength(5);
    for (const l of lines) {
      const png = readFileSync(l['heatmap'] as string);
      expect(png.subarray(1, 4).toString('latin1')).toBe('PNG');
      const input = readFileSync(l['file'] as string);
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([input.readUInt32BE(16), input.readUInt32BE(20)]); // the image's size
    }
    expect(lines.map((l) => basename(l['heatmap'] as string))).toEqual(readdirSync(dir).sort().map((f) => `${f.replace(/\.png$/, '')}_heatmap.png`));
    expect(readFileSync(join(heat, 'index.html'), 'utf8')).toContain('good-000_heatmap.png');
    // Local --heatmaps writes the same overlay names (plus masks).
    const local = await loupe(['--threads', '2', 'predict', await modelFile('bottle-oc'), dir, '--json', '--heatmaps', join(tmp, 'heat-local')]);
    expect(jsonLines(local.stdout).slice(0, -1).map((l) => basename(l['heatmap'] as string))).toEqual(lines.map((l) => basename(l['heatmap'] as string)));
  });

  it('loupe serve refuses the client options (--token would look like it turned authentication on)', async () => {
    const r = await loupe(['serve', '--models', join(tmp, 'models'), '--port', '0', '--token', 's3cret']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--token is a client option and does nothing for loupe serve \(the server's is --auth-token\)/);
  });

  it('usage errors: no --server, a bad address, a missing file', async () => {
    const noServer = await loupe(['inspect', join(tmp, 'good'), '--model', 'bottle']);
    expect(noServer.code).toBe(2);
    expect(noServer.stderr).toMatch(/--server HOST:PORT/);
    const badAddress = await loupe(['--server', 'nowhere', 'models', 'list']);
    expect(badAddress.code).toBe(2);
    expect(badAddress.stderr).toMatch(/--server must be HOST:PORT/);
    const missing = await remote('inspect', join(tmp, 'nope.png'), '--model', 'bottle');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.png: no such file/);
  });

  it('inspect --json: images a failed stream left unanswered each get an error line, to be sent again', async () => {
    const locked = await startServe(['--models', join(tmp, 'models'), '--db', join(tmp, 'locked.db'), '--auth-token', 's3cret'], []);
    try {
      const r = await loupe(['--server', locked.address, 'inspect', join(tmp, 'good'), '--model', 'bottle', '--json']);
      expect(r.code).toBe(2);
      const lines = jsonLines(r.stdout);
      expect(lines).toHaveLength(4);
      for (const l of lines.slice(0, 3)) {
        expect(l['error']).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/^not inspected: server .*: UNAUTHENTICATED/) });
      }
      expect(lines.slice(0, 3).map((l) => l['file']).sort()).toEqual(readdirSync(join(tmp, 'good')).sort().map((f) => join(tmp, 'good', f)));
      expect(lines[3]).toEqual({ total: 3, good: 0, anomalous: 0, errors: 3 });
    } finally {
      locked.child.kill('SIGKILL');
      await locked.exited;
    }
  }, 60_000);

  it('serve whose metrics port is taken fails and exits 1, naming the port (it used to keep serving gRPC)', async () => {
    const taken = createServer(() => {});
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = await loupe(['--threads', '1', 'serve', '--models', join(tmp, 'models'), '--port', '0', '--host', '127.0.0.1', '--metrics-port', String(port), '--db', join(tmp, 'other.db')]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`cannot start: cannot serve metrics on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
    } finally {
      taken.close();
    }
  }, 60_000);

  it('SIGTERM stops loupe serve gracefully (exit 0)', async () => {
    server.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(logs.some((l) => l.includes('"msg":"stopped"'))).toBe(true);
  });
});

// No server needed: what a client sees from addresses that are not a Loupe server.
describe.skipIf(!haveData)('loupe --server against what is not a Loupe server', () => {
  it('a refused port fails at once; a peer that accepts TCP but never answers fails after the connect timeout, not never', async () => {
    const silent = createServer(() => {}); // accepts, then says nothing (no HTTP/2 settings)
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as AddressInfo).port;
    try {
      const t0 = Date.now();
      const hung = await loupe(['--server', `127.0.0.1:${port}`, 'inspect', join(bottle, 'train', 'good', '000.png'), '--model', 'bottle']);
      expect(hung.code).toBe(1);
      expect(hung.stderr).toMatch(/no gRPC answer within 10 s/);
      expect(Date.now() - t0).toBeLessThan(30_000);
      silent.close();
      await new Promise((r) => setTimeout(r, 100));
      const down = await loupe(['--server', `127.0.0.1:${port}`, 'health', '--timeout-ms', '2000']);
      expect(down.code).toBe(1);
      expect(down.stdout).toMatch(/^UNREACHABLE \(/);
      const refused = await loupe(['--server', `127.0.0.1:${port}`, 'models', 'list']);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/UNAVAILABLE: .*ECONNREFUSED/);
      expect(refused.stderr).not.toMatch(/Resolution note/);
    } finally {
      silent.close();
    }
  }, 60_000);
});
