export * from './generate.js';
export type { BottleLabel, CartonLabel, SpoonLabel } from './objects.js';
