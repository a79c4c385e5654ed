// Configuration (defaults < --config file < LOUPE_SERVER_* environment < flags) and its errors (no engine
// needed). The generated gRPC code's check is in @loupe/client.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ConfigError, loadConfig, LoupeServer } from '../dist/index.js';
import { flagsToOverrides, parseServeArgs } from '../dist/serve.js';

const tmp = mkdtempSync(join(tmpdir(), 'loupe-config-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('server configuration', () => {
  it('merges defaults < file < environment < flags; file paths are relative to the file', () => {
    const file = join(tmp, 'server.json');
    writeFileSync(file, JSON.stringify({ modelsDir: 'models', port: 6000, batching: { maxBatchSize: 8, maxQueueDelayMs: 2 }, auth: { tokens: ['from-file'] } }));
    const flags = parseServeArgs(['--port', '7000', '--max-delay-ms', '1.5', '--token', 'a', '--token', 'b']);
    const c = loadConfig({ file, env: { LOUPE_SERVER_PORT: '6500', LOUPE_SERVER_MAX_BATCH: '16', LOUPE_SERVER_METRICS_PORT: '9100' }, overrides: flagsToOverrides(flags) });
    expect(c.modelsDir).toBe(join(tmp, 'models'));
    expect(c.db.path).toBe(join(tmp, 'models', 'inspections.db'));
    expect(c.port).toBe(7000);
    expect(c.batching.maxBatchSize).toBe(16);
    expect(c.batching.maxQueueDelayMs).toBe(1.5);
    expect(c.metrics.port).toBe(9100);
    expect(c.metrics.host).toBe('0.0.0.0'); // the gRPC host's default
    // /metrics follows --host (a loopback server does not publish its metrics), unless set itself.
    const loop = loadConfig({ env: {}, overrides: flagsToOverrides(parseServeArgs(['--models', tmp, '--host', '127.0.0.1'])) });
    expect(loop.metrics.host).toBe('127.0.0.1');
    expect(loadConfig({ env: { LOUPE_SERVER_METRICS_HOST: '10.0.0.5' }, overrides: { modelsDir: tmp, host: '127.0.0.1' } }).metrics.host).toBe('10.0.0.5');
    expect(c.auth.tokens).toEqual(['a', 'b']);
    expect(c.limits.maxMessageBytes).toBe(16 * 1024 * 1024);
    expect(c.flow.maxActive).toBe(16 * 2);
    expect(c.tls).toBeNull();
  });

  it('names the setting at fault', () => {
    expect(() => loadConfig({ env: {} })).toThrow(/model directory is required/);
    expect(() => loadConfig({ env: { LOUPE_SERVER_MODELS: tmp, LOUPE_SERVER_PORT: 'eighty' } })).toThrow(/LOUPE_SERVER_PORT: expected an integer/);
    expect(() => loadConfig({ env: {}, overrides: { modelsDir: tmp, batching: { maxBatchSize: 0 } } })).toThrow(/batching.maxBatchSize/);
    expect(() => loadConfig({ env: {}, overrides: { modelsDir: tmp, tls: { cert: '/x.pem' } } })).toThrow(/tls.cert and tls.key/);
    expect(() => loadConfig({ env: {}, file: join(tmp, 'missing.json') })).toThrow(ConfigError);
    expect(() => parseServeArgs(['--port', '80x'])).toThrow(/--port must be a non-negative integer, got '80x'/);
    expect(() => parseServeArgs(['--bogus'])).toThrow(/bogus/);
  });

  it('reads tokens from a file', () => {
    const tokens = join(tmp, 'tokens');
    writeFileSync(tokens, '# comment\nt1\n\nt2\n');
    expect(loadConfig({ env: { LOUPE_SERVER_MODELS: tmp, LOUPE_SERVER_TOKENS_FILE: tokens, LOUPE_SERVER_TOKENS: 't0' } }).auth.tokens).toEqual(['t0', 't1', 't2']);
  });
});

describe('start-up checks', () => {
  it('a file given as the models folder fails the start at once, naming it (before the engine loads)', async () => {
    const file = join(tmp, 'not-a-folder.loupe');
    writeFileSync(file, 'x');
    const config = loadConfig({ env: {}, overrides: { modelsDir: file, host: '127.0.0.1', port: 0, log: { level: 'silent' } } });
    const t0 = Date.now();
    await expect(LoupeServer.start(config)).rejects.toThrow(`the models folder ${file} is a file, not a folder`);
    expect(Date.now() - t0).toBeLessThan(2000); // no engine was opened
  });
});
