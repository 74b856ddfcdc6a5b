import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CredentialHelperError, RegistryAuthError } from '../errors.js';
import { isErrno } from '../util/process.js';

/** What a registry login resolved to: a user name and password, or an OAuth2 identity (refresh) token. */
export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

/** The key Docker uses for Docker Hub in config.json and for credential helpers. */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);
const MAX_CONFIG_SIZE = 4 * 1024 * 1024;
const MAX_HELPER_OUTPUT = 1024 * 1024;
const HELPER_TIMEOUT_MS = 30_000;

/** `https://host:port/v1/` → `host:port` (lower case); Docker Hub aliases → `docker.io`. */
function normalizeServer(key: string): string {
  let s = key.trim().toLowerCase();
  s = s.replace(/^[a-z]+:\/\//, '');
  const slash = s.indexOf('/');
  if (slash >= 0) s = s.slice(0, slash);
  return HUB_ALIASES.has(s) ? 'docker.io' : s;
}

/**
 * Reads registry credentials the way the Docker CLI does: `credHelpers[host]`, then
 * `credsStore`, then `auths` (base64 `auth` or `username`/`password`, and
 * `identitytoken`), from `<configDir>/config.json` with configDir = option,
 * `$DOCKER_CONFIG` or `~/.docker`. A missing file means anonymous access.
 */
export class DockerCredentials {
  readonly configDir: string;
  #config: Promise<DockerConfigFile> | undefined;
  readonly #cache = new Map<string, Promise<Credentials | undefined>>();

  constructor(configDir?: string) {
    this.configDir = configDir ?? process.env.DOCKER_CONFIG ?? join(homedir(), '.docker');
  }

  #load(): Promise<DockerConfigFile> {
    this.#config ??= (async () => {
      const path = join(this.configDir, 'config.json');
      let text: string;
      try {
        const buf = await readFile(path);
        if (buf.byteLength > MAX_CONFIG_SIZE) throw new RegistryAuthError(path, `config file too large: expected at most ${MAX_CONFIG_SIZE} bytes, found ${buf.byteLength}`);
        text = buf.toString('utf8');
      } catch (err) {
        if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return {};
        throw err;
      }
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch (err) {
        throw new RegistryAuthError(path, 'expected config.json to be valid JSON', { cause: err });
      }
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RegistryAuthError(path, 'expected config.json to hold a JSON object');
      return v as DockerConfigFile;
    })();
    return this.#config;
  }

  /** Credentials for a registry host (`docker.io`, `localhost:5000`, ...); undefined when none. */
  get(registry: string): Promise<Credentials | undefined> {
    const host = normalizeServer(registry);
    let p = this.#cache.get(host);
    if (p === undefined) {
      p = this.#lookup(host);
      this.#cache.set(host, p);
      p.catch(() => this.#cache.delete(host));
    }
    return p;
  }

  async #lookup(host: string): Promise<Credentials | undefined> {
    const cfg = await this.#load();
    const helpers = typeof cfg.credHelpers === 'object' && cfg.credHelpers !== null ? cfg.credHelpers : {};
    const helper = Object.entries(helpers).find(([k]) => normalizeServer(k) === host)?.[1] ?? cfg.credsStore;
    if (typeof helper === 'string' && helper !== '') {
      const fromHelper = await runCredentialHelper(helper, host === 'docker.io' ? DOCKER_HUB_SERVER : host);
      if (fromHelper !== undefined) return fromHelper;
    }
    const auths = typeof cfg.auths === 'object' && cfg.auths !== null ? cfg.auths : {};
    const entry = Object.entries(auths).find(([k]) => normalizeServer(k) === host)?.[1];
    if (entry === undefined || typeof entry !== 'object' || entry === null) return undefined;
    const out: Credentials = {};
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) throw new RegistryAuthError(host, 'expected auths[].auth to be base64 of "user:password", found no ":"');
      out.username = decoded.slice(0, colon);
      out.password = decoded.slice(colon + 1);
    } else {
      if (typeof entry.username === 'string') out.username = entry.username;
      if (typeof entry.password === 'string') out.password = entry.password;
    }
    if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') out.identityToken = entry.identitytoken;
    return out.username === undefined && out.identityToken === undefined ? undefined : out;
  }
}

/**
 * Runs `docker-credential-<helper> get` with `server` on stdin (the credential-helpers
 * protocol). "credentials not found" means undefined; a user name of `<token>` means
 * the secret is an identity token.
 */
export async function runCredentialHelper(helper: string, server: string): Promise<Credentials | undefined> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(helper)) throw new CredentialHelperError(helper, `expected a helper name of [A-Za-z0-9._-], found ${JSON.stringify(helper)}`);
  const program = `docker-credential-${helper}`;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: HELPER_TIMEOUT_MS });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[]) => (c: Buffer) => {
      size += c.byteLength;
      if (size > MAX_HELPER_OUTPUT) child.kill('SIGKILL');
      else into.push(c);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.on('error', (e) => reject(isErrno(e, 'ENOENT') ? new CredentialHelperError(helper, `expected ${program} on PATH, found none`, { cause: e }) : e));
    child.on('close', (c) => resolve({ code: c, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
    child.stdin.on('error', () => undefined); // a helper that exits without reading stdin
    child.stdin.end(server);
  });
  if (code !== 0) {
    if (/credentials not found/i.test(stdout) || /credentials not found/i.test(stderr)) return undefined;
    throw new CredentialHelperError(helper, `expected exit code 0, found ${code ?? 'a signal'}: ${(stderr || stdout).trim().slice(0, 300)}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(stdout);
  } catch (err) {
    throw new CredentialHelperError(helper, 'expected JSON {"Username","Secret"} on stdout', { cause: err });
  }
  const { Username, Secret } = (typeof v === 'object' && v !== null ? v : {}) as { Username?: unknown; Secret?: unknown };
  if (typeof Username !== 'string' || typeof Secret !== 'string') throw new CredentialHelperError(helper, 'expected string "Username" and "Secret" fields');
  if (Username === '<token>') return { identityToken: Secret };
  return { username: Username, password: Secret };
}
