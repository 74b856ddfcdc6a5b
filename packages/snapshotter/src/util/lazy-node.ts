/**
 * Node modules that most commands never use, loaded at first use: every static import
 * of one is compiled at every start (node:zlib and node:worker_threads ≈ 2.5 ms each),
 * builds that store layers uncompressed need neither, and the CLI bundle initialises
 * all of its modules up front.
 */
import { createRequire } from 'node:module';
import type zlibModule from 'node:zlib';
import type workerThreads from 'node:worker_threads';

const req = createRequire(import.meta.url);

export const nodeZlib = (): typeof zlibModule => req('node:zlib') as typeof zlibModule;
export const nodeWorkerThreads = (): typeof workerThreads => req('node:worker_threads') as typeof workerThreads;
