// Synchronous access to @loupe/native, for the small pure kernels (PatchCore pooling, upsampling,
// projection, anomaly-map resizing and smoothing): they take about a millisecond and their callers are
// synchronous. native/index.js has no top-level await and loads the .node file with require(), so
// Node >= 20.19 (this package's engines) can require() it.
import type { NativeAddon } from '@loupe/native';
import { createRequire } from 'node:module';

import { EngineError, engineCodeOf, LoupeError, messageOf } from './errors.js';

const requireFromHere = createRequire(import.meta.url);

/**
 * Loads @loupe/native synchronously (Node caches it: every call returns the same addon); EngineError
 * (ENGINE_UNAVAILABLE) with the build hint when it is not built. engine.ts's loadAddon() uses it too, so
 * there is one load path (no require() racing an import() of the same module).
 */
export function requireNativeAddon(): NativeAddon {
  try {
    return (requireFromHere('@loupe/native') as { default: NativeAddon }).default;
  } catch (err) {
    throw new EngineError('Unavailable', `the native engine cannot be loaded: ${messageOf(err)}`, { cause: err });
  }
}

let kernels: NativeAddon | undefined;

/** The addon for the synchronous kernels; EngineError(ENGINE_UNAVAILABLE) when it is missing or predates them. */
export function nativeAddonSync(): NativeAddon {
  if (kernels) return kernels;
  const loaded = requireNativeAddon();
  if (typeof loaded.patchScoresToMap !== 'function') {
    throw new EngineError('Unavailable', '@loupe/native predates the PatchCore kernels: rebuild it (npx nx run native:build)');
  }
  return (kernels = loaded);
}

/**
 * Runs one synchronous kernel. Argument errors (the binding's TypeError/RangeError, the engine's
 * InvalidArgument) become LoupeError('INVALID_ARGUMENT') prefixed with `what`.
 */
export function runKernel<T>(what: string, fn: (addon: NativeAddon) => T): T {
  const a = nativeAddonSync();
  try {
    return fn(a);
  } catch (err) {
    if (err instanceof TypeError || err instanceof RangeError || engineCodeOf(err) === 'InvalidArgument') {
      throw new LoupeError('INVALID_ARGUMENT', `${what}: ${messageOf(err)}`, { cause: err });
    }
    throw err;
  }
}
