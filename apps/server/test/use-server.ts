// A test server per describe block (vitest hooks; kept out of fixtures.ts, which the global setup loads).
import { rmSync } from 'node:fs';

import { afterAll, beforeAll } from 'vitest';

import type { LoupeClient, LoupeServer } from '../dist/index.js';
import { client, modelDirWithFixtures, startInProcess } from './fixtures.js';

/** What useServer gives its describe block once started. */
export interface ServerFixture {
  dir: string;
  server: LoupeServer;
  client: LoupeClient;
}

/**
 * An in-process server on a copy of the fixture models for one describe block: started in beforeAll
 * (after `prepare` has changed the models folder, if given), stopped and removed in afterAll.
 */
export function useServer(fixtures: string, overrides: Record<string, unknown> = {}, prepare?: (dir: string) => void): ServerFixture {
  const f = {} as ServerFixture;
  beforeAll(async () => {
    f.dir = modelDirWithFixtures(fixtures);
    prepare?.(f.dir);
    f.server = await startInProcess(f.dir, overrides);
    f.client = client(f.server.port);
    await f.client.waitForReady();
  });
  afterAll(async () => {
    f.client?.close();
    await f.server?.stop();
    if (f.dir) rmSync(f.dir, { recursive: true, force: true });
  });
  return f;
}
