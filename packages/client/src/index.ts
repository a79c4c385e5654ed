// @loupe/client: the typed gRPC client of the Loupe inspection server and the generated loupe.v1 code.
// No native code, no image decoding, no database: what a plant system needs to stream images.
export { isMultiServerTarget, parseAddress, resolveTarget } from './address.js';
export {
  LoupeClient,
  serviceConfig,
  statusName,
  verdictName,
  type ClientOptions,
  type ClientTls,
  type InspectAnswer,
  type InspectItem,
  type InspectManyOptions,
  type InspectManySummary,
  type ResumeOptions,
  type VerdictName,
} from './client.js';
export * as proto from './gen/loupe/v1/inspection.js';
export * as healthProto from './gen/grpc/health/v1/health.js';
export { status as GrpcStatus } from '@grpc/grpc-js';
