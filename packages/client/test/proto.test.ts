// The generated code is committed (builds need no generator); this keeps it equal to protos/.
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const CLIENT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');

describe('generated code', () => {
  it('src/gen matches protos/ (npm run proto:check -w @loupe/client)', () => {
    const r = spawnSync(process.execPath, [join(CLIENT_DIR, 'scripts', 'gen-proto.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/4 generated files match/);
  });
});
