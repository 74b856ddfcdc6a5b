import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type tls from 'node:tls';

/**
 * The launcher (packages/cli/bin/tsbuild.js) hands NODE_EXTRA_CA_CERTS over under this
 * name, so that Node does not read the file at every start (~50 ms for a whole CA bundle);
 * the connections tsbuild opens add the certificates themselves.
 */
export const DEFERRED_EXTRA_CA_ENV = 'TSBUILD_NODE_EXTRA_CA_CERTS';

let trust: { ca?: string[] } | undefined;

/**
 * TLS options for an outgoing connection: `{}` (Node's defaults, which already hold
 * NODE_EXTRA_CA_CERTS when Node loaded it), or Node's bundled roots plus the deferred
 * file's certificates, as NODE_EXTRA_CA_CERTS would have made them. An unreadable file
 * is a warning and is ignored, as Node does with NODE_EXTRA_CA_CERTS.
 */
export function tlsTrustOptions(): { ca?: string[] } {
  if (trust === undefined) {
    trust = {};
    const file = process.env[DEFERRED_EXTRA_CA_ENV];
    if (file !== undefined && file !== '') {
      try {
        const { rootCertificates } = createRequire(import.meta.url)('node:tls') as typeof tls;
        trust = { ca: [...rootCertificates, readFileSync(file, 'utf8')] };
      } catch (err) {
        process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
      }
    }
  }
  return trust;
}
