/** A throw-away CA, server and client certificates for TLS tests, made with openssl. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCertificates {
  dir: string;
  ca: string;
  cert: string;
  key: string;
}

const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });

/** Makes <dir>/<name>.key and <name>.crt for subject CN=`commonName`, signed by the CA in `dir`. */
function issue(
  dir: string,
  name: string,
  commonName: string,
  extFile?: string,
): { cert: string; key: string } {
  const p = (f: string) => join(dir, f);
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    `/CN=${commonName}`,
    '-keyout',
    p(`${name}.key`),
    '-out',
    p(`${name}.csr`),
  );
  openssl(
    'x509',
    '-req',
    '-in',
    p(`${name}.csr`),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    ...(extFile ? ['-extfile', extFile] : []),
    '-out',
    p(`${name}.crt`),
  );
  return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
}

/** A CA and a server certificate valid for 127.0.0.1 and localhost. */
export function makeCertificates(commonName = '127.0.0.1'): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-tls-'));
  const ca = join(dir, 'ca.crt');
  openssl(
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
    join(dir, 'ca.key'),
    '-out',
    ca,
  );
  const ext = join(dir, 'ext.cnf');
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  return { dir, ca, ...issue(dir, 'server', commonName, ext) };
}

/** A client certificate with subject CN=`commonName`, signed by the same test CA. */
export function makeClientCertificate(
  certs: TestCertificates,
  commonName: string,
): { cert: string; key: string } {
  return issue(certs.dir, `client-${commonName}`, commonName);
}
