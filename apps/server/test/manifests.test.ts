// deploy/k8s and deploy/compose.yaml, checked without a cluster: every Kubernetes object validated against
// the Kubernetes OpenAPI schemas (kubernetes-models' JSON schemas), and what they say about the server
// (ports, probes, environment variables, the config file, drain timings) checked against the server's own
// config defaults and loader, so that a renamed variable or a changed default breaks this test.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import * as apps from 'kubernetes-models/apps/v1';
import * as autoscaling from 'kubernetes-models/autoscaling/v2';
import * as core from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments, parse } from 'yaml';

import { DEFAULTS, ENV_VARS, loadConfig } from '../dist/config.js';
import { REPO_ROOT } from './fixtures.js';

const K8S = join(REPO_ROOT, 'deploy', 'k8s');

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  [k: string]: unknown;
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Secret': core.Secret,
  'v1/ConfigMap': core.ConfigMap,
  'v1/Service': core.Service,
  'v1/PersistentVolumeClaim': core.PersistentVolumeClaim,
  'apps/v1/Deployment': apps.Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': autoscaling.HorizontalPodAutoscaler,
};

function objects(): { file: string; obj: K8sObject }[] {
  const out: { file: string; obj: K8sObject }[] = [];
  for (const file of readdirSync(K8S).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()) {
    for (const doc of parseAllDocuments(readFileSync(join(K8S, file), 'utf8'))) {
      if (doc.errors.length) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const obj = doc.toJS() as K8sObject | null;
      if (obj) out.push({ file, obj });
    }
  }
  return out;
}

const find = (kind: string, name: string): K8sObject => {
  const o = objects().find(({ obj }) => obj.kind === kind && obj.metadata.name === name);
  if (!o) throw new Error(`no ${kind} ${name} in deploy/k8s`);
  return o.obj;
};

