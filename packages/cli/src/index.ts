/** @tsbuild/cli: the `tsbuild` command, a thin layer over the parser, solver and snapshotter. */
export { main, createProgram, EXIT_OK, EXIT_FAILURE, EXIT_USAGE } from './main.js';
