// An independent gRPC client that knows nothing of Loupe's protos: it learns them from the server's
// reflection service, as grpcurl or Python's descriptor pool do, and calls methods with messages built
// from those descriptors at run time. Like a descriptor pool it is strict: every file must come with all
// the files it imports, and every type a file uses must be defined in it or in one of its imports.
// Built on @grpc/grpc-js (transport) and protobufjs (descriptors, encoding) only; the reflection protocol
// is declared here (grpc/reflection/v1/reflection.proto, the messages this client uses).
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';

const REFLECTION_PROTO = `
syntax = "proto3";
package grpc.reflection.v1;
service ServerReflection {
  rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse);
}
message ServerReflectionRequest {
  string host = 1;
  oneof message_request {
    string file_by_filename = 3;
    string file_containing_symbol = 4;
    string list_services = 7;
  }
}
message ServerReflectionResponse {
  string valid_host = 1;
  ServerReflectionRequest original_request = 2;
  oneof message_response {
    FileDescriptorResponse file_descriptor_response = 4;
    ListServiceResponse list_services_response = 6;
    ErrorResponse error_response = 7;
  }
}
message FileDescriptorResponse { repeated bytes file_descriptor_proto = 1; }
message ListServiceResponse { repeated ServiceResponse service = 1; }
message ServiceResponse { string name = 1; }
message ErrorResponse { int32 error_code = 1; string error_message = 2; }
`;

const reflectionRoot = protobuf.parse(REFLECTION_PROTO, { keepCase: false }).root;
const ReflectionRequest = reflectionRoot.lookupType('grpc.reflection.v1.ServerReflectionRequest');
const ReflectionResponse = reflectionRoot.lookupType('grpc.reflection.v1.ServerReflectionResponse');

interface FileProto {
  name: string;
  package?: string;
  dependency?: string[];
  messageType?: MessageProto[];
  enumType?: { name: string }[];
  service?: { name: string; method?: { name: string; inputType: string; outputType: string }[] }[];
}
interface MessageProto {
  name: string;
  field?: { name: string; typeName?: string }[];
  nestedType?: MessageProto[];
  enumType?: { name: string }[];
}

export interface DynamicClientOptions {
  token?: string;
  credentials?: grpc.ChannelCredentials;
  channelOptions?: grpc.ChannelOptions;
}

/** The reflection-driven client. */
export class DynamicClient {
  private readonly client: grpc.Client;
  private readonly files = new Map<string, FileProto>();
  private readonly raw = new Map<string, Uint8Array>();
  private root: protobuf.Root | undefined;

  constructor(
    address: string,
    private readonly opts: DynamicClientOptions = {},
  ) {
    this.client = new grpc.Client(address, opts.credentials ?? grpc.credentials.createInsecure(), opts.channelOptions ?? {});
  }