describe('Kubernetes manifests (deploy/k8s)', () => {
  it('every object is valid against the Kubernetes OpenAPI schema of its kind', () => {
    const all = objects();
    expect(all.length).toBeGreaterThanOrEqual(8);
    const invalid: string[] = [];
    for (const { file, obj } of all) {
      const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
      if (!Model) {
        invalid.push(`${file}: ${obj.apiVersion} ${obj.kind} has no schema here`);
        continue;
      }
      try {
        new Model(obj as never).validate();
      } catch (err) {
        invalid.push(`${file} ${obj.kind}/${obj.metadata.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    expect(invalid).toEqual([]);
    // kustomization lists every file
    const kust = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as { resources: string[] };
    expect([...kust.resources].sort()).toEqual([...new Set(all.map((o) => o.file))].sort());
  });

  it('the schema check catches a broken manifest (replicas as a string)', () => {
    const d = structuredClone(find('Deployment', 'loupe')) as never as { spec: { replicas: unknown } };
    d.spec.replicas = 'three';
    expect(() => new apps.Deployment(d as never).validate()).toThrow();
  });

  it("ports, probes, environment, config file and drain timings agree with the server's", () => {
    const dep = find('Deployment', 'loupe') as never as {
      spec: { template: { spec: { terminationGracePeriodSeconds: number; containers: Container[]; volumes: { name: string; configMap?: { name: string }; secret?: { secretName: string; items?: { key: string }[] }; persistentVolumeClaim?: { claimName: string } }[] } } };
    };
    interface Probe {
      grpc?: { port: number; service: string };
    }
    interface Container {
      ports: { name: string; containerPort: number }[];
      env: { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }[];
      readinessProbe: Probe;
      livenessProbe: Probe;
      startupProbe: Probe;
      lifecycle: { preStop: { exec: { command: string[] } } };
      volumeMounts: { name: string; mountPath: string }[];
    }
    const pod = dep.spec.template.spec;
    const c = pod.containers[0]!;
    const grpcPort = c.ports.find((p) => p.name === 'grpc')!.containerPort;
    expect(grpcPort).toBe(DEFAULTS.port);
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) expect(probe.grpc).toEqual({ port: DEFAULTS.port, service: '' });
    // every LOUPE_SERVER_* variable is one the server reads
    const known = new Set([...Object.keys(ENV_VARS), 'LOUPE_SERVER_CONFIG']);
    expect(c.env.map((e) => e.name).filter((n) => n.startsWith('LOUPE_SERVER_') && !known.has(n))).toEqual([]);

    // the ConfigMap's config.json, read by the server's own loader where the pod mounts it
    const cm = find('ConfigMap', 'loupe-config') as never as { data: Record<string, string> };
    const cfgMount = c.volumeMounts.find((m) => m.name === pod.volumes.find((v) => v.configMap?.name === 'loupe-config')!.name)!.mountPath;
    const cfgFile = c.env.find((e) => e.name === 'LOUPE_SERVER_CONFIG')!.value!;
    expect(cfgFile).toBe(`${cfgMount}/config.json`);
    const json = JSON.parse(cm.data['config.json']!) as { modelsDir: string; port: number; shutdownGraceMs: number; metrics: { port: number }; auth: { tokensFile: string } };
    const secretsMount = c.volumeMounts.find((m) => m.name === pod.volumes.find((v) => v.secret?.secretName === 'loupe-secrets')!.name)!.mountPath;
    expect(json.auth.tokensFile.startsWith(`${secretsMount}/`)).toBe(true);
    const cfg = loadConfig({ env: {}, overrides: { ...json, auth: { tokens: ['t'], openHealth: false } } });
    expect(cfg.port).toBe(grpcPort);
    expect(c.ports.find((p) => p.name === 'metrics')!.containerPort).toBe(cfg.metrics.port);
    expect(c.volumeMounts.find((m) => m.name === 'models')!.mountPath).toBe(cfg.modelsDir);
    // the image's default models folder is the same (deploy/Containerfile)
    expect(readFileSync(join(REPO_ROOT, 'deploy', 'Containerfile'), 'utf8')).toContain(`LOUPE_SERVER_MODELS=${cfg.modelsDir}`);
    // the PostgreSQL URL comes from the Secret, and that Secret has the key
    const dbUrl = c.env.find((e) => e.name === 'LOUPE_SERVER_DB_URL')!.valueFrom!.secretKeyRef!;
    const secret = find('Secret', dbUrl.name) as never as { stringData: Record<string, string> };
    expect(secret.stringData[dbUrl.key]).toMatch(/^postgres:\/\//);
    expect(loadConfig({ env: { LOUPE_SERVER_DB_URL: secret.stringData[dbUrl.key]! }, overrides: { modelsDir: '/m' } }).db.url).toBe(secret.stringData[dbUrl.key]);
    // drain: preStop sleep + the server's grace fit in the pod's termination grace period
    const preStop = Number(c.lifecycle.preStop.exec.command[1]);
    expect(c.lifecycle.preStop.exec.command[0]).toBe('sleep');
    expect(preStop + cfg.shutdownGraceMs / 1000).toBeLessThan(pod.terminationGracePeriodSeconds);

    // both Services select the Deployment's pods and reach its grpc port; one is headless (client round_robin)
    const labels = (find('Deployment', 'loupe') as never as { spec: { template: { metadata: { labels: Record<string, string> } } } }).spec.template.metadata.labels;
    const services = objects().filter(({ obj }) => obj.kind === 'Service').map(({ obj }) => obj as never as { metadata: { name: string }; spec: { clusterIP?: string; selector: Record<string, string>; ports: { name: string; port: number; targetPort: string }[] } });
    expect(services.map((s) => s.metadata.name).sort()).toEqual(['loupe', 'loupe-headless']);
    for (const s of services) {
      for (const [k, v] of Object.entries(s.spec.selector)) expect(labels[k]).toBe(v);
      const g = s.spec.ports.find((p) => p.name === 'grpc')!;
      expect(g.port).toBe(DEFAULTS.port);
      expect(c.ports.some((p) => p.name === g.targetPort)).toBe(true);
    }
    expect(services.find((s) => s.metadata.name === 'loupe-headless')!.spec.clusterIP).toBe('None');
    // the HPA scales this Deployment; the PVC is the one mounted
    const hpa = find('HorizontalPodAutoscaler', 'loupe') as never as { spec: { scaleTargetRef: { kind: string; name: string } } };
    expect(hpa.spec.scaleTargetRef).toMatchObject({ kind: 'Deployment', name: 'loupe' });
    expect(pod.volumes.find((v) => v.name === 'models')!.persistentVolumeClaim!.claimName).toBe(find('PersistentVolumeClaim', 'loupe-models').metadata.name);
  });
});

describe('compose file (deploy/compose.yaml)', () => {
  it("replicas, proxy and PostgreSQL agree with the server's config and the nginx template", () => {
    const compose = parse(readFileSync(join(REPO_ROOT, 'deploy', 'compose.yaml'), 'utf8'), { merge: true }) as {
      services: Record<string, { image: string; environment?: Record<string, string>; ports?: string[]; volumes?: string[]; ulimits?: Record<string, { soft: number; hard: number }> }>;
    };
    const replicas = Object.keys(compose.services).filter((s) => /^loupe-\d+$/.test(s));
    expect(replicas.length).toBeGreaterThanOrEqual(3);
    const known = new Set(Object.keys(ENV_VARS));
    for (const r of replicas) {
      const s = compose.services[r]!;
      expect(Object.keys(s.environment ?? {}).filter((n) => !known.has(n))).toEqual([]);
      expect(s.environment!['LOUPE_SERVER_DB_URL']).toMatch(/^postgres:\/\/loupe:.*@postgres:5432\/loupe$/);
      expect(s.ports!.every((p) => p.endsWith(`:${DEFAULTS.port}`))).toBe(true);
      expect(s.volumes).toContain(`./models:${loadConfig({ env: { LOUPE_SERVER_MODELS: '/var/lib/loupe/models' } }).modelsDir}`);
      expect(s.ulimits).toEqual({ nofile: { soft: 20000, hard: 20000 }, nproc: { soft: 32768, hard: 32768 } });
    }
    const proxy = compose.services['proxy']!;
    const upstreams = [...proxy.environment!['LOUPE_UPSTREAM_SERVERS']!.matchAll(/server ([\w-]+):(\d+)/g)].map((m) => [m[1], Number(m[2])]);
    expect(upstreams).toEqual(replicas.map((r) => [r, DEFAULTS.port]));
    const template = readFileSync(join(REPO_ROOT, 'deploy', 'nginx', 'loupe.conf.template'), 'utf8');
    for (const v of template.matchAll(/\$\{(\w+)\}/g)) expect(Object.keys(proxy.environment!)).toContain(v[1]);
    expect(template).toMatch(/grpc_pass grpc:\/\/loupe_replicas;/);
    expect(template).toMatch(/client_max_body_size 16m;/);
    expect(16 * 1024 * 1024).toBe(DEFAULTS.limits.maxMessageBytes);
  });
});
