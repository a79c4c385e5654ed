export * from './classification.js';
export * from './pixel.js';
export * from './roc.js';
