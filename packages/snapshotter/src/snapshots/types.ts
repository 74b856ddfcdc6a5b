/** A mount to perform: the lingua franca between snapshotters and executors. */
export interface Mount {
  type: 'overlay' | 'bind';
  source: string;
  /** mount(8) `-o` options; overlay dirs are absolute paths (see mountAll for long chains). */
  options: string[];
}

/** Metadata of one snapshot. Active and view snapshots are mutable/temporary; committed ones are immutable parents. */
export interface SnapshotInfo {
  key: string;
  kind: 'active' | 'view' | 'committed';
  parent?: string;
  /** ISO-8601 creation time. */
  created: string;
  labels: Record<string, string>;
}

/** Disk usage of one snapshot's own data (not its parents'). */
export interface Usage {
  /** Bytes allocated on disk (st_blocks × 512, hardlinks counted once). */
  size: number;
  /** Number of inodes (hardlinks counted once), including the snapshot root. */
  inodes: number;
}

/** containerd-style snapshotter. */
export interface Snapshotter {
  readonly backend: 'overlay' | 'copy';
  readonly root: string;
  /** Creates an active (writable) snapshot on top of a committed parent; fails with ALREADY_EXISTS if `key` is taken. */
  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** Creates a read-only view of a committed parent (cannot be committed). */
  view(key: string, parent?: string): Promise<Mount[]>;
  /** The mounts of an active or view snapshot. */
  mounts(key: string): Promise<Mount[]>;
  /** Turns active snapshot `key` into committed snapshot `name`; `key` no longer exists afterwards. */
  commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void>;
  /** Replaces the labels of a committed snapshot (durably). */
  setLabels(key: string, labels: Record<string, string>): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  usage(key: string): Promise<Usage>;
  /** Removes a snapshot; a committed snapshot with children fails with FAILED_PRECONDITION. */
  remove(key: string): Promise<void>;
  walk(): AsyncIterable<SnapshotInfo>;
  close(): Promise<void>;
}

/** Internal view of a snapshot record (what is persisted). */
export interface SnapshotRecord extends SnapshotInfo {
  /** Short id naming the snapshot directory `<root>/snapshots/<id>`. */
  id: string;
  /** pid of the process that made an active or view snapshot; recovery removes those of dead processes. */
  owner?: number;
}
