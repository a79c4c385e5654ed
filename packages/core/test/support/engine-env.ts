// Whether the engine tests can run here, and why not. They need the built addon and the weights;
// the addon missing is a skip on a developer machine but a failure under CI (CI builds it first).
import { existsSync } from 'node:fs';

import { resolveWeights } from '../../src/index.js';
import { addonPath, hasAddon } from './env.js';

export function engineSkipReason(): string | undefined {
  if (!hasAddon) {
    if (process.env['CI']) throw new Error(`CI: the native addon is not built (${addonPath}); run nx build native first`);
    return `native addon not built (${addonPath})`;
  }
  try {
    const w = resolveWeights();
    if (!existsSync(w.model)) return `weights not found (${w.model})`;
  } catch (err) {
    if (process.env['CI']) throw err;
    return (err as Error).message;
  }
  return undefined;
}

/** Backend for fp32 parity tests: $LOUPE_TEST_BACKEND or 'cpu' (GPU parity is the device check's job). */
export const testBackend = (process.env['LOUPE_TEST_BACKEND'] ?? 'cpu') as 'cpu' | 'cuda' | 'auto';
