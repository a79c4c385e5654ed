// Remote mode: `loupe serve` runs the inspection server in the foreground; with `--server HOST:PORT`
// the other commands here talk to one (inspect, models, inspections, stats) through @loupe/client.
// Both are imported lazily, so the local commands never load gRPC; @loupe/server (SQLite, the engine) is an
// optional peer dependency: a plant PC that only talks to servers does not install it.
import { mkdir, readFile, stat } from 'node:fs/promises';
import { basename, relative, resolve } from 'node:path';

import { Command, InvalidArgumentError, Option } from 'commander';

import { isMultiServerTarget, resolveTarget } from '@loupe/client/address';
import type { LoupeClient } from '@loupe/client';
import type { ServeFlags } from '@loupe/server';

import { intInRange, nonEmptyPath } from '../args.js';
import { write } from '../context.js';
import { errorText, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, UsageError } from '../errors.js';
import { EXIT_CODES_HELP, EXIT_CODES_SHORT, HeatmapFolder, PREDICT_JSON_HELP, PredictPrinter, type InspectedLine, type PredictLine } from '../inspection-output.js';
import { expandInputs } from '../inputs.js';
import { checkOutputDir } from '../outputs.js';
import { ProgressBar } from '../progress.js';

export interface RemoteGlobalOptions {
  server?: string;
  tls?: boolean;
  ca?: string;
  clientCert?: string;
  clientKey?: string;
  token?: string;
  progress: boolean;
  threads?: number;
  backend?: string;
  weights?: string;
}

export interface RemoteDeps {
  /** Where the command's exit code goes (main.ts's state). */
  state: { code: number };
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
}

/** Bytes one request may carry: the channel's 16 MiB message limit less room for the other fields. */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024 - 64 * 1024;


function fraction(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !(n > 0 && n <= 1)) throw new InvalidArgumentError(`${name} must be a number in (0, 1], got '${value}'`);
    return n;
  };
}

// The address rule is the client's (resolveTarget): checked here so a bad --server is a usage error.
function serverAddress(value: string): string {
  try {
    resolveTarget(value);
  } catch (err) {
    throw new InvalidArgumentError(`--server must be HOST:PORT, dns:///HOST:PORT or IP:PORT,IP:PORT,...: ${errorText(err)}`);
  }
  return value.trim();
}

/** "2024-05-01T10:00:00Z", "2024-05-01", or a duration back from now: "90s", "15m", "2h", "7d". */
export function parseSince(value: string, now = Date.now()): Date {
  const rel = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/i.exec(value.trim());
  if (rel) return new Date(now - Number(rel[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[rel[2]!.toLowerCase() as 's']);
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new InvalidArgumentError(`expected an ISO time (2024-05-01T10:00:00Z) or a duration back from now (90s, 15m, 2h, 7d), got '${value}'`);
  return d;
}

function requireServer(cmd: Command): RemoteGlobalOptions {
  const opts = cmd.optsWithGlobals<RemoteGlobalOptions>();
  if (!opts.server) throw new UsageError(`'${cmd.name()}' talks to a Loupe server: give --server HOST:PORT (start one with \`loupe serve --models DIR\`)`);
  return opts;
}

async function connect(cmd: Command): Promise<{ client: LoupeClient; address: string; opts: RemoteGlobalOptions }> {
  const opts = requireServer(cmd);
  if (!opts.server) throw new UsageError('no --server');
  const client_ = await import('@loupe/client');
  const { LoupeClient } = client_;
  statusName = client_.statusName;
  const tls = opts.tls || opts.ca || opts.clientCert ? { ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.clientCert ? { cert: opts.clientCert } : {}), ...(opts.clientKey ? { key: opts.clientKey } : {}) } : undefined;
  const token = opts.token ?? process.env['LOUPE_TOKEN'];
  let client: LoupeClient;
  try {
    client = new LoupeClient(opts.server, { ...(tls ? { tls } : {}), ...(token ? { token } : {}) });
  } catch (err) {
    throw new UsageError(errorText(err));
  }
  try {
    await client.connected(CONNECT_TIMEOUT_MS);
  } catch (err) {
    client.close();
    throw new Error(`server ${opts.server}: ${errorText(err)}`);
  }
  return { client, address: opts.server, opts };
}

/** How long a silent peer may keep the connection half-open before a command gives up. */
const CONNECT_TIMEOUT_MS = 10_000;

/** gRPC errors as one line naming the server: "server 127.0.0.1:50051: UNAVAILABLE: ...". */
// gRPC status names, from @loupe/client once a command has loaded it (it is imported lazily: local
// commands do not pay for loading gRPC).
let statusName: (code: number) => string = (code) => `code ${code}`;

function remoteText(err: unknown, address: string): string {
  const e = err as { code?: unknown; details?: unknown };
  if (typeof e?.code === 'number' && typeof e.details === 'string') {
    // grpc-js ends some details with an empty "Resolution note: ".
    return `server ${address}: ${statusName(e.code)}: ${e.details.replace(/\s*Resolution note:\s*$/, '')}`;
  }
  return errorText(err);
}

/** Runs a remote action: usage problems exit 2, server errors print one line and exit 1, Ctrl-C 130. */
export function action<A extends unknown[]>(deps: RemoteDeps, fn: (...args: A) => Promise<number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      deps.state.code = await fn(...args);
    } catch (err) {
      if (deps.signal.aborted) {
        process.stderr.write('loupe: interrupted\n');
        deps.state.code = EXIT_INTERRUPTED;
        return;
      }
      const cmd = args[args.length - 1] as Command;
      process.stderr.write(`loupe: error: ${err instanceof UsageError ? err.message : remoteText(err, cmd.optsWithGlobals<RemoteGlobalOptions>().server ?? '?')}\n`);
      deps.state.code = err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
    }
  };
}

