/**
 * Node modules that most commands never use, loaded at first use: every static import
 * of one is compiled at every start (node:zlib and node:worker_threads ≈ 2.5 ms each),
 * builds that store layers uncompressed need neither, and the CLI bundle initialises
 * all of its modules up front.
 */
import { createRequire } from 'node:module';
import type http from 'node:http';
import type https from 'node:https';
import type zlibModule from 'node:zlib';
import type workerThreads from 'node:worker_threads';

const req = createRequire(import.meta.url);
let zlib: typeof zlibModule | undefined;
let threads: typeof workerThreads | undefined;
let httpMod: typeof http | undefined;
let httpsMod: typeof https | undefined;

/** node:zlib (called per chunk on the gzip path: memoised, not a require per call). */
export const nodeZlib = (): typeof zlibModule => (zlib ??= req('node:zlib') as typeof zlibModule);
/** node:http and node:https (with tls and the http parser: 10–25 ms of a start) for commands that connect. */
export const nodeHttp = (): typeof http => (httpMod ??= req('node:http') as typeof http);
export const nodeHttps = (): typeof https => (httpsMod ??= req('node:https') as typeof https);
export const nodeWorkerThreads = (): typeof workerThreads => (threads ??= req('node:worker_threads') as typeof workerThreads);
