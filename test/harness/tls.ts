/** A throw-away CA and server certificate for TLS tests, made with openssl. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

export function makeCertificates(commonName = '127.0.0.1'): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  const p = (f: string) => join(dir, f);
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  run(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=fleet-test-ca',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
  );
  run(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    p('server.key'),
    '-out',
    p('server.csr'),
  );
  const ext = p('ext.cnf');
  execFileSync('sh', ['-c', `printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ${ext}`]);
  run(
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    ext,
    '-out',
    p('server.crt'),
  );
  return { dir, ca: p('ca.crt'), cert: p('server.crt'), key: p('server.key') };
}

/** A client certificate with subject CN=`commonName`, signed by the same test CA. */
export function makeClientCertificate(
  certs: TestCertificates,
  commonName: string,
): { cert: string; key: string } {
  const p = (f: string) => join(certs.dir, f);
  const run = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const base = `client-${commonName}`;
  run(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    p(`${base}.key`),
    '-out',
    p(`${base}.csr`),
  );
  run(
    'x509',
    '-req',
    '-in',
    p(`${base}.csr`),
    '-CA',
    certs.ca,
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    p(`${base}.crt`),
  );
  return { cert: p(`${base}.crt`), key: p(`${base}.key`) };
}
