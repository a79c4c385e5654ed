#!/usr/bin/env node
// Entry of the `loupe-server` binary. libuv reads UV_THREADPOOL_SIZE once, when its pool first starts
// (the first file read, sharp decode or engine run), so it is set here before anything else is loaded:
// image decodes, nearest-neighbour searches and engine runs of many concurrent requests all live on it.
process.env['UV_THREADPOOL_SIZE'] ??= '16';
const { main } = await import('./serve.js');
process.exitCode = await main(process.argv.slice(2));
