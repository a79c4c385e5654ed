export * from './coding.js';
export * from './features.js';
export * from './reference-sgd.js';
export * from './standardize.js';
export * from './svm.js';
