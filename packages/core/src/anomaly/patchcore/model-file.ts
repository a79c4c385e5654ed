// PatchCore in the Loupe model file (kind 'one-class', method 'patchcore'): the JSON header carries the
// config, thresholds and provenance; the payload holds the memory bank (float32 [n, d], or fp16 bits as
// uint8 [n, d, 2] little-endian) and, optionally, a fused few-shot head (JSON, it is small).
import { ModelFileError } from '../../modelfile/errors.js';
import { readModelFile, writeModelFile, type DecodedModel } from '../../modelfile/format.js';
import type { FewShotHeadState, FusionState } from '../fewshot/head.js';
import { PATCHCORE_FORMAT, PatchCoreModel, type PatchCoreHeader } from './model.js';

const BANK_SECTION = 'patchcore.bank';

export interface PatchCoreFileExtras {
  /** Optional supervised head and its fusion with the memory-bank score. */
  fewShot?: { head: FewShotHeadState; fusion: FusionState };
  /** Image preprocessing description (JSON) for readers of the header. */
  preprocessing?: Record<string, unknown>;
  /** Default now. */
  createdAt?: string;
  /** sha256 of every training image's file (bank and validation), so evaluation can say which it has seen. */
  trainHashes?: readonly string[];
  /** What the good images were (the MVTec category folder's name), so evaluation can notice another one. */
  category?: string;
  /** Figures to keep with the model (JSON). */
  metrics?: unknown;
  /** Any other JSON metadata. */
  extra?: Readonly<Record<string, unknown>>;
  /** The file's kind and method (default 'one-class', 'patchcore'; hybrid models: 'hybrid'). */
  kind?: 'one-class' | 'hybrid';
  method?: string;
  /** More header fields of the kind (a hybrid model's state). */
  header?: Readonly<Record<string, unknown>>;
}

export interface LoadedPatchCore {
  file: string;
  model: PatchCoreModel;
  fewShot?: { head: FewShotHeadState; fusion: FusionState };
  /** sha256 of the training images' files; empty for files written before this field. */
  trainHashes: readonly string[];
  /** The training category's name, when the writer knew it. */
  category?: string;
}

/** Writes the model atomically; returns bytes written and the payload sha256. */
export async function savePatchCore(file: string, model: PatchCoreModel, extras: PatchCoreFileExtras = {}): Promise<{ bytes: number; sha256: string }> {
  const { header, bank } = model.serialize();
  const data = bank instanceof Uint16Array ? new Uint8Array(bank.buffer, bank.byteOffset, bank.byteLength) : bank;
  const shape = bank instanceof Uint16Array ? [header.bank.n, header.bank.d, 2] : [header.bank.n, header.bank.d];
  const h: Record<string, unknown> = {
    kind: extras.kind ?? 'one-class',
    method: extras.method ?? 'patchcore',
    ...(extras.createdAt !== undefined ? { createdAt: extras.createdAt } : {}),
    weightsHash: header.weightsHash,
    preprocessing: extras.preprocessing ?? { resize: header.config.tile ? 'tiles-224-native' : 'squash-224', filter: 'cubic', mode: 'caffe' },
    patchcore: { ...header, bankSection: BANK_SECTION },
    ...(extras.fewShot ? { fewShot: extras.fewShot } : {}),
    ...(extras.trainHashes ? { trainHashes: [...extras.trainHashes] } : {}),
    ...(extras.category !== undefined ? { category: extras.category } : {}),
    ...(extras.metrics !== undefined ? { metrics: extras.metrics } : {}),
    ...(extras.extra !== undefined ? { extra: extras.extra } : {}),
    ...(extras.header ?? {}),
  };
  return writeModelFile(file, h as { kind: 'one-class' | 'hybrid' }, [{ name: BANK_SECTION, shape, data }]);
}

/** Reads and validates a PatchCore model file. */
export async function loadPatchCore(file: string, opts: { expectWeightsHash?: string } = {}): Promise<LoadedPatchCore> {
  return loadPatchCoreDecoded(await readModelFile(file, { kinds: ['one-class'] }), file, opts);
}

/** Validates a decoded one-class model file and rebuilds the PatchCore model. */
export function loadPatchCoreDecoded(decoded: DecodedModel, file: string, opts: { expectWeightsHash?: string; method?: string } = {}): LoadedPatchCore {
  const h = decoded.header as Record<string, unknown>;
  const method = opts.method ?? 'patchcore';
  if (h['method'] !== method) throw new ModelFileError('MODEL_INCOMPATIBLE', file, `${String(h['kind'])} method ${JSON.stringify(h['method'])} is not '${method}'`, { field: 'method' });
  const pc = h['patchcore'] as (PatchCoreHeader & { bankSection?: string }) | undefined;
  if (!pc || typeof pc !== 'object' || pc.format !== PATCHCORE_FORMAT || !pc.bank) throw new ModelFileError('MODEL_CORRUPT', file, 'missing PatchCore header', { field: 'patchcore' });
  // The hash is stored twice (the file's header, which listings show, and the PatchCore header): both
  // must agree, so a file edited in one place cannot pass the check on the other.
  const top = h['weightsHash'];
  if ((top ?? null) !== (pc.weightsHash ?? null)) {
    throw new ModelFileError('MODEL_CORRUPT', file, `weightsHash ${JSON.stringify(top)} disagrees with patchcore.weightsHash ${JSON.stringify(pc.weightsHash)}`, { field: 'weightsHash' });
  }
  if (opts.expectWeightsHash && pc.weightsHash && pc.weightsHash !== opts.expectWeightsHash) {
    throw new ModelFileError('MODEL_INCOMPATIBLE', file, `trained on CNN weights ${pc.weightsHash.slice(0, 12)}..., the engine has ${opts.expectWeightsHash.slice(0, 12)}...`, { field: 'patchcore.weightsHash' });
  }
  const raw = decoded.sections.get(pc.bankSection ?? BANK_SECTION);
  if (!raw) throw new ModelFileError('MODEL_CORRUPT', file, 'no memory bank section', { field: 'payload.sections' });
  let bank: Float32Array | Uint16Array;
  if (pc.bank.storage === 'fp16') {
    if (!(raw instanceof Uint8Array) || raw.byteLength !== pc.bank.n * pc.bank.d * 2) throw new ModelFileError('MODEL_CORRUPT', file, 'fp16 bank has the wrong size', { field: 'patchcore.bank' });
    bank = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  } else {
    if (!(raw instanceof Float32Array)) throw new ModelFileError('MODEL_CORRUPT', file, 'fp32 bank is not float32', { field: 'patchcore.bank' });
    bank = raw;
  }
  let model: PatchCoreModel;
  try {
    model = PatchCoreModel.deserialize(pc, bank);
  } catch (err) {
    throw new ModelFileError('MODEL_CORRUPT', file, err instanceof Error ? err.message : String(err), { field: 'patchcore', cause: err });
  }
  const fewShot = h['fewShot'] as LoadedPatchCore['fewShot'];
  const hashes = h['trainHashes'];
  if (hashes !== undefined && !(Array.isArray(hashes) && hashes.every((x) => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)))) {
    throw new ModelFileError('MODEL_CORRUPT', file, 'trainHashes must be a list of sha256 hex digests', { field: 'trainHashes' });
  }
  const trainHashes = (hashes as string[] | undefined) ?? [];
  const category = typeof h['category'] === 'string' ? { category: h['category'] } : {};
  return fewShot ? { file, model, fewShot, trainHashes, ...category } : { file, model, trainHashes, ...category };
}
