// Limits of the transport on what a client sends: every string that reaches the inspection log or comes
// back in an answer is bounded (a 5 MB `source` in every row once made each ListInspections page larger
// than a gRPC message), and a client's text quoted in an error message is cut (a 100 KB model name in the
// status details was more than the headers may carry: the client saw RESOURCE_EXHAUSTED, not the reason).
// Deadlines are clamped to what Node's timers can hold.

/** Longest accepted value of each string field, in UTF-8 bytes (documented in the README and the proto). */
export const FIELD_LIMITS = {
  /** InspectRequest.id, InspectOneRequest.id, ListInspectionsRequest.client_id: a file path fits. */
  id: 1024,
  /** InspectRequest.source, InspectOneRequest.source. */
  source: 4096,
  /** TrainImage.name. */
  trainImageName: 1024,
  /** TrainImage.label (a class name). */
  label: 128,
  /** ListInspectionsRequest.page_token (the server's tokens are a few dozen bytes). */
  pageToken: 256,
} as const;

/** Longest client text quoted in a message (the rest is elided, with the full length said). */
const QUOTE_BYTES = 64;

export function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** `s` for quoting in a message: as it is when short, else its start and its length in bytes. */
export function clip(s: string, max = QUOTE_BYTES): string {
  if (s.length <= max / 4 || utf8Bytes(s) <= max) return s;
  // Cut on a character boundary within `max` bytes.
  const head = Buffer.from(s, 'utf8').subarray(0, max).toString('utf8').replace(/\uFFFD+$/, '');
  return `${head}... (${utf8Bytes(s)} bytes)`;
}

/** `s` cut to at most `max` UTF-8 bytes (on a character boundary). */
export function truncateUtf8(s: string, max: number): string {
  if (s.length <= max / 4 || utf8Bytes(s) <= max) return s;
  return Buffer.from(s, 'utf8').subarray(0, max).toString('utf8').replace(/\uFFFD+$/, '');
}

/** The message for a string field over its limit, or undefined when it is within it. */
export function fieldTooLong(field: string, value: string, limit: number): string | undefined {
  if (value.length <= limit / 4) return undefined; // fast path: cannot exceed `limit` bytes
  const n = utf8Bytes(value);
  return n > limit ? `the '${field}' field is ${n} bytes; the limit is ${limit}` : undefined;
}

/**
 * Longest delay a Node timer holds (2^31 - 1 ms, about 24.8 days): a longer one fires at once (the timer
 * overflows), so every deadline is clamped to it.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** How grpc-js's server reads a `grpc-timeout` header (unanchored, as it does). */
const TIMEOUT_HEADER = /(\d{1,8})\s*([HMSmun])/;
const UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };
/** The longest timeout grpc-js parses correctly (it keeps `value * unit` in an int32): 24.8 days. */
const CLAMPED_TIMEOUT = `${Math.floor(MAX_TIMER_MS / 1000)}S`;

/**
 * Clamps an incoming call's `grpc-timeout` header in place to what grpc-js's server can hold: it computes
 * `value * unit | 0`, so 30 days ("2592000S") wrapped to a negative timeout and the call ended
 * DEADLINE_EXCEEDED at once. A longer timeout is treated as 24.8 days (no call lasts that long).
 */
export function clampTimeoutHeader(headers: Record<string, unknown>): void {
  const v = headers['grpc-timeout'];
  if (typeof v !== 'string') return;
  const m = TIMEOUT_HEADER.exec(v);
  if (m && Number(m[1]) * UNIT_MS[m[2]!]! > MAX_TIMER_MS) headers['grpc-timeout'] = CLAMPED_TIMEOUT;
}
