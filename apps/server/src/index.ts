// @loupe/server: the Loupe inspection server (gRPC loupe.v1 API). Its client is @loupe/client, re-exported
// here for the server's own tests and tools (one client, kept in one package).
export { DynamicBatcher, type BatchInfo, type BatcherOptions, type RunInfo } from './batcher.js';
export { LoupeClient, parseAddress, statusName, type ClientOptions, type ClientTls, type InspectItem, type InspectManyOptions, type InspectManySummary } from '@loupe/client';
export { ConfigError, configFromEnv, DEFAULTS, ENV_VARS, loadConfig, readConfigFile, redactConfig, type DeepPartial, type LoadConfigOptions, type ServerConfig } from './config.js';
export { INSPECTION_SERVICE_NAME } from './health.js';
export { createLogger, silentLogger, type Logger, type LogLevel } from './log.js';
export { Metrics } from './metrics.js';
export { ModelRegistry, validModelName } from './registry.js';
export { REASON_METADATA_KEY } from './service.js';
export { flagsToOverrides, parseServeArgs, serve, SERVE_USAGE, type ServeFlags, type ServeOptions } from './serve.js';
export { LoupeServer, startServer, type StartOptions } from './server.js';
export { InspectionStore, type InspectionLog, type InspectionRow, type StoredInspection } from './store.js';
export { PgInspectionStore } from './store-pg.js';
export { proto, healthProto } from '@loupe/client';
