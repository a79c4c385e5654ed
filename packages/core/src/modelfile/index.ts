export * from './atomic.js';
export * from './errors.js';
export * from './format.js';
export * from './svm-model.js';
