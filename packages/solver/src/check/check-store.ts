/**
 * checkStore: the store's fsck (catalog H-VERIFY). Re-hashes every blob (a virtual blob
 * is regenerated from its snapshot and verified; one whose snapshot is gone is a missing
 * blob, reported as `blob-unbacked` and its images and records as broken), checks that
 * every image name and cache record points at blobs that exist with the recorded size,
 * that every snapshot has its directory and its parent, that SQLite passes its integrity
 * and foreign-key checks, and that no mount, container, ingest, lease or temp dir of a
 * dead builder is left. With `repair`, every problem that can be fixed is fixed by
 * dropping the broken thing (a cache record becomes a miss, a broken name is untagged,
 * a corrupt blob is deleted, a stale mount is unmounted); nothing a live build holds is
 * touched. Blobs nothing references are listed, not deleted: that is prune's job, and a
 * running build may not have indexed them yet.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { readImage, unmountAll, type Digest } from '@tsbuild/snapshotter';
import type { BuildStore } from '../store.js';
import { isAlive, ownerOf, recoverStore, storeMounts } from './recover.js';

/** The kinds of problems {@link checkStore} finds. */
export type StoreIssueKind =
  /** a blob whose bytes do not hash to its name */
  | 'blob-corrupt'
  /** a file under blobs/sha256 whose name is not a digest */
  | 'blob-stray'
  /** a virtual blob whose snapshot is gone: the blob is missing */
  | 'blob-unbacked'
  /** an image name whose manifest, config or a layer is missing or unreadable */
  | 'image-broken'
  /** a cache record whose layer blob is missing or has another size */
  | 'record-broken'
  /** file digests of a cache record that does not exist */
  | 'record-files-orphan'
  /** a snapshot whose directory or parent is missing (or is a child of such a snapshot) */
  | 'snapshot-broken'
  /** an active or view snapshot of a dead process */
  | 'snapshot-stale'
  /** a mount under the store left by a dead process */
  | 'mount-stale'
  /** a mount under the store that follows none of tsbuild's naming conventions */
  | 'mount-unknown'
  /** a temp, bundle or container directory of a dead process */
  | 'temp-stale'
  /** an ingest (half-written blob) of a dead process */
  | 'ingest-stale'
  /** a lease held by a dead process */
  | 'lease-stale'
  /** SQLite integrity_check or foreign_key_check failed */
  | 'db-integrity';

/** One problem found by {@link checkStore}. */
export interface StoreIssue {
  readonly kind: StoreIssueKind;
  /** what it is about: a digest, an image name, a cache key, a snapshot key or a path */
  readonly subject: string;
  readonly message: string;
  /** true when `repair` fixed it */
  repaired: boolean;
}

/** The result of {@link checkStore}. */
export interface StoreCheckReport {
  /** true when no problem is left (none found, or all repaired) */
  readonly ok: boolean;
  readonly checked: { blobs: number; bytes: number; images: number; records: number; snapshots: number };
  /** blobs no image and no cache record references (prune collects them) */
  readonly unreferencedBlobs: Digest[];
  readonly issues: StoreIssue[];
  /** what opening the store already cleaned up after crashed builders */
  readonly recovered: BuildStore['recovery'];
}

/** Options of {@link checkStore}. */
export interface CheckStoreOptions {
  /** fix what can be fixed (default false: only report) */
  repair?: boolean;
}

interface MetaRecord {
  key: string;
  kind: 'active' | 'view' | 'committed';
  parent?: string;
  id: string;
  owner?: number;
}

