export * from './counts.js';
export * from './errors.js';
export * from './groups.js';
export * from './image-files.js';
export * from './random.js';
export * from './scan.js';
export * from './split.js';
export type * from './types.js';
export { compareStrings } from './util.js';
