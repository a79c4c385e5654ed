// A client in its own process, for tests that kill it: streams IMAGE to MODEL at ADDRESS forever (ids
// c-0, c-1, ...) with a window of WINDOW unanswered images and prints "answered N" per response.
// Usage: node stream-client.mjs ADDRESS MODEL IMAGE WINDOW
import { readFileSync } from 'node:fs';

import { LoupeClient } from '../../dist/index.js';

const [address, model, imageFile, window] = process.argv.slice(2);
const image = readFileSync(imageFile);
const c = new LoupeClient(address);
let answered = 0;
await c.inspectMany(
  (function* () {
    for (let i = 0; ; i++) yield { id: `c-${i}`, image, model };
  })(),
  { window: Number(window), onResponse: () => process.stdout.write(`answered ${++answered}\n`) },
);
