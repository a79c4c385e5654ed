#!/usr/bin/env node
// Entry of the `loupe` command. CommonJS, and it loads nothing but Node's own modules before the CLI:
// libuv sizes its thread pool once, when the pool first starts, and loading an ES module or sharp
// (hence @loupe/core) starts it. The pool keeps libuv's default of 4 threads unless UV_THREADPOOL_SIZE
// is set in the environment: its threads mostly wait (one native run per session, one decode at a time,
// file reads), so 4 never starve the pipeline, and they compute nothing that competes with the engine's
// cores. The compute threads (engine, libvips) follow the --threads budget (@loupe/core configureThreads);
// `loupe info` shows every size in force.
'use strict';

const { pathToFileURL } = require('node:url');
const { join } = require('node:path');

function fail(message) {
  process.stderr.write(`loupe: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);

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
