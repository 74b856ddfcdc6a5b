import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError, reportError } from './errors.js';

/** Exit codes: 0 success, 1 build or command failure, 2 usage error. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(fileURLToPath(new URL('../package.json', import.meta.url)), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return 'unknown';
  }
}

/** Builds the command tree. Heavy packages are imported only by the command that needs them. */
export function createProgram(io: { stdout: (s: string) => void; stderr: (s: string) => void }): Command {
  const program = new Command('tsbuild')
    .description('Build OCI container images from Dockerfiles, with a cache that explains itself')
    .version(version())
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showSuggestionAfterError(true);

  program
    .command('build', { isDefault: true })
    .description('build an image from a Dockerfile and a context')
    .argument('[context]', "build context: a directory, '-' (a tar, or a Dockerfile, on stdin) or a git URL (URL#ref:subdir)", '.')
    .option('-t, --tag <name>', 'name and optionally a tag (name:tag); repeatable', collect, [])
    .option('-f, --file <path>', "path of the Dockerfile (default: CONTEXT/Dockerfile); '-' reads it from stdin")
    .option('--build-arg <key=value>', 'set a build-time variable; repeatable', collect, [])
    .option('--target <stage>', 'build this stage')
    .option('--platform <platform>', 'target platform (only the host platform is supported)')
    .option('--no-cache', 'do not use the cache when building')
    .option('--no-cache-filter <stage>', 'do not use the cache for this stage; repeatable', collect, [])
    .option('--label <key=value>', 'set a label on the image; repeatable', collect, [])
    .addOption(new Option('--progress <mode>', 'progress output').choices(['auto', 'tty', 'plain', 'json', 'quiet']).default('auto'))
    .option('-o, --output <spec>', 'output: type=image|registry|oci|docker|tar|local[,dest=PATH][,name=NAME][,push=true][,compression=gzip|zstd|uncompressed][,compression-level=N]; repeatable', collect, [])
    .option('--secret <spec>', 'secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR]; repeatable', collect, [])
    .option('--iidfile <file>', 'write the image ID (config digest) to this file')
    .option('--metadata-file <file>', 'write build result metadata (JSON) to this file')
    .option('-q, --quiet', 'suppress the build output and print the image ID on success')
    .addOption(new Option('--network <mode>', 'networking for RUN steps').choices(['default', 'none', 'host']))
    .option('--check', 'run the Dockerfile lint checks and exit without building')
    .addOption(new Option('--isolation <mode>', 'sandbox for RUN steps').choices(['auto', 'runc', 'unshare']).default('auto'))
    .option('--jobs <n>', 'how many RUN steps run at once (default: 4 × cores, at least 16)')
    .option('--ssh <spec>', 'SSH agent socket for RUN --mount=type=ssh: default|ID[=SOCKET]; repeatable', collect, [])
    .option('--build-context <name=value>', 'named context: name=DIR, name=docker-image://IMAGE or name=oci-layout://DIR[:TAG]; repeatable', collect, [])
    .option('--explain', 'after the build, list every step with CACHED or the reason it missed (as `tsbuild why`)')
    .option('--pull', 'resolve every image named by FROM, COPY --from or --mount from= at its registry again')
    .option('--push', 'push the result to the registry named by each tag (shorthand for --output type=registry)')
    .option('--cache-to <spec>', 'export the build cache: type=registry,ref=REF[,mode=min|max] or type=local,dest=DIR[,mode=min|max]; repeatable', collect, [])
    .option('--cache-from <spec>', 'import a build cache: type=registry,ref=REF (or just REF) or type=local,src=DIR; repeatable', collect, [])
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry (localhost always is; also $TSBUILD_INSECURE_REGISTRIES); repeatable', collect, [])
    .action(async (context: string, opts: Record<string, unknown>, cmd: Command) => {
      const { buildCommand } = await import('./commands/build.js');
      process.exitCode = await buildCommand(context, { ...opts, progressExplicit: cmd.getOptionValueSource('progress') === 'cli' } as never, io);
    });

  program
    .command('pull')
    .description('pull an image from its registry into the local store (always resolves the tag again)')
    .argument('<name>', 'image reference: [registry/]repo[:tag][@digest]')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry; repeatable', collect, [])
    .option('-q, --quiet', 'print only the digest')
    .action(async (name: string, opts: { insecureRegistry: string[]; quiet?: boolean }) => {
      const { pullCommand } = await import('./commands/registry.js');
      await pullCommand(name, opts, io);
    });

  program
    .command('push')
    .description('push a local image to the registry its name (or DEST) says; prints the pushed digest')
    .argument('<name>', 'local image name')
    .argument('[dest]', 'push under this reference instead of NAME')
    .option('--insecure-registry <host:port>', 'talk plain HTTP to this registry; repeatable', collect, [])
    .option('--metadata-file <file>', 'write the pushed digest (containerimage.digest) to this JSON file')
    .option('-q, --quiet', 'print only the digest')
    .action(async (name: string, dest: string | undefined, opts: { insecureRegistry: string[]; metadataFile?: string; quiet?: boolean }) => {
      const { pushCommand } = await import('./commands/registry.js');
      await pushCommand(name, dest, opts, io);
    });

  program
    .command('images')
    .description('list images in the local store')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { format: string }) => {
      const { imagesCommand } = await import('./commands/images.js');
      await imagesCommand(opts, io);
    });

  program
    .command('save')
    .description('write images to a docker-archive (or OCI archive) tar file')
    .argument('<name...>', 'images to save')
    .requiredOption('-o, --output <file>', 'write to this file')
    .addOption(new Option('--format <fmt>', 'archive format').choices(['docker', 'oci']).default('docker'))
    .action(async (names: string[], opts: { output: string; format: 'docker' | 'oci' }) => {
      const { saveCommand } = await import('./commands/images.js');
      await saveCommand(names, opts, io);
    });

  program
    .command('load')
    .description('import images from a docker-archive or OCI archive')
    .requiredOption('-i, --input <file>', 'read from this tar file')
    .action(async (opts: { input: string }) => {
      const { loadCommand } = await import('./commands/images.js');
      await loadCommand(opts, io);
    });

  program
    .command('import')
    .description('make a one-layer image from a root filesystem directory (like docker import)')
    .argument('<dir>', 'root filesystem directory')
    .argument('[name]', 'name to tag the image with')
    .option('-c, --change <instruction>', 'apply a Dockerfile instruction to the config (ENV, CMD, ENTRYPOINT, WORKDIR, USER, LABEL); repeatable', collect, [])
    .action(async (dir: string, name: string | undefined, opts: { change: string[] }) => {
      const { importCommand } = await import('./commands/import.js');
      await importCommand(dir, name, opts, io);
    });

  program
    .command('tag')
    .description('give an image another name')
    .argument('<source>')
    .argument('<target>')
    .action(async (source: string, target: string) => {
      const { tagCommand } = await import('./commands/images.js');
      await tagCommand(source, target, io);
    });

  program
    .command('rmi')
    .description('remove image names from the local store')
    .argument('<name...>')
    .action(async (names: string[]) => {
      const { rmiCommand } = await import('./commands/images.js');
      await rmiCommand(names, io);
    });

  program
    .command('inspect')
    .description('show an image: manifest, config and history with layer sizes')
    .argument('<name>')
    .action(async (name: string) => {
      const { inspectCommand } = await import('./commands/images.js');
      await inspectCommand(name, io);
    });

  program
    .command('parse')
    .description('print the syntax tree of a Dockerfile')
    .argument('[file]', "Dockerfile path, or '-' for stdin", 'Dockerfile')
    .addOption(new Option('--format <fmt>', 'dump: BuildKit’s AST dump; json: stable JSON with source ranges').choices(['dump', 'json']).default('dump'))
    .action(async (file: string, opts: { format: 'dump' | 'json' }) => {
      const { parseCommand } = await import('./commands/parse.js');
      await parseCommand(file, opts, io);
    });

  program
    .command('check')
    .description('lint a Dockerfile with the build checks')
    .argument('[file]', "Dockerfile path, or '-' for stdin", 'Dockerfile')
    .option('--build-arg <key=value>', 'set a build-time variable; repeatable', collect, [])
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (file: string, opts: { buildArg: string[]; format: 'text' | 'json' }) => {
      const { checkCommand } = await import('./commands/parse.js');
      process.exitCode = await checkCommand(file, opts, io);
    });

  program
    .command('why')
    .description('explain, step by step, why the last build of a Dockerfile hit or missed the cache')
    .argument('[dockerfile]', 'the Dockerfile (or context directory) of that build (default: the last build of any)')
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (dockerfile: string | undefined, opts: { format: 'text' | 'json' }) => {
      const { whyCommand } = await import('./commands/why.js');
      await whyCommand(dockerfile, opts, io);
    });

  const cache = program.command('cache').description('inspect and prune the build cache');
  cache
    .command('check')
    .description('verify the store: re-hash every blob, check image names, cache records, snapshots, SQLite and leftovers of crashed builds')
    .option('--repair', 'fix what can be fixed (drop broken records, names and snapshots, unmount and remove leftovers)')
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (opts: { repair?: boolean; format: 'text' | 'json' }) => {
      const { cacheCheckCommand } = await import('./commands/cache-check.js');
      process.exitCode = await cacheCheckCommand(opts, io);
    });
  cache
    .command('ls')
    .description('list cache records: id, instruction, size, created, last used, usage count, shared/private, reclaimable')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { format: 'table' | 'json' }) => {
      const { cacheLsCommand } = await import('./commands/cache.js');
      await cacheLsCommand(opts, io);
    });
  cache
    .command('du')
    .description('disk usage of the build cache: totals and the largest records')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .option('--top <n>', 'how many of the largest records to list', '10')
    .action(async (opts: { format: 'table' | 'json'; top: string }) => {
      const { cacheDuCommand } = await import('./commands/cache.js');
      await cacheDuCommand(opts, io);
    });
  cache
    .command('inspect')
    .description('show one record: key components, parent, layer digest, images that use it')
    .argument('<id>', 'record id or a unique prefix of it')
    .addOption(new Option('--format <fmt>', 'output format').choices(['text', 'json']).default('text'))
    .action(async (id: string, opts: { format: 'text' | 'json' }) => {
      const { cacheInspectCommand } = await import('./commands/cache.js');
      await cacheInspectCommand(id, { format: opts.format === 'json' ? 'json' : 'table' }, io);
    });
  cache
    .command('prune')
    .description('remove build cache records, then the blobs and snapshots nothing references; never what a running build holds')
    .option('-a, --all', 'also remove records whose layers images share, and unpacked image snapshots')
    .option('--filter <filter>', 'only records matching: until=DURATION (not used for that long, e.g. 24h); repeatable', collect, [])
    .option('--keep-storage <size>', 'keep this much cache (e.g. 10GB), removing the least recently used first')
    .option('--dry-run', 'show what would be removed and freed, remove nothing')
    .option('-f, --force', 'accepted for buildx compatibility (tsbuild never asks for confirmation)')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (opts: { all?: boolean; filter: string[]; keepStorage?: string; dryRun?: boolean; format: 'table' | 'json'; force?: boolean }) => {
      const { cachePruneCommand } = await import('./commands/cache.js');
      await cachePruneCommand(opts, io);
    });

  program
    .command('layers')
    .description('per layer: instruction, size, files added/changed/removed; the wasted bytes and efficiency score (like dive)')
    .argument('<name>', 'image name')
    .option('--files', 'list every file each layer adds, changes or removes')
    .option('--top <n>', 'how many wasted paths to list', '10')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (name: string, opts: { format: 'table' | 'json'; files?: boolean; top: string }) => {
      const { layersCommand } = await import('./commands/layers.js');
      await layersCommand(name, opts, io);
    });

  program
    .command('diff')
    .description('compare two images (their filesystems) or two layers (by digest): files with sizes and change kinds')
    .argument('<a>', 'image name or layer digest')
    .argument('<b>', 'image name or layer digest')
    .addOption(new Option('--format <fmt>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (a: string, b: string, opts: { format: 'table' | 'json' }) => {
      const { diffCommand } = await import('./commands/layers.js');
      await diffCommand(a, b, opts, io);
    });

  return program;
}

/** Runs the CLI; returns the process exit code. */
export async function main(argv: string[], io = { stdout: (s: string) => void process.stdout.write(s), stderr: (s: string) => void process.stderr.write(s) }): Promise<number> {
  const program = createProgram(io);
  process.exitCode = undefined;
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return EXIT_OK;
      return EXIT_USAGE;
    }
    if (err instanceof UsageError) {
      io.stderr(`error: ${err.message}\n`);
      return EXIT_USAGE;
    }
    return reportError(err, io);
  }
}
