/** examples/kubernetes rendered offline with `kubectl kustomize`, checked for what the README promises. */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

type Doc = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function render(dir: string): Doc[] {
  const yaml = execFileSync('kubectl', ['kustomize', path.join(REPO, dir)], { encoding: 'utf8' });
  // python3-yaml reads the YAML (the tests need no YAML package of their own)
  const json = execFileSync('python3', ['-c', 'import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))'], { input: yaml, encoding: 'utf8' });
  return JSON.parse(json);
}

const flag = (args: string[], name: string) => args.filter((a) => a.startsWith(`${name}=`)).map((a) => a.slice(name.length + 1));

describe('examples/kubernetes', () => {
  const docs = render('examples/kubernetes');
  const svc = docs.find((d) => d.kind === 'Service')!;
  const sts = docs.find((d) => d.kind === 'StatefulSet')!;

  it('is a headless Service in front of a StatefulSet of mbuild serve pods with a PVC each', () => {
    expect(svc.spec.clusterIP).toBe('None');
    expect(sts.spec.serviceName).toBe(svc.metadata.name);
    expect(svc.spec.selector).toEqual(sts.spec.selector.matchLabels);
    expect(sts.spec.template.metadata.labels).toMatchObject(sts.spec.selector.matchLabels);
    const claim = sts.spec.volumeClaimTemplates[0];
    const c = sts.spec.template.spec.containers[0];
    expect(c.image).toBe('registry.example.com/mbuild:0.1.0');
    expect(c.args).toContain('serve');
    const root = flag(c.args, '--root')[0];
    expect(c.volumeMounts.find((m: Doc) => m.name === claim.metadata.name).mountPath).toBe(root);
  });

  it('listens on TCP with mutual TLS from a Secret, on the port the Service names', () => {
    const spec = sts.spec.template.spec;
    const c = spec.containers[0];
    const tcp = flag(c.args, '--addr').find((a) => a.startsWith('tcp://'))!;
    const port = Number(tcp.split(':').pop());
    expect(c.ports.find((p: Doc) => p.name === svc.spec.ports[0].targetPort).containerPort).toBe(port);
    const tlsVolume = spec.volumes.find((v: Doc) => v.secret);
    const mount = c.volumeMounts.find((m: Doc) => m.name === tlsVolume.name).mountPath;
    for (const f of ['--tlscacert', '--tlscert', '--tlskey']) expect(path.dirname(flag(c.args, f)[0]!)).toBe(mount);
    expect(c.args).not.toContain('--insecure');
  });

  it('probes the server over its unix socket, on a volume the container mounts', () => {
    const c = sts.spec.template.spec.containers[0];
    const sock = flag(c.args, '--addr').find((a) => a.startsWith('unix://'))!;
    for (const probe of [c.readinessProbe, c.livenessProbe]) expect(probe.exec.command).toEqual(['mbuild', '--host', sock, 'info']);
    const dir = path.dirname(sock.slice('unix://'.length));
    expect(c.volumeMounts.map((m: Doc) => m.mountPath)).toContain(dir);
    // long enough for SIGTERM's drain
    expect(sts.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(600);
  });

  it('has a Job variant that runs the daemonless CLI', () => {
    const job = render('examples/kubernetes/job').find((d) => d.kind === 'Job')!;
    const c = job.spec.template.spec.containers[0];
    expect(c.args).toContain('build');
    expect(c.args).not.toContain('serve');
    expect(c.args.some((a: string) => a.startsWith('--host'))).toBe(false);
    const ws = c.args[c.args.length - 1];
    expect(job.spec.template.spec.initContainers[0].volumeMounts[0].mountPath).toBe(ws);
  });
});
