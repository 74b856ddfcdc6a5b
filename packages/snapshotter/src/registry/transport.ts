import type http from 'node:http';
import type https from 'node:https';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { ContentTooLargeError, RegistryAuthError, RegistryProtocolError, RegistryResponseError, RegistryUnavailableError } from '../errors.js';
import { nodeHttp, nodeHttps } from '../util/lazy-node.js';
import { tlsTrustOptions } from '../util/tls-trust.js';
import type { Credentials, DockerCredentials } from './credentials.js';

/** Caps on bodies read into memory (containers/image iolimits). */
export const MAX_TOKEN_BODY = 1024 * 1024;
export const MAX_ERROR_BODY = 1024 * 1024;
const MAX_REDIRECTS = 10;
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

/** Where a registry lives: `docker.io` → `https://registry-1.docker.io`. */
export interface Endpoint {
  domain: string;
  /** `https://host[:port]` or `http://host[:port]` */
  base: string;
  insecure: boolean;
}

/** True for `localhost`, 127.0.0.0/8 and `::1` (with or without a port). */
export function isLoopback(host: string): boolean {
  const h = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

export function endpointFor(domain: string, insecureRegistries: readonly string[]): Endpoint {
  if (domain === 'docker.io') return { domain, base: 'https://registry-1.docker.io', insecure: false };
  const insecure = isLoopback(domain) || insecureRegistries.some((r) => r.toLowerCase() === domain.toLowerCase());
  return { domain, base: `${insecure ? 'http' : 'https'}://${domain}`, insecure };
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `WWW-Authenticate` (RFC 7235 auth-params with quoted strings); throws on malformed input. */
export function parseChallenges(header: string, registry: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const token = (): string => {
    const m = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(s.slice(i));
    if (m === null) return '';
    i += m[0].length;
    return m[0];
  };
  while (i < s.length) {
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    const scheme = token();
    if (scheme === '') throw new RegistryAuthError(registry, `malformed WWW-Authenticate header at offset ${i}: ${JSON.stringify(header.slice(0, 200))}`);
    const ch: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(ch);
    for (;;) {
      skipWs();
      const save = i;
      const key = token();
      skipWs();
      if (key === '' || s[i] !== '=') {
        i = save; // next scheme (or end)
        break;
      }
      i++;
      skipWs();
      let value = '';
      if (s[i] === '"') {
        i++;
        let closed = false;
        while (i < s.length) {
          const c = s[i]!;
          if (c === '\\' && i + 1 < s.length) {
            value += s[i + 1];
            i += 2;
          } else if (c === '"') {
            i++;
            closed = true;
            break;
          } else {
            value += c;
            i++;
          }
        }
        if (!closed) throw new RegistryAuthError(registry, `malformed WWW-Authenticate header: unbalanced quote in ${JSON.stringify(header.slice(0, 200))}`);
      } else {
        value = token();
      }
      ch.params[key.toLowerCase()] = value;
      skipWs();
      if (s[i] === ',') i++;
      else if (i < s.length) throw new RegistryAuthError(registry, `malformed WWW-Authenticate header at offset ${i}: ${JSON.stringify(header.slice(0, 200))}`);
    }
  }
  return out;
}

/** Read access to response headers (names are case-insensitive; repeated headers joined by ", "). */
export interface ResponseHeaders {
  get(name: string): string | null;
}

/**
 * Node's parsed headers behind `get`. (The global `Headers` would do, but its first use
 * loads undici: ~0.1 s of CPU at startup, measured, more than a small image's pull.)
 */
class NodeHeaders implements ResponseHeaders {
  readonly #h: http.IncomingHttpHeaders;
  constructor(h: http.IncomingHttpHeaders) {
    this.#h = h;
  }
  get(name: string): string | null {
    const v = this.#h[name.toLowerCase()];
    if (v === undefined) return null;
    return Array.isArray(v) ? v.join(', ') : v;
  }
}

/** A registry response: status, headers and the body as a Node stream (empty for HEAD). */
export interface HttpResponse {
  status: number;
  headers: ResponseHeaders;
  body: Readable;
}

/** Reads a body into memory, refusing (before and while reading) anything above `limit`. */
export async function readCapped(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
  const declared = res.headers.get('content-length');
  if (declared !== null && Number(declared) > limit) {
    res.body.destroy();
    throw new ContentTooLargeError(what, limit, Number(declared));
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).byteLength;
    if (size > limit) {
      res.body.destroy();
      throw new ContentTooLargeError(what, limit, size);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}

/** Drops a body we do not need: small ones are drained (keeping the connection), others cut. */
export async function discard(res: HttpResponse): Promise<void> {
  const declared = Number(res.headers.get('content-length') ?? 'NaN');
  if (res.body.readableEnded || res.body.destroyed) return;
  if (Number.isFinite(declared) && declared <= 64 * 1024) {
    res.body.on('error', () => undefined);
    res.body.resume();
  } else {
    res.body.destroy();
  }
}

/** The error for an unexpected status, with the distribution-spec error code from a (capped) body. */
export async function responseError(res: HttpResponse, method: string, url: string, expected: string): Promise<RegistryResponseError> {
  let code: string | undefined;
  let detail = '';
  try {
    const body = method === 'HEAD' ? Buffer.alloc(0) : await readCapped(res, MAX_ERROR_BODY, 'registry error body');
    const text = body.toString('utf8');
    detail = text.trim();
    const v = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = Array.isArray(v.errors) ? v.errors[0] : undefined;
    if (first !== undefined && typeof first.code === 'string') {
      code = first.code;
      detail = typeof first.message === 'string' ? first.message : '';
    }
  } catch {
    // Not JSON, or too big: keep the status alone (plus any text we have).
    await discard(res);
  }
  return new RegistryResponseError(method, url, res.status, expected, code, detail);
}

/** A request body that can be produced again (for auth retries, redirects and transient failures). */
export type BodyFactory = () => Uint8Array | AsyncIterable<Uint8Array>;

/** One registry request. */
export interface RegistryRequest {
  endpoint: Endpoint;
  /** Token scopes this request needs, e.g. `repository:library/busybox:pull`. */
  scopes: readonly string[];
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  url: string;
  headers?: Record<string, string>;
  body?: BodyFactory;
  /** Retry transient failures (default true). */
  retry?: boolean;
  /** Send this Authorization as is and do not answer 401 challenges (token endpoint requests). */
  noChallenge?: boolean;
  auth?: string;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

function isAbort(err: unknown): boolean {
  return err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError');
}

/** True for errors of the connection (reset, refused, closed early), which are worth a retry. */
export function isTransient(err: unknown): boolean {
  if (isAbort(err)) return false;
  if (err instanceof TypeError) return true; // undici: "fetch failed" / "terminated", cause has the errno
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^(ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|UND_ERR_.*)$/.test(code);
}

export interface TransportOptions {
  credentials: DockerCredentials;
  insecureRegistries: readonly string[];
  retries: number;
  retryDelayMs: number;
  userAgent: string;
  signal: AbortSignal | undefined;
}

/**
 * HTTP to registries over Node's fetch: token (Bearer) and Basic auth learned from
 * 401 challenges, tokens cached per (registry, scopes) until they expire, redirects
 * followed by hand (at most 10, never https → http, Authorization sent only to the
 * endpoint's origin and dropped once a hop leaves it), transient failures retried with exponential backoff and `Retry-After`.
 */
export class RegistryTransport {
  readonly #opts: TransportOptions;
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, CachedToken>();
  readonly #pendingTokens = new Map<string, Promise<CachedToken>>();

  constructor(opts: TransportOptions) {
    this.#opts = opts;
  }

  get retries(): number {
    return this.#opts.retries;
  }

  /** Waits before retry `attempt` (0-based); honours Retry-After seconds when given. */
  async backoff(attempt: number, retryAfter?: string | null): Promise<void> {
    let ms = this.#opts.retryDelayMs * 2 ** attempt;
    const ra = retryAfter === null || retryAfter === undefined ? NaN : Number(retryAfter);
    if (Number.isFinite(ra) && ra >= 0) ms = Math.min(ra * 1000, 60_000);
    ms = Math.min(ms, 30_000) * (0.75 + Math.random() * 0.5);
    await sleep(ms, undefined, this.#opts.signal === undefined ? {} : { signal: this.#opts.signal });
  }

  /**
   * Sends a request with auth and redirects, retrying transient failures (when
   * `req.retry` is not false). Returns the final response whatever its status,
   * except a 401 that persists after one re-authentication, which throws
   * {@link RegistryAuthError}.
   */
  async request(req: RegistryRequest): Promise<HttpResponse> {
    const retries = req.retry === false ? 0 : this.#opts.retries;
    let lastErr: unknown;
    for (let attempt = 0; ; attempt++) {
      this.#opts.signal?.throwIfAborted();
      let res: HttpResponse;
      try {
        res = await this.#authorized(req);
      } catch (err) {
        if (!isTransient(err)) throw err;
        lastErr = err;
        if (attempt >= retries) throw new RegistryUnavailableError(req.url, attempt + 1, { cause: lastErr });
        await this.backoff(attempt);
        continue;
      }
      if (RETRY_STATUSES.has(res.status) && attempt < retries) {
        const ra = res.headers.get('retry-after');
        await discard(res);
        await this.backoff(attempt, ra);
        continue;
      }
      return res;
    }
  }

  async #authorized(req: RegistryRequest): Promise<HttpResponse> {
    const { endpoint } = req;
    if (req.noChallenge === true) return this.#follow(req, req.auth);
    let auth = await this.#authHeader(endpoint, req.scopes);
    let res = await this.#follow(req, auth);
    if (res.status !== 401) return res;
    const header = res.headers.get('www-authenticate');
    await discard(res);
    if (header === null) throw new RegistryAuthError(endpoint.domain, `expected a WWW-Authenticate challenge with http 401 from ${req.method} ${req.url}, found none`);
    const challenges = parseChallenges(header, endpoint.domain);
    const ch = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
    if (ch === undefined) throw new RegistryAuthError(endpoint.domain, `expected a Bearer or Basic challenge, found ${JSON.stringify(header.slice(0, 200))}`);
    this.#challenges.set(endpoint.domain, ch);
    this.#tokens.delete(this.#tokenKey(endpoint, req.scopes));
    auth = await this.#authHeader(endpoint, req.scopes);
    if (auth === undefined) {
      const creds = await this.#opts.credentials.get(endpoint.domain);
      throw new RegistryAuthError(endpoint.domain, creds === undefined ? `access denied to ${req.url} and no credentials configured for ${endpoint.domain}` : `credentials for ${endpoint.domain} were rejected`);
    }
    res = await this.#follow(req, auth);
    if (res.status === 401) {
      await discard(res);
      throw new RegistryAuthError(endpoint.domain, `expected the new ${ch.scheme} credentials to be accepted by ${req.method} ${req.url}, found http 401 again`);
    }
    return res;
  }

  #tokenKey(endpoint: Endpoint, scopes: readonly string[]): string {
    return `${endpoint.domain} ${[...scopes].sort().join(' ')}`;
  }

  async #authHeader(endpoint: Endpoint, scopes: readonly string[]): Promise<string | undefined> {
    const ch = this.#challenges.get(endpoint.domain);
    if (ch === undefined) return undefined;
    if (ch.scheme === 'basic') {
      const creds = await this.#opts.credentials.get(endpoint.domain);
      if (creds?.username === undefined) return undefined;
      if (!endpoint.base.startsWith('https:') && !endpoint.insecure) throw new RegistryAuthError(endpoint.domain, 'refusing to send basic credentials over plain http');
      return `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
    }
    const key = this.#tokenKey(endpoint, scopes);
    const cached = this.#tokens.get(key);
    if (cached !== undefined && cached.expiresAt > Date.now()) return `Bearer ${cached.token}`;
    let pending = this.#pendingTokens.get(key);
    if (pending === undefined) {
      pending = this.#fetchToken(endpoint, ch, scopes);
      this.#pendingTokens.set(key, pending);
      pending.then(
        (t) => {
          this.#tokens.set(key, t);
          this.#pendingTokens.delete(key);
        },
        () => this.#pendingTokens.delete(key),
      );
    }
    return `Bearer ${(await pending).token}`;
  }

  async #fetchToken(endpoint: Endpoint, ch: Challenge, scopes: readonly string[]): Promise<CachedToken> {
    const realm = ch.params.realm;
    if (realm === undefined || realm === '') throw new RegistryAuthError(endpoint.domain, 'expected a realm in the Bearer challenge, found none');
    let url: URL;
    try {
      url = new URL(realm);
    } catch (err) {
      throw new RegistryAuthError(endpoint.domain, `expected the Bearer realm to be an absolute URL, found ${JSON.stringify(realm.slice(0, 200))}`, { cause: err });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new RegistryAuthError(endpoint.domain, `expected an http(s) realm, found ${url.protocol}`);
    const realmSecure = url.protocol === 'https:' || isLoopback(url.host) || this.#opts.insecureRegistries.includes(url.host);
    const creds: Credentials | undefined = await this.#opts.credentials.get(endpoint.domain);
    if (creds !== undefined && !realmSecure) throw new RegistryAuthError(endpoint.domain, `refusing to send credentials to the plain-http token realm ${url.origin} (mark it insecure to allow)`);
    const service = ch.params.service;
    const headers: Record<string, string> = { 'user-agent': this.#opts.userAgent, accept: 'application/json' };
    let res: HttpResponse;
    if (creds?.identityToken !== undefined) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: creds.identityToken, client_id: 'tsbuild' });
      if (service !== undefined) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      res = await this.#tokenRequest(url.toString(), { ...headers, 'content-type': 'application/x-www-form-urlencoded' }, 'POST', form.toString());
    } else {
      if (service !== undefined) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (creds?.username !== undefined) headers.authorization = `Basic ${Buffer.from(`${creds.username}:${creds.password ?? ''}`).toString('base64')}`;
      res = await this.#tokenRequest(url.toString(), headers, 'GET', undefined);
    }
    if (res.status === 401 || res.status === 403) {
      await discard(res);
      throw new RegistryAuthError(endpoint.domain, `token server ${url.origin} refused ${creds === undefined ? 'anonymous access' : 'the credentials'} (http ${res.status})`);
    }
    if (res.status !== 200) throw await responseError(res, 'GET', url.origin + url.pathname, 'http 200 from the token server');
    const body = await readCapped(res, MAX_TOKEN_BODY, 'token response');
    let v: unknown;
    try {
      v = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new RegistryAuthError(endpoint.domain, 'expected a JSON token response', { cause: err });
    }
    const { token, access_token: accessToken, expires_in: expiresIn } = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
    const t = typeof token === 'string' && token !== '' ? token : typeof accessToken === 'string' && accessToken !== '' ? accessToken : undefined;
    if (t === undefined) throw new RegistryAuthError(endpoint.domain, 'expected "token" or "access_token" in the token response, found neither');
    // The spec's minimum lifetime is 60 s; renew 10 s early.
    const seconds = typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn : 60;
    return { token: t, expiresAt: Date.now() + Math.max(seconds - 10, 5) * 1000 };
  }

  async #tokenRequest(url: string, headers: Record<string, string>, method: 'GET' | 'POST', body: string | undefined): Promise<HttpResponse> {
    const { authorization, ...rest } = headers;
    const bytes = body === undefined ? undefined : Buffer.from(body);
    return this.request({
      endpoint: { domain: new URL(url).host, base: new URL(url).origin, insecure: false },
      scopes: [],
      method,
      url,
      headers: bytes === undefined ? rest : { ...rest, 'content-length': String(bytes.byteLength) },
      ...(bytes === undefined ? {} : { body: () => bytes }),
      noChallenge: true,
      ...(authorization === undefined ? {} : { auth: authorization }),
    });
  }

  /** One attempt: send, following redirects by hand. */
  async #follow(req: RegistryRequest, auth: string | undefined): Promise<HttpResponse> {
    let url = req.url;
    let method: string = req.method;
    let withBody = req.body !== undefined;
    // Credentials belong to the endpoint's origin: a request URL elsewhere (an upload
    // Location on another host) gets none, and, like the Fetch standard, once a hop
    // leaves that origin they stay behind for the rest of the chain.
    const origin0 = new URL(req.endpoint.base).origin;
    let sendAuth = auth !== undefined;
    for (let hop = 0; ; hop++) {
      if (new URL(url).origin !== origin0) sendAuth = false;
      const headers: Record<string, string> = { 'user-agent': this.#opts.userAgent, 'accept-encoding': 'identity', ...req.headers };
      if (sendAuth && auth !== undefined) headers.authorization = auth;
      if (!withBody) delete headers['content-length'];
      const body = withBody && req.body !== undefined ? req.body() : undefined;
      const res = await send(url, method, headers, body, this.#opts.signal);
      if (![301, 302, 303, 307, 308].includes(res.status)) return res;
      const location = res.headers.get('location');
      await discard(res);
      if (location === null) throw new RegistryProtocolError(url, `expected a Location header with http ${res.status}, found none`);
      if (hop + 1 >= MAX_REDIRECTS) throw new RegistryProtocolError(url, `expected at most ${MAX_REDIRECTS} redirects, found more`);
      const next = new URL(location, url);
      if (new URL(url).protocol === 'https:' && next.protocol !== 'https:') throw new RegistryProtocolError(url, `refusing a redirect from https to ${next.protocol} (${next.origin})`);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new RegistryProtocolError(url, `expected an http(s) redirect, found ${next.protocol}`);
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = 'GET';
        withBody = false;
      }
      url = next.toString();
    }
  }
}

const IDLE_TIMEOUT_MS = 120_000;
/**
 * node:http(s) and their keep-alive agents, loaded at the first request: loading https
 * (tls, net, the http parser) costs 10–25 ms of every process start, and most commands
 * never speak to a registry.
 */
let net: { http: typeof http; https: typeof https; agents: { http: http.Agent; https: https.Agent } } | undefined;
function httpModules(): NonNullable<typeof net> {
  if (net === undefined) {
    const h = nodeHttp();
    const s = nodeHttps();
    net = { http: h, https: s, agents: { http: new h.Agent({ keepAlive: true }), https: new s.Agent({ keepAlive: true, ...tlsTrustOptions() }) } };
  }
  return net;
}

/**
 * One HTTP exchange over node:http(s). Node 20's fetch keeps every chunk of a streamed
 * request body alive until the response arrives (measured: a 50 MiB PUT held ~100 MiB
 * of ArrayBuffers) and reads response bodies at about half the speed of node:http
 * (measured on loopback), so blobs go through node:http both ways, with backpressure.
 * A socket idle for 2 minutes fails with ETIMEDOUT (retried like a reset).
 */
function send(url: string, method: string, headers: Record<string, string>, body: Uint8Array | AsyncIterable<Uint8Array> | undefined, signal: AbortSignal | undefined): Promise<HttpResponse> {
  return new Promise<HttpResponse>((resolve, reject) => {
    const u = new URL(url);
    const secure = u.protocol === 'https:';
    const m = httpModules();
    const req = (secure ? m.https : m.http).request(u, { method, headers, agent: secure ? m.agents.https : m.agents.http, ...(signal === undefined ? {} : { signal }) }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: new NodeHeaders(res.headers), body: res });
    });
    req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(Object.assign(new Error(`no data from ${u.origin} for ${IDLE_TIMEOUT_MS} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    if (body === undefined) req.end();
    else if (body instanceof Uint8Array) req.end(body);
    // A server may answer (e.g. 401) before reading the body and close: the response wins.
    else pipeline(Readable.from(body, { objectMode: false }), req).catch(reject);
  });
}
