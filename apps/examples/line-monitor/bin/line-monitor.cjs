#!/usr/bin/env node
// Entry of `line-monitor`. CommonJS and Node's own modules only before the app, as the `loupe` command:
// libuv sizes its thread pool when it first starts, and loading an ES module (hence @loupe/core and sharp)
// starts it; the pool's default 4 threads suffice (they mostly wait on the engine and on file reads).
'use strict';

const { pathToFileURL } = require('node:url');
const { join } = require('node:path');

import(pathToFileURL(join(__dirname, '..', 'dist', 'main.js')).href)
  .then((app) => app.run(process.argv.slice(2)))
  .then(
    (code) => {
      process.exitCode = code;
    },
    (err) => {
      const notBuilt = err && err.code === 'ERR_MODULE_NOT_FOUND';
      process.stderr.write(
        notBuilt
          ? `line-monitor: the app is not built (${err.message.split('\n')[0]}); run \`npx nx run @loupe/example-line-monitor:build\`\n`
          : `line-monitor: internal error: ${(err && err.stack) || err}\n`,
      );
      process.exitCode = 2;
    },
  );