  close(): void {
    this.client.close();
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.opts.token) md.set('authorization', `Bearer ${this.opts.token}`);
    return md;
  }

  /** Sends reflection requests on one stream and returns the responses in order. */
  private reflect(requests: Record<string, unknown>[]): Promise<Record<string, any>[]> {
    return new Promise((resolve, reject) => {
      const call = this.client.makeBidiStreamRequest(
        '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
        (m: Record<string, unknown>) => Buffer.from(ReflectionRequest.encode(ReflectionRequest.fromObject(m)).finish()),
        (b: Buffer) => ReflectionResponse.toObject(ReflectionResponse.decode(b), { bytes: Array, defaults: true, oneofs: true }) as Record<string, any>,
        this.metadata(),
        { deadline: Date.now() + 10_000 },
      );
      const out: Record<string, any>[] = [];
      call.on('data', (r: Record<string, any>) => {
        out.push(r);
        if (out.length === requests.length) call.end();
      });
      call.on('error', reject);
      call.on('end', () => resolve(out));
      for (const r of requests) call.write(r);
    });
  }

  async listServices(): Promise<string[]> {
    const [r] = await this.reflect([{ listServices: '*' }]);
    if (r!['errorResponse']) throw new Error(`reflection: ${r!['errorResponse'].errorMessage}`);
    return (r!['listServicesResponse'].service as { name: string }[]).map((s) => s.name);
  }

  private addFiles(r: Record<string, any>, asked: string): void {
    if (r['errorResponse']) throw new Error(`reflection: ${asked}: ${r['errorResponse'].errorMessage} (code ${r['errorResponse'].errorCode})`);
    for (const bytes of r['fileDescriptorResponse'].fileDescriptorProto as number[][]) {
      const u8 = Uint8Array.from(bytes);
      const f = descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(u8)) as unknown as FileProto;
      if (!this.files.has(f.name)) {
        this.files.set(f.name, f);
        this.raw.set(f.name, u8);
      }
    }
  }

  /**
   * Loads the file defining `symbol` and, transitively, every file it imports (by file name), then checks
   * them as a descriptor pool does. Throws naming what is missing.
   */
  async resolve(symbol: string): Promise<void> {
    const [r] = await this.reflect([{ fileContainingSymbol: symbol }]);
    this.addFiles(r!, symbol);
    for (;;) {
      const missing = [...this.files.values()].flatMap((f) => f.dependency ?? []).filter((d) => !this.files.has(d));
      if (missing.length === 0) break;
      const rs = await this.reflect([...new Set(missing)].map((m) => ({ fileByFilename: m })));
      rs.forEach((x, i) => this.addFiles(x, missing[i]!));
    }
    for (const f of this.files.values()) checkFile(f, this.files);
    const set = descriptor.FileDescriptorSet.fromObject({ file: [...this.raw.values()].map((u8) => descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(u8))) });
    this.root = (protobuf.Root as unknown as { fromDescriptor(s: unknown): protobuf.Root }).fromDescriptor(set);
    this.root.resolveAll();
  }

  /** The names of the files loaded so far, with the files each declares it imports. */
  fileGraph(): Record<string, string[]> {
    return Object.fromEntries([...this.files.values()].map((f) => [f.name, f.dependency ?? []]));
  }

  /** A message type by full name (after resolve()). */
  type(name: string): protobuf.Type {
    if (!this.root) throw new Error('resolve() first');
    return this.root.lookupType(name);
  }

  private method(path: string): { req: protobuf.Type; res: protobuf.Type; grpcPath: string } {
    const [svc, m] = [path.slice(0, path.lastIndexOf('.')), path.slice(path.lastIndexOf('.') + 1)];
    const service = this.root!.lookupService(svc);
    const method = service.methods[m];
    if (!method) throw new Error(`no method ${path}`);
    method.resolve();
    return { req: method.resolvedRequestType!, res: method.resolvedResponseType!, grpcPath: `/${svc}/${m}` };
  }

  /** Calls a unary method with a plain object request; resolves with the response as a plain object. */
  unary(path: string, request: Record<string, unknown>, deadlineMs = 60_000): Promise<Record<string, any>> {
    const { req, res, grpcPath } = this.method(path);
    const err = req.verify(request);
    if (err) return Promise.reject(new Error(`${path}: ${err}`));
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        grpcPath,
        (m: Record<string, unknown>) => Buffer.from(req.encode(req.fromObject(m)).finish()),
        (b: Buffer) => res.toObject(res.decode(b), { longs: Number, enums: String, defaults: true }) as Record<string, any>,
        request,
        this.metadata(),
        { deadline: Date.now() + deadlineMs },
        (e, v) => (e ? reject(e) : resolve(v!)),
      );
    });
  }

  /** Opens a bidirectional stream of `path` with plain-object messages both ways. */
  stream(path: string): grpc.ClientDuplexStream<Record<string, unknown>, Record<string, any>> {
    const { req, res, grpcPath } = this.method(path);
    return this.client.makeBidiStreamRequest(
      grpcPath,
      (m: Record<string, unknown>) => Buffer.from(req.encode(req.fromObject(m)).finish()),
      (b: Buffer) => res.toObject(res.decode(b), { longs: Number, enums: String, defaults: true }) as Record<string, any>,
      this.metadata(),
    );
  }
}

/**
 * A descriptor pool's check: every type a file refers to (fields, method inputs and outputs) is defined in
 * the file itself or in a file it imports.
 */
function checkFile(f: FileProto, files: Map<string, FileProto>): void {
  const defined = (file: FileProto): Set<string> => {
    const out = new Set<string>();
    const pkg = file.package ? `.${file.package}` : '';
    const walk = (m: MessageProto, scope: string): void => {
      const n = `${scope}.${m.name}`;
      out.add(n);
      for (const e of m.enumType ?? []) out.add(`${n}.${e.name}`);
      for (const x of m.nestedType ?? []) walk(x, n);
    };
    for (const m of file.messageType ?? []) walk(m, pkg);
    for (const e of file.enumType ?? []) out.add(`${pkg}.${e.name}`);
    return out;
  };
  const visible = new Set(defined(f));
  for (const d of f.dependency ?? []) {
    const dep = files.get(d);
    if (!dep) throw new Error(`${f.name} imports ${d}, which the server did not provide`);
    for (const n of defined(dep)) visible.add(n);
  }
  // References with their scope: absolute (".pkg.Type") or relative, resolved outward from the scope as
  // protoc does ("Type" inside .pkg.Msg: .pkg.Msg.Type, then .pkg.Type, then .Type).
  const refs: { name: string; scope: string }[] = [];
  const pkg = f.package ? `.${f.package}` : '';
  const walk = (m: MessageProto, scope: string): void => {
    const n = `${scope}.${m.name}`;
    for (const fl of m.field ?? []) if (fl.typeName) refs.push({ name: fl.typeName, scope: n });
    for (const x of m.nestedType ?? []) walk(x, n);
  };
  for (const m of f.messageType ?? []) walk(m, pkg);
  for (const s of f.service ?? []) for (const m of s.method ?? []) refs.push({ name: m.inputType, scope: pkg }, { name: m.outputType, scope: pkg });
  const resolves = ({ name, scope }: { name: string; scope: string }): boolean => {
    if (name.startsWith('.')) return visible.has(name);
    for (let s = scope; ; s = s.slice(0, Math.max(0, s.lastIndexOf('.')))) {
      if (visible.has(`${s}.${name}`)) return true;
      if (s === '') return false;
    }
  };
  for (const r of refs) {
    if (!resolves(r)) throw new Error(`${f.name} uses ${r.name}, which is defined neither in it nor in the files it imports (${(f.dependency ?? []).join(', ') || 'none'})`);
  }
}
