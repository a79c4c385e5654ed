#!/usr/bin/env node
// Entry of the `loupe` command. CommonJS on purpose: libuv reads UV_THREADPOOL_SIZE once, when its
// thread pool first starts, and both loading an ES module entry and loading sharp (detect-libc closes
// a file asynchronously) start it. So the pool size is set here, first, from the process thread
// budget planned by @loupe/core (planThreadBudget + recommendedUvThreadpoolSize: the same budget that
// sizes the engine and sharp.concurrency), then the ESM CLI is imported. That needs a @loupe/core
// whose import does not load sharp; with one that does (no planThreadBudget), the pool keeps libuv's
// default of 4 threads (enough for one session: one run, one decode, file reads) unless
// UV_THREADPOOL_SIZE is set in the environment.
'use strict';

const { pathToFileURL } = require('node:url');
const { join } = require('node:path');

function fail(message) {
  process.stderr.write(`loupe: ${message}\n`);
  process.exit(1);
}

// --threads N / --threads=N, as the CLI parses it (an invalid value is left for the CLI to report).
function threadsFromArgs(args) {
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') break;
    if (a === '--threads') return args[i + 1];
    if (a.startsWith('--threads=')) return a.slice('--threads='.length);
  }
  return undefined;
}

const args = process.argv.slice(2);
let core;
try {
  core = require('@loupe/core'); // require(esm): synchronous, nothing has started the pool yet
} catch (err) {
  if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
    fail(`@loupe/core is not built (${err.message.split('\n')[0]}).\n` +
      'Build the workspace first: `npm run bootstrap` (or `npx nx run-many -t build`).');
  }
  core = undefined; // e.g. ERR_REQUIRE_ASYNC_MODULE: the CLI still applies the budget; the pool keeps its default
}
if (core && typeof core.planThreadBudget === 'function' && process.env.UV_THREADPOOL_SIZE === undefined) {
  const t = threadsFromArgs(args);
  try {
    const budget = core.planThreadBudget(t === undefined ? {} : { total: Number(t) });
    process.env.UV_THREADPOOL_SIZE = String(core.recommendedUvThreadpoolSize(budget));
  } catch {
    // a bad --threads / LOUPE_THREADS value: reported by the CLI with its usage message
  }
}

import(pathToFileURL(join(__dirname, '..', 'dist', 'main.js')).href)
  .then((cli) => cli.run(args))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      if (err && err.code === 'ERR_MODULE_NOT_FOUND') {
        fail(`the CLI is not built (${err.message.split('\n')[0]}).\nBuild it first: \`npm run bootstrap\` (or \`npx nx run @loupe/cli:build\`).`);
      }
      fail(`internal error: ${(err && err.stack) || err}`);
    },
  );