/** Image files of the arguments (the same rule as local predict: inputs.ts). */
export async function listImages(inputs: readonly string[]): Promise<string[]> {
  return (await expandInputs(inputs)).map((i) => i.file);
}

export interface RemotePredictOptions {
  modelVersion?: string;
  json?: boolean;
  window: number;
  deadlineMs?: number;
  heatmaps?: string;
}

/**
 * `loupe --server H:P predict NAME INPUTS...` and `loupe --server H:P inspect INPUTS --model NAME`: the
 * images stream to the server (file path as each image's id, so the server's messages name the file as
 * local ones do), and the answers are printed in input order by the same output contract as local predict
 * (inspection-output.ts), with the same exit code rule.
 */
export async function remotePredict(model: string, inputs: string[], o: RemotePredictOptions, cmd: Command, deps: RemoteDeps): Promise<number> {
  requireServer(cmd);
  if (o.heatmaps !== undefined) await checkOutputDir(o.heatmaps, '--heatmaps', inputs);
  const images = await expandInputs(inputs);
  const { client, address, opts } = await connect(cmd);
  const { Verdict } = (await import('@loupe/client')).proto;
  const heatmaps = o.heatmaps !== undefined ? new HeatmapFolder(o.heatmaps) : undefined;
  if (o.heatmaps !== undefined) await mkdir(o.heatmaps, { recursive: true });
  const bar = new ProgressBar(`inspect ${model}`, images.length, process.stderr, opts.progress !== false && images.length > 1 && Boolean(process.stderr.isTTY));
  const printer = new PredictPrinter(process.stdout, Boolean(o.json), heatmaps, () => bar.clear());

  // Answers arrive in any order; lines are printed in input order as soon as the next one is known.
  const lines: (PredictLine | undefined)[] = new Array<PredictLine | undefined>(images.length);
  const answered = new Uint8Array(images.length);
  let printed = 0;
  let settled = 0;
  // Indices of the sent images per id (a file given twice is two images with one id: answered in turn).
  const pendingById = new Map<string, number[]>();
  let chain: Promise<void> = Promise.resolve();
  const settle = (i: number, make: () => Promise<PredictLine>): void => {
    answered[i] = 1;
    chain = chain.then(async () => {
      lines[i] = await make();
      bar.update(++settled);
      while (printed < images.length && lines[printed] !== undefined) {
        const l = lines[printed]!;
        lines[printed++] = undefined;
        await printer.emit(l);
      }
    });
    chain.catch(() => {}); // awaited below; a failed write must not be an unhandled rejection meanwhile
  };

  // Images are read as they are sent (the window bounds what is in memory); a file the client cannot send
  // is answered here.
  async function* items() {
    for (let i = 0; i < images.length; i++) {
      const file = images[i]!.file;
      let image: Buffer;
      try {
        // Over the message limit the channel would fail the whole stream, every other image with it.
        const st = await stat(file);
        const size = st.size;
        // Regular files only, as core reads them locally: a FIFO would block, a link to /dev/zero never end.
        if (!st.isFile()) {
          settle(i, async () => ({ file, error: { code: 'UNREADABLE', message: `cannot read ${file}: not a regular file (${st.isFIFO() ? 'a FIFO' : st.isDirectory() ? 'a directory' : st.isSocket() ? 'a socket' : 'a device'}): images are read from regular files only` } }));
          continue;
        }
        if (size > MAX_REQUEST_BYTES) {
          settle(i, async () => ({ file, error: { code: 'TOO_LARGE', message: `${file} is ${(size / 2 ** 20).toFixed(1)} MiB; one request carries at most ${(MAX_REQUEST_BYTES / 2 ** 20).toFixed(1)} MiB (downscale or recompress it)` } }));
          continue;
        }
        image = await readFile(file);
      } catch (err) {
        settle(i, async () => ({ file, error: { code: 'UNREADABLE', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? errorText(err)}` } }));
        continue;
      }
      const queue = pendingById.get(file) ?? [];
      queue.push(i);
      pendingById.set(file, queue);
      yield {
        id: file,
        image,
        model,
        modelVersion: o.modelVersion ?? '',
        source: basename(file),
        wantHeatmap: heatmaps !== undefined,
        ...(o.deadlineMs ? { deadlineMs: o.deadlineMs } : {}),
      };
    }
  }
  let summary;
  try {
    summary = await client.inspectMany(items(), {
      window: o.window,
      // Several servers: a stream cut by one's death is resumed on another (unanswered images resent).
      resume: isMultiServerTarget(client.target),
      signal: deps.signal,
      onResponse: (r) => {
        const i = pendingById.get(r.id)?.shift();
        if (i === undefined) return; // not ours, or a duplicate: ignore
        const file = images[i]!.file;
        const res = r.result;
        if (!res) {
          const e = r.error;
          // reason: the Loupe error code (IMAGE_DECODE, ...) as local predict prints it; else the status name.
          settle(i, async () => ({ file, error: { code: e?.reason || statusName(e?.code ?? 13), message: e?.message ?? 'no result' } }));
          return;
        }
        const png = res.heatmapPng;
        settle(i, async () => {
          const line: InspectedLine = {
            file,
            verdict: res.verdict === Verdict.VERDICT_ANOMALOUS ? 'anomalous' : 'good',
            score: res.score,
            rawScore: res.rawScore,
            // proto3 sends '' for 'no defect type': null, as local predict writes it.
            defectType: res.defectType || null,
            ...(res.classScores.length > 0 ? { classScores: res.classScores.map((c) => ({ name: c.name, score: c.score })) } : {}),
          };
          if (heatmaps && png && png.length > 0) {
            const p = heatmaps.paths(images[i]!.name);
            await heatmaps.writePng(p.heatmap, png);
            line.heatmap = p.heatmap;
          }
          return line;
        });
      },
    });
    await chain;
  } finally {
    client.close();
    bar.clear();
  }
  if (deps.signal.aborted) {
    process.stderr.write('loupe: interrupted\n');
    return EXIT_INTERRUPTED;
  }
  // Every image gets its line: the ones the stream's end left unanswered say so, to be sent again.
  const failed = summary.status !== 0 ? remoteText({ code: summary.status, details: summary.details }, address) : undefined;
  const unanswered = answered.reduce((n, a) => n + (a ? 0 : 1), 0);
  if (failed) process.stderr.write(`loupe: error: ${failed}${unanswered > 0 ? ` (${unanswered} images not inspected)` : ''}\n`);
  for (let i = 0; i < images.length; i++) {
    if (answered[i]) continue;
    const file = images[i]!.file;
    settle(i, async () => ({ file, error: { code: failed ? statusName(summary.status) : 'NO_ANSWER', message: `not inspected: ${failed ?? 'the server sent no answer for it'}` } }));
  }
  await chain;
  if (heatmaps && heatmaps.count === 0 && printer.tally.total > printer.tally.errors) process.stderr.write(`loupe: note: the server sent no heatmaps (model '${model}' makes none: SVM models do not)\n`);
  return printer.finish(`${model} on ${address}`);
}

type ModelInfoLike = Awaited<ReturnType<LoupeClient['getModel']>>;

async function modelJson(m: ModelInfoLike): Promise<Record<string, unknown>> {
  const { ModelKind, ModelState } = (await import('@loupe/client')).proto;
  return {
    name: m.name,
    version: m.version,
    kind: m.kind === ModelKind.MODEL_KIND_SVM ? 'svm' : m.kind === ModelKind.MODEL_KIND_ONE_CLASS ? 'one-class' : m.kind === ModelKind.MODEL_KIND_HYBRID ? 'hybrid' : 'unknown',
    state: (ModelState[m.state] ?? 'UNKNOWN').replace('MODEL_STATE_', '').toLowerCase(),
    classes: m.classes,
    layer: m.layer,
    file: m.file,
    sizeBytes: m.sizeBytes,
    createdAt: m.createdAt?.toISOString() ?? null,
    inspections: m.inspections,
    ...(m.error ? { error: m.error } : {}),
  };
}

async function printModels(models: ModelInfoLike[], json: boolean | undefined): Promise<void> {
  const rows = await Promise.all(models.map(modelJson));
  if (json) {
    for (const r of rows) await write(process.stdout, `${JSON.stringify(r)}\n`);
    return;
  }
  if (rows.length === 0) {
    await write(process.stdout, 'no models\n');
    return;
  }
  for (const r of rows) {
    await write(process.stdout, `${`${String(r['name'])}@${String(r['version'])}`.padEnd(32)} ${String(r['kind']).padEnd(9)} ${String(r['state']).padEnd(9)} ${(r['classes'] as string[]).join(',')}${r['error'] ? `  (${String(r['error'])})` : ''}\n`);
  }
}

interface TrainRemoteOptions {
  kind: 'svm' | 'one-class' | 'hybrid';
  layer?: string;
  coreset?: number;
  seed?: number;
  shots?: number;
  load: boolean;
  json?: boolean;
}

async function trainRemote(name: string, inputs: string[], o: TrainRemoteOptions, cmd: Command, deps: RemoteDeps): Promise<number> {
  requireServer(cmd);
  // SVM: the label of an image is its folder's name (DIR/<label>/...); one-class: every image is good;
  // hybrid: an MVTec category (good = train/good + test/good, defects = test/<type> with their ground_truth
  // masks) or <label>/ folders with a good one, as core scans them for `loupe train --mode hybrid`.
  const images: { image: Buffer; label: string; name: string; mask?: Buffer }[] = [];
  let bytes = 0;
  const add = (image: Buffer): void => {
    bytes += image.length;
    if (bytes > MAX_REQUEST_BYTES) throw new UsageError(`the training images are over ${Math.floor(MAX_REQUEST_BYTES / 2 ** 20)} MB, the most one Train request carries; use fewer or smaller images`);
  };
  for (const input of inputs) {
    if (o.kind === 'hybrid') {
      const { scanDataset } = await import('@loupe/core');
      const ds = await scanDataset(input, { verify: 'header' });
      for (const it of ds.items) {
        const image = await readFile(it.path);
        add(image);
        const mask = it.maskPath ? await readFile(it.maskPath) : undefined;
        if (mask) add(mask);
        images.push({ image, label: it.label, name: it.relPath, ...(mask ? { mask } : {}) });
      }
      continue;
    }
    const files = await listImages([input]);
    for (const f of files) {
      const image = await readFile(f);
      add(image);
      const rel = relative(resolve(input), resolve(f));
      const label = o.kind === 'svm' ? (rel.includes('/') ? rel.split('/')[0]! : basename(resolve(input))) : '';
      images.push({ image, label, name: rel || basename(f) });
    }
  }
  if (o.kind === 'svm' && new Set(images.map((i) => i.label)).size < 2) {
    throw new UsageError(`an SVM needs images of at least 2 classes: give a folder of <label>/ folders (found ${[...new Set(images.map((i) => i.label))].join(', ') || 'none'})`);
  }
  const { client, opts } = await connect(cmd);
  const { ModelKind } = (await import('@loupe/client')).proto;
  const tty = opts.progress !== false && Boolean(process.stderr.isTTY);
  let stage = '';
  let bar: ProgressBar | undefined;
  try {
    const model = await client.train(
      {
        name,
        kind: o.kind === 'svm' ? ModelKind.MODEL_KIND_SVM : o.kind === 'hybrid' ? ModelKind.MODEL_KIND_HYBRID : ModelKind.MODEL_KIND_ONE_CLASS,
        images: images.map((i) => ({ image: i.image, label: i.label, name: i.name, mask: i.mask ?? Buffer.alloc(0) })),
        load: o.load,
        svm: { layer: o.layer ?? '', lambda: 0, epochs: 0, seed: o.seed ?? 0 },
        oneClass: { coresetRatio: o.coreset ?? 0, seed: o.seed ?? 0, validationFraction: 0, thresholdQuantile: 0 },
        hybrid: { coresetRatio: o.coreset ?? 0, seed: o.seed ?? 0, validationFraction: 0, shots: o.shots ?? 0 },
      },
      (p) => {
        // live progress: a line per stage on stderr, and a bar within a stage on a terminal
        if (p.stage !== stage) {
          bar?.clear();
          stage = p.stage;
          process.stderr.write(`[${p.elapsedS.toFixed(1)}s] ${p.stage}${p.message ? `: ${p.message}` : ''}\n`);
          bar = p.total > 1 ? new ProgressBar(`  ${p.stage}`, p.total, process.stderr, tty) : undefined;
        }
        bar?.update(p.done);
      },
      deps.signal,
    );
    bar?.clear();
    const rec = await modelJson(model);
    if (o.json) await write(process.stdout, `${JSON.stringify(rec)}\n`);
    else await write(process.stdout, `trained ${model.name}@${model.version} (${String(rec['kind'])}, ${String(rec['state'])}): ${model.description || model.classes.join(', ')}\n`);
    return EXIT_OK;
  } finally {
    bar?.clear();
    client.close();
  }
}

interface ServeCommandOptions {
  models?: string;
  port?: number;
  host?: string;
  metricsPort?: number;
  config?: string;
  db?: string;
  dbUrl?: string;
  rescanMs?: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  authToken?: string[];
  maxBatch?: number;
  maxDelayMs?: number;
  streamWindow?: number;
  logLevel?: string;
}

async function serveCommand(o: ServeCommandOptions, cmd: Command): Promise<number> {
  const g = cmd.optsWithGlobals<RemoteGlobalOptions>();
  // The client options mean nothing to a server; --token above all must not look like it turned auth on.
  for (const [name, server] of [['token', '--auth-token'], ['ca', '--tls-client-ca'], ['server', undefined], ['tls', '--tls-cert and --tls-key'], ['clientCert', '--tls-cert'], ['clientKey', '--tls-key']] as const) {
    if (g[name] !== undefined && g[name] !== false) {
      throw new UsageError(`--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is a client option and does nothing for loupe serve${server ? ` (the server's is ${server})` : ''}`);
    }
  }
  const flags: ServeFlags = {};
  const set = <K extends keyof ServeFlags>(k: K, v: ServeFlags[K] | undefined): void => {
    if (v !== undefined) flags[k] = v;
  };
  set('models', o.models);
  set('port', o.port);
  set('host', o.host);
  set('metricsPort', o.metricsPort);
  set('config', o.config);
  set('db', o.db);
  set('dbUrl', o.dbUrl);
  set('rescanMs', o.rescanMs);
  set('tlsCert', o.tlsCert);
  set('tlsKey', o.tlsKey);
  set('tlsClientCa', o.tlsClientCa);
  set('token', o.authToken);
  set('maxBatch', o.maxBatch);
  set('maxDelayMs', o.maxDelayMs);
  set('streamWindow', o.streamWindow);
  set('logLevel', o.logLevel);
  set('threads', g.threads);
  set('weights', g.weights);
  // the global --backend defaults to auto; only pass it when the user chose one
  if (cmd.getOptionValueSourceWithGlobals?.('backend') === 'cli') set('backend', g.backend);
  let server: typeof import('@loupe/server');
  try {
    server = await import('@loupe/server');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND' || !String((err as Error).message).includes("'@loupe/server'")) throw err;
    throw new UsageError("'loupe serve' needs the server package, which is not installed: npm install @loupe/server");
  }
  return server.serve({ flags });
}

/** Adds the remote-mode global options and commands to the program. */
export function registerRemoteCommands(program: Command, deps: RemoteDeps): void {
  program
    .addOption(new Option('--server <host:port>', 'a Loupe server to use (inspect, models, inspections, stats); several: dns:///HOST:PORT or IP:PORT,IP:PORT (round robin, a cut stream resumed on another)').argParser(serverAddress))
    .addOption(new Option('--tls', 'connect to the server over TLS (system roots unless --ca)'))
    .addOption(new Option('--ca <file>', 'PEM CA bundle to trust for the server (implies --tls)'))
    .addOption(new Option('--client-cert <file>', 'PEM client certificate for mutual TLS (with --client-key; implies --tls)'))
    .addOption(new Option('--client-key <file>', 'PEM private key of --client-cert'))
    .addOption(new Option('--token <token>', 'bearer token for the server (default: $LOUPE_TOKEN)'));

  program
    .command('serve')
    .description('run the inspection server (gRPC loupe.v1.Inspection) in the foreground; SIGTERM/Ctrl-C stop it gracefully')
    .option('--models <dir>', 'model directory: <name>.loupe or <name>/<version>.loupe (required unless in --config)')
    .option('--port <n>', 'gRPC port (default 50051; 0 = any free port)', intInRange('--port', 0, 65535))
    .option('--host <addr>', 'address to bind (default 0.0.0.0)')
    .option('--metrics-port <m>', 'serve Prometheus /metrics on this port', intInRange('--metrics-port', 0, 65535))
    .option('--config <file>', 'JSON config file (flags > LOUPE_SERVER_* environment > file > defaults)')
    .option('--db <file>', 'SQLite inspection log (default <models>/inspections.db)')
    .option('--db-url <url>', 'PostgreSQL inspection log shared by a fleet, postgres://... (prefer $LOUPE_SERVER_DB_URL: a flag shows in the process list)')
    .option('--rescan-ms <ms>', 'rescan the models folder this often and load new versions (a fleet sharing one folder; default 0 = off)', intInRange('--rescan-ms', 0, 86_400_000))
    .option('--tls-cert <file>', 'server certificate (PEM); with --tls-key enables TLS')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--tls-client-ca <file>', 'require client certificates signed by this CA (mutual TLS)')
    .option('--auth-token <token...>', 'accept these bearer tokens (none: no authentication)')
    .option('--max-batch <n>', 'most images per engine batch (default 32)', intInRange('--max-batch', 1, 1024))
    .option('--max-delay-ms <ms>', 'longest an image waits for a fuller batch (default 5)', (v) => {
      const n = Number(v);
      if (v.trim() === '' || !(n >= 0 && n <= 10_000)) throw new InvalidArgumentError(`--max-delay-ms must be a number in [0, 10000], got '${v}'`);
      return n;
    })
    .option('--stream-window <n>', 'unanswered images read per stream (default 32)', intInRange('--stream-window', 1, 1 << 16))
    .addOption(new Option('--log-level <level>', 'JSON log level (stdout)').choices(['debug', 'info', 'warn', 'error']))
    .addHelpText('after', '\nExample:\n  loupe serve --models models/ --port 50051 --metrics-port 9100')
    .action(action(deps, (o: ServeCommandOptions, cmd: Command) => serveCommand(o, cmd)));

  program
    .command('inspect')
    .description(`inspect images on a Loupe server (--server): the same command and output as \`loupe --server H:P predict NAME INPUTS\`; ${EXIT_CODES_SHORT}`)
    .argument('<inputs...>', 'image files and/or folders (searched recursively)')
    .requiredOption('--model <name>', 'model to apply (its name on the server)')
    .option('--model-version <v>', 'model version (default: the newest loaded)')
    .option('--json', PREDICT_JSON_HELP)
    .option('--heatmaps <dir>', '(one-class models) ask the server for heatmap overlays and write them there, with an index.html', nonEmptyPath('--heatmaps'))
    .option('--window <n>', 'most unanswered images in flight', intInRange('--window', 1, 4096), 32)
    .option('--deadline-ms <ms>', 'time budget per image on the server', intInRange('--deadline-ms', 1, 86_400_000))
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n\nExample:\n  loupe --server 127.0.0.1:50051 inspect photos/ --model bottle --json`)
    .action(action(deps, (inputs: string[], o: RemotePredictOptions & { model: string }, cmd: Command) => remotePredict(o.model, inputs, o, cmd, deps)));

  const models = program.command('models').description('the models of a Loupe server (--server)');
  models
    .command('list')
    .description('every model version in the server\'s model directory, loaded or not')
    .option('--name <name>', 'only this model')
    .option('--loaded', 'only loaded versions')
    .option('--json', 'one JSON line per version')
    .action(
      action(deps, async (o: { name?: string; loaded?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = await connect(cmd);
        try {
          await printModels(await client.listModels({ name: o.name ?? '', loadedOnly: o.loaded ?? false }), o.json);
        } finally {
          client.close();
        }
        return EXIT_OK;
      }),
    );
  const oneModel = (verb: 'load' | 'unload' | 'delete', what: string): void => {
    models
      .command(verb)
      .description(what)
      .argument('<name>', 'model name')
      .option('--model-version <v>', verb === 'delete' ? 'version to delete (required)' : verb === 'load' ? 'version (default: the newest)' : 'version (default: every loaded version)')
      .option('--json', 'JSON lines')
      .action(
        action(deps, async (name: string, o: { modelVersion?: string; json?: boolean }, cmd: Command) => {
          if (verb === 'delete' && !o.modelVersion) throw new UsageError('models delete needs --model-version V (one version per call)');
          const { client } = await connect(cmd);
          try {
            const v = o.modelVersion ?? '';
            const changed = verb === 'load' ? [await client.loadModel(name, v)] : verb === 'unload' ? await client.unloadModel(name, v) : [await client.deleteModel(name, v)];
            // A known model with nothing loaded: say so, not 'no models' (which reads as "it does not exist").
            if (changed.length === 0 && !o.json) await write(process.stdout, `model '${name}'${v ? ` version ${v}` : ''} was not loaded: nothing to unload\n`);
            else await printModels(changed, o.json);
          } finally {
            client.close();
          }
          return EXIT_OK;
        }),
      );
  };
  oneModel('load', 'load a model version into memory (no restart)');
  oneModel('unload', 'free a loaded model (images already queued are still answered)');
  oneModel('delete', 'unload a model version and remove its file');
  models
    .command('train')
    .description('train a new model version on the server (in its own process) with live progress')
    .argument('<name>', 'model name (the server assigns the next version)')
    .argument('<inputs...>', 'svm: a folder of <label>/ folders; one-class: good images (files or folders); hybrid: an MVTec category (masks from ground_truth/) or <label>/ folders with a good one')
    .addOption(
      new Option('--kind <kind>', 'svm classifier, one-class (PatchCore) anomaly detector, or hybrid (PatchCore + a supervised head on the labelled defects)')
        .choices(['svm', 'one-class', 'hybrid'])
        .makeOptionMandatory(),
    )
    .addOption(new Option('--layer <name>', '(svm) CNN features').choices(['fc1000', 'avg_pool']))
    .option('--coreset <ratio>', '(one-class, hybrid) fraction of patch features kept (default 0.01)', fraction('--coreset'))
    .option('--shots <n>', '(hybrid) at most this many labelled defects per type train the head', intInRange('--shots', 1, 1_000_000))
    .option('--seed <n>', 'seed', intInRange('--seed', 0, 2 ** 31))
    .option('--no-load', 'do not load the new version when it is written')
    .option('--json', 'the new model as one JSON line')
    .addHelpText('after', '\nExample:\n  loupe --server 127.0.0.1:50051 models train bottle --kind one-class bottle/train/good')
    .action(action(deps, (name: string, inputs: string[], o: TrainRemoteOptions, cmd: Command) => trainRemote(name, inputs, o, cmd, deps)));

  program
    .command('inspections')
    .description('the inspection log of a Loupe server (--server)')
    .command('list')
    .description('recorded results, newest first')
    .option('--since <time>', 'only results at or after this time: ISO time or a duration back from now (15m, 2h, 7d)', (v) => parseSince(v))
    .option('--until <time>', 'only results before this time', (v) => parseSince(v))
    .option('--model <name>', 'only this model')
    .addOption(new Option('--verdict <v>', 'only this verdict').choices(['good', 'anomalous']))
    .option('--id <clientId>', 'only the result of this client image id')
    .option('--limit <n>', 'at most this many results', intInRange('--limit', 1, 10_000_000), 100)
    .option('--oldest-first', 'oldest first')
    .option('--json', 'one JSON line per result')
    .action(
      action(deps, async (o: { since?: Date; until?: Date; model?: string; verdict?: string; id?: string; limit: number; oldestFirst?: boolean; json?: boolean }, cmd: Command) => {
        const { client } = await connect(cmd);
        const { Verdict } = (await import('@loupe/client')).proto;
        let token = '';
        let n = 0;
        try {
          do {
            const page = await client.listInspections({
              pageSize: Math.min(1000, o.limit - n),
              pageToken: token,
              ...(o.since ? { since: o.since } : {}),
              ...(o.until ? { until: o.until } : {}),
              model: o.model ?? '',
              verdict: o.verdict === 'good' ? Verdict.VERDICT_GOOD : o.verdict === 'anomalous' ? Verdict.VERDICT_ANOMALOUS : Verdict.VERDICT_UNSPECIFIED,
              clientId: o.id ?? '',
              oldestFirst: o.oldestFirst ?? false,
            });
            for (const r of page.inspections) {
              const rec = {
                inspectionId: r.inspectionId,
                id: r.clientId,
                time: r.inspectedAt?.toISOString() ?? null,
                model: r.model,
                modelVersion: r.modelVersion,
                verdict: r.verdict === Verdict.VERDICT_ANOMALOUS ? 'anomalous' : 'good',
                score: r.score,
                defectType: r.defectType,
                latencyMs: r.latencyMs,
                source: r.source,
              };
              await write(process.stdout, o.json ? `${JSON.stringify(rec)}\n` : `${rec.time}  ${`${rec.model}@${rec.modelVersion}`.padEnd(24)} ${rec.verdict.padEnd(9)} ${rec.score.toFixed(4)}  ${rec.source || rec.id}\n`);
              n++;
            }
            token = page.nextPageToken;
          } while (token && n < o.limit);
        } finally {
          client.close();
        }
        return EXIT_OK;
      }),
    );

  program
    .command('health')
    .description('the grpc.health.v1 status of a Loupe server (--server): exit 0 when SERVING, 1 otherwise; a container or Kubernetes health check')
    .option('--service <name>', "the service asked about: '' (the server, default), loupe.v1.Inspection or a model name", '')
    .option('--timeout-ms <ms>', 'longest the check may take', intInRange('--timeout-ms', 1, 600_000), 5_000)
    .addHelpText('after', '\nExample (a container health check):\n  loupe --server 127.0.0.1:50051 health')
    .action(
      action(deps, async (o: { service: string; timeoutMs: number }, cmd: Command) => {
        const opts = requireServer(cmd);
        const { LoupeClient } = await import('@loupe/client');
        const token = opts.token ?? process.env['LOUPE_TOKEN'];
        const tls = opts.tls || opts.ca || opts.clientCert ? { ...(opts.ca ? { ca: opts.ca } : {}), ...(opts.clientCert ? { cert: opts.clientCert } : {}), ...(opts.clientKey ? { key: opts.clientKey } : {}) } : undefined;
        const client = new LoupeClient(opts.server!, { ...(tls ? { tls } : {}), ...(token ? { token } : {}) });
        try {
          // No connect-then-ask: a server that does not answer in time is as unhealthy as one that says so.
          // Health.Check answers NOT_FOUND (5) for a service it does not know (grpc.health.v1).
          const status = await client
            .checkHealth(o.service, o.timeoutMs)
            .catch((err: unknown) => ((err as { code?: unknown }).code === 5 ? 'SERVICE_UNKNOWN' : `UNREACHABLE (${errorText(err)})`));
          await write(process.stdout, `${status}\n`);
          return status === 'SERVING' ? EXIT_OK : EXIT_FAILURE;
        } finally {
          client.close();
        }
      }),
    );

  program
    .command('stats')
    .description('counters, queue state and batching of a Loupe server (--server)')
    .option('--json', 'one JSON object')
    .action(
      action(deps, async (o: { json?: boolean }, cmd: Command) => {
        const { client } = await connect(cmd);
        try {
          const s = await client.getStats();
          // Every field of GetStats, in the proto's order.
          const rec = {
            startedAt: s.startedAt?.toISOString() ?? null,
            uptimeS: s.uptimeS,
            inspections: s.inspectionsTotal,
            anomalous: s.anomalousTotal,
            errors: s.errorsTotal,
            imagesPerSecond: s.imagesPerSecond,
            queueDepth: s.queueDepth,
            active: s.active,
            openStreams: s.openStreams,
            batches: s.batchesTotal,
            meanBatchSize: s.meanBatchSize,
            batchSizes: Object.fromEntries(s.batchSizes.map((b) => [b.size, b.count])),
            backend: s.backend,
            device: s.device,
            maxBatchSize: s.maxBatchSize,
            maxQueueDelayMs: s.maxQueueDelayMs,
            maxInFlight: s.maxInFlight,
            maxQueue: s.maxQueue,
            recorded: s.recordedTotal,
            loadedModels: s.loadedModels,
            trainingsRunning: s.trainingsRunning,
            meanImagesPerBatch: s.meanImagesPerBatch,
            dedupe: s.dedupe,
          };
          if (o.json) await write(process.stdout, `${JSON.stringify(rec)}\n`);
          else for (const [k, v] of Object.entries(rec)) await write(process.stdout, `${k.padEnd(16)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}\n`);
        } finally {
          client.close();
        }
        return EXIT_OK;
      }),
    );
}
