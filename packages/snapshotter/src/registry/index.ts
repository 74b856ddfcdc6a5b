/** OCI Distribution (registry) client: resolve, pull and push over node:http(s). */
export { RegistryClient, type ResolvedImage } from './client.js';
export type { RegistryOptions, TransferProgress } from './types.js';
export { DockerCredentials, runCredentialHelper, type Credentials } from './credentials.js';
export {
  RegistryResponseError,
  RegistryAuthError,
  RegistryProtocolError,
  RegistryUnavailableError,
  CredentialHelperError,
} from '../errors.js';
