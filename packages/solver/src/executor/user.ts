/**
 * `USER` resolution against the rootfs's /etc/passwd and /etc/group, with the rules and
 * error messages of runc's libcontainer/user.GetExecUser (which BuildKit uses).
 */
import { readFile } from 'node:fs/promises';
import { resolveInRoot } from './resolve-in-root.js';
import { ExecutorError } from './errors.js';

/** Numeric identity of a step's process. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

const MAX_ID = 2147483647;

/** Go's strconv.Atoi accepts an optional sign and decimal digits only. */
function atoi(s: string): number | undefined {
  return /^[+-]?[0-9]+$/.test(s) ? Number(s) : undefined;
}

function lines(text: string): string[][] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((l) => l.split(':'));
}

function parsePasswd(text: string): PasswdEntry[] {
  return lines(text).map((f) => ({ name: f[0] ?? '', uid: atoi(f[2] ?? '') ?? 0, gid: atoi(f[3] ?? '') ?? 0, home: f[5] ?? '' }));
}

function parseGroup(text: string): GroupEntry[] {
  return lines(text).map((f) => ({
    name: f[0] ?? '',
    gid: atoi(f[2] ?? '') ?? 0,
    members: (f[3] ?? '').split(',').filter((m) => m !== ''),
  }));
}

async function readInRoot(rootfs: string, path: string): Promise<string | undefined> {
  const host = await resolveInRoot(rootfs, path);
  try {
    return await readFile(host, 'utf8');
  } catch (err) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new ExecutorError('INTERNAL', `cannot read ${path} inside ${rootfs}`, { cause: err });
  }
}

function checkRange(id: number): number {
  if (id < 0 || id > MAX_ID) {
    throw new ExecutorError('INVALID_ARGUMENT', `uids and gids must be in range 0-${MAX_ID}, found ${id}`);
  }
  return id;
}

/**
 * Resolves a Dockerfile `USER` value (`name`, `uid`, `name:group`, `uid:gid`, mixed forms)
 * to numeric ids, reading the rootfs's /etc/passwd and /etc/group through
 * {@link resolveInRoot}. An empty string means root (0:0). A numeric user needs no passwd
 * entry; a name that is not found fails with `unable to find user NAME: no matching entries
 * in passwd file` (BuildKit's wording). Supplementary groups come from /etc/group membership
 * and are only filled when no group was given explicitly.
 */
export async function resolveUser(rootfs: string, user: string): Promise<ResolvedUser> {
  const colon = user.indexOf(':');
  const userArg = colon === -1 ? user : user.slice(0, colon);
  const groupArg = colon === -1 ? '' : user.slice(colon + 1);
  const uidArg = atoi(userArg);
  const gidArg = atoi(groupArg);

  // Purely numeric specs never touch the rootfs (like BuildKit's fast path).
  if (uidArg !== undefined && (groupArg === '' ? false : gidArg !== undefined)) {
    return { uid: checkRange(uidArg), gid: checkRange(gidArg as number), additionalGids: [] };
  }

  let uid = 0;
  let gid = 0;
  let matchedName = '';
  let additionalGids: number[] = [];

  const passwdText = await readInRoot(rootfs, '/etc/passwd');
  const users = passwdText === undefined ? [] : parsePasswd(passwdText);
  const match = users.find((u) => (userArg === '' ? u.uid === 0 : uidArg !== undefined ? u.uid === uidArg : u.name === userArg));
  if (match !== undefined) {
    matchedName = match.name;
    uid = match.uid;
    gid = match.gid;
  } else if (userArg !== '') {
    if (uidArg === undefined) {
      throw new ExecutorError('NOT_FOUND', `unable to find user ${userArg}: no matching entries in passwd file`);
    }
    uid = checkRange(uidArg);
  }

  if (groupArg !== '' || matchedName !== '') {
    const groupText = await readInRoot(rootfs, '/etc/group');
    const groups = groupText === undefined ? [] : parseGroup(groupText);
    if (groupArg !== '') {
      const g = groups.find((x) => (gidArg !== undefined ? x.gid === gidArg : x.name === groupArg));
      if (g !== undefined) gid = g.gid;
      else if (gidArg === undefined) {
        throw new ExecutorError('NOT_FOUND', `unable to find group ${groupArg}: no matching entries in group file`);
      } else gid = checkRange(gidArg);
    } else {
      additionalGids = groups.filter((g) => g.members.includes(matchedName)).map((g) => g.gid);
    }
  }
  return { uid, gid, additionalGids };
}

/**
 * HOME for a uid, as runc sets it when the environment has none: the first passwd entry
 * with that uid, else `/`.
 */
export async function homeForUid(rootfs: string, uid: number): Promise<string> {
  const text = await readInRoot(rootfs, '/etc/passwd');
  const home = text === undefined ? undefined : parsePasswd(text).find((u) => u.uid === uid)?.home;
  return home === undefined || home === '' ? '/' : home;
}