async function hashFile(path: string): Promise<{ digest: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Checks (and with `repair`, fixes) a store; see the module comment. */
export async function checkStore(store: BuildStore, opts: CheckStoreOptions = {}): Promise<StoreCheckReport> {
  const repair = opts.repair === true;
  const issues: StoreIssue[] = [];
  const add = (kind: StoreIssueKind, subject: string, message: string): StoreIssue => {
    const i: StoreIssue = { kind, subject, message, repaired: false };
    issues.push(i);
    return i;
  };
  const root = store.root;

  // 1. leftovers of dead builders that opening the store did not clean (e.g. created since)
  for (const mp of await storeMounts(root)) {
    const owner = ownerOf(root, mp);
    if (owner === undefined) {
      add('mount-unknown', mp, `expected mounts under the store to be named after their builder's pid, found ${mp}`);
    } else if (owner !== process.pid && !isAlive(owner)) {
      add('mount-stale', mp, `mount left by dead process ${owner}`);
    }
  }
  for (const sub of ['tmp', join('runc', 'bundles'), join('runc', 'unshare'), join('runc', 'runc')]) {
    for (const name of await readdir(join(root, sub)).catch(() => [] as string[])) {
      const owner = ownerOf(root, join(root, sub, name));
      if (owner !== undefined && owner !== process.pid && !isAlive(owner)) add('temp-stale', join(root, sub, name), `left by dead process ${owner}`);
    }
  }
  if (repair && issues.some((i) => i.kind === 'mount-stale' || i.kind === 'temp-stale')) {
    await recoverStore(root);
    const mounts = new Set(await storeMounts(root));
    for (const i of issues) {
      if (i.kind === 'mount-stale') i.repaired = !mounts.has(i.subject);
      if (i.kind === 'temp-stale') i.repaired = !(await exists(i.subject));
    }
  }
  const ingestDir = join(root, 'ingest');
  for (const name of await readdir(ingestDir).catch(() => [] as string[])) {
    let owner: number | undefined;
    if (name.startsWith('.tmp-')) owner = Number(name.split('-')[1]);
    else {
      try {
        owner = (JSON.parse(await readFile(join(ingestDir, name, 'owner'), 'utf8').catch(() => '{}')) as { pid?: number }).pid;
      } catch {
        owner = undefined; // torn by a machine crash: cleanupIngest removes it once it is old
      }
    }
    if (owner !== undefined && owner !== process.pid && !isAlive(owner)) add('ingest-stale', join(ingestDir, name), `half-written blob of dead process ${owner}`);
  }
  if (repair && issues.some((i) => i.kind === 'ingest-stale')) {
    await store.content.cleanupIngest();
    for (const i of issues) if (i.kind === 'ingest-stale') i.repaired = !(await exists(i.subject));
  }

  // 2. blobs: every one re-hashed
  let blobs = 0;
  let bytes = 0;
  const present = new Map<Digest, number>();
  const blobDir = join(root, 'blobs', 'sha256');
  for (const name of (await readdir(blobDir).catch(() => [] as string[])).sort()) {
    const path = join(blobDir, name);
    if (!/^[0-9a-f]{64}$/.test(name)) {
      const i = add('blob-stray', path, `expected only sha256 hex names under blobs/sha256, found ${JSON.stringify(name)}`);
      if (repair) {
        await rm(path, { recursive: true, force: true });
        i.repaired = true;
      }
      continue;
    }
    let h: { digest: string; size: number };
    try {
      h = await hashFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted meanwhile (prune)
      throw err;
    }
    const d: Digest = `sha256:${name}`;
    if (h.digest !== d) {
      const i = add('blob-corrupt', d, `expected the blob's bytes to hash to ${d}, found ${h.digest}`);
      if (repair) {
        await rm(path, { force: true });
        i.repaired = true;
      }
      continue;
    }
    blobs++;
    bytes += h.size;
    present.set(d, h.size);
  }
  // virtual blobs: regenerated from their snapshot and verified, like a re-hash
  for await (const b of store.content.walkVirtual()) {
    if (b.virtual === undefined) continue;
    const snap = b.virtual.recipe.snapshot;
    if (!(await store.content.has(b.digest))) {
      const i = add('blob-unbacked', b.digest, `expected snapshot ${snap} to regenerate virtual blob ${b.digest}, found none (the blob is missing)`);
      if (repair) {
        await store.content.delete(b.digest).catch(() => undefined);
        i.repaired = true;
      }
      continue;
    }
    let failure: string | undefined;
    try {
      for await (const chunk of store.content.createReadStream(b.digest)) void chunk;
    } catch (err) {
      failure = (err as Error).message;
    }
    if (failure !== undefined) {
      const i = add('blob-corrupt', b.digest, `expected snapshot ${snap} to regenerate the bytes of ${b.digest}, found: ${failure}`);
      if (repair) {
        await store.content.delete(b.digest).catch(() => undefined);
        i.repaired = true;
      }
      continue;
    }
    blobs++;
    bytes += b.size;
    present.set(b.digest, b.size);
  }

  // 3. image names (index.json)
  let images = 0;
  const referenced = new Set<Digest>();
  const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as { manifests?: { digest: Digest; annotations?: Record<string, string> }[] };
  for (const m of index.manifests ?? []) {
    images++;
    const name = m.annotations?.['org.opencontainers.image.ref.name'] ?? m.digest;
    let problem: string | undefined;
    try {
      const img = await readImage(store.content, m.digest);
      referenced.add(img.manifestDigest);
      referenced.add(img.manifest.config.digest);
      referenced.add(m.digest);
      for (const l of img.manifest.layers) {
        referenced.add(l.digest);
        const size = present.get(l.digest);
        if (size === undefined) problem ??= `expected layer ${l.digest} in the store, found none`;
        else if (size !== l.size) problem ??= `expected layer ${l.digest} of ${l.size} bytes, found ${size}`;
      }
    } catch (err) {
      problem = `expected a readable image, found: ${(err as Error).message}`;
    }
    if (problem !== undefined) {
      const i = add('image-broken', name, problem);
      if (repair && m.annotations?.['org.opencontainers.image.ref.name'] !== undefined) {
        await store.images.untag(name);
        i.repaired = true;
      }
    }
  }
  try {
    for (const d of await store.images.referencedBlobs()) referenced.add(d);
  } catch {
    // broken images were reported above
  }

  // 4. cache records and the SQLite file
  const db = store.db.db;
  const records = store.db.all();
  const broken: string[] = [];
  for (const r of records) {
    if (!r.layer) continue;
    referenced.add(r.layer.digest);
    const size = present.get(r.layer.digest);
    if (size === undefined) broken.push(r.key), add('record-broken', r.key, `expected its layer ${r.layer.digest} in the store, found none`);
    else if (size !== r.layer.size) broken.push(r.key), add('record-broken', r.key, `expected its layer ${r.layer.digest} of ${r.layer.size} bytes, found ${size}`);
  }
  const orphans = (db.prepare('SELECT DISTINCT key FROM record_files WHERE key NOT IN (SELECT key FROM records)').all() as { key: string }[]).map((r) => r.key);
  for (const k of orphans) add('record-files-orphan', k, 'file digests recorded for a cache record that does not exist');
  const leases = db.prepare('SELECT id, pid FROM leases').all() as { id: string; pid: number }[];
  for (const l of leases) if (l.pid !== process.pid && !isAlive(l.pid)) add('lease-stale', l.id, `lease of dead process ${l.pid}`);
  if (repair) {
    store.db.deleteRecords(broken);
    const delFiles = db.prepare('DELETE FROM record_files WHERE key = ?');
    db.transaction(() => {
      for (const k of orphans) delFiles.run(k);
    }).immediate();
    for (const l of leases) if (l.pid !== process.pid && !isAlive(l.pid)) store.db.releaseLease(l.id);
    for (const i of issues) if (i.kind === 'record-broken' || i.kind === 'record-files-orphan' || i.kind === 'lease-stale') i.repaired = true;
  }
  const integrity = db.pragma('integrity_check', { simple: true });
  if (integrity !== 'ok') add('db-integrity', join(root, 'cache.db'), `expected PRAGMA integrity_check to say ok, found ${String(integrity)} (move cache.db aside: the next start creates a fresh index)`);
  const fk = db.pragma('foreign_key_check') as unknown[];
  if (fk.length > 0) add('db-integrity', join(root, 'cache.db'), `expected no foreign key violations, found ${fk.length}`);

  // 5. snapshots
  const snapRoot = store.snapshots.root;
  const metas: MetaRecord[] = [];
  const metaDir = join(snapRoot, 'metadata');
  for (const n of await readdir(metaDir).catch(() => [] as string[])) {
    if (!n.endsWith('.json')) continue;
    try {
      metas.push(JSON.parse(await readFile(join(metaDir, n), 'utf8')) as MetaRecord);
    } catch (err) {
      if (err instanceof SyntaxError) {
        // an active/view record torn by a machine crash (opening the store removes those)
        const i = add('snapshot-stale', join(metaDir, n), 'expected a readable snapshot record, found a torn one (left by a machine crash)');
        if (repair) {
          await rm(join(metaDir, n), { force: true });
          i.repaired = true;
        }
      } else if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  const byKey = new Map(metas.map((m) => [m.key, m]));
  const bad = new Map<string, string>();
  for (const m of metas) {
    if (m.kind !== 'committed' && m.owner !== undefined && m.owner !== process.pid && !isAlive(m.owner)) {
      bad.set(m.key, `snapshot-stale:${m.kind} snapshot of dead process ${m.owner}`);
      continue;
    }
    if (!(await exists(join(snapRoot, 'snapshots', m.id, 'fs')))) bad.set(m.key, `snapshot-broken:expected directory snapshots/${m.id}/fs, found none`);
    else if (m.parent !== undefined && byKey.get(m.parent)?.kind !== 'committed') bad.set(m.key, `snapshot-broken:expected committed parent ${m.parent}, found none`);
  }
  // children of broken snapshots are broken too
  for (let changed = true; changed; ) {
    changed = false;
    for (const m of metas) {
      if (bad.has(m.key) || m.parent === undefined || !bad.has(m.parent)) continue;
      bad.set(m.key, `snapshot-broken:its parent ${m.parent} is broken`);
      changed = true;
    }
  }
  const depth = (m: MetaRecord): number => {
    let n = 0;
    for (let p = m.parent; p !== undefined && n < 10_000; p = byKey.get(p)?.parent) n++;
    return n;
  };
  const badList = metas.filter((m) => bad.has(m.key)).sort((a, b) => depth(b) - depth(a));
  for (const m of badList) {
    const [kind, msg] = bad.get(m.key)!.split(/:(.*)/s) as [StoreIssueKind, string];
    const i = add(kind, m.key, msg);
    if (repair) {
      await store.snapshots.remove(m.key).catch(async (err: unknown) => {
        if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
      });
      i.repaired = true;
    }
  }
  // after repairs, mounts of dead processes must be gone
  if (repair) for (const mp of await storeMounts(root)) if (issues.some((i) => i.kind === 'mount-stale' && i.subject === mp)) await unmountAll(mp);

  const unreferencedBlobs = [...present.keys()].filter((d) => !referenced.has(d));
  return {
    ok: issues.every((i) => i.repaired),
    checked: { blobs, bytes, images, records: records.length, snapshots: metas.length },
    unreferencedBlobs,
    issues,
    recovered: store.recovery,
  };
}
