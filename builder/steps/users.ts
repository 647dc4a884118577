/**
 * USER and --chown resolution from the image's own /etc/passwd and /etc/group, parsed here as text:
 * no name-service code from the image is ever loaded into the builder (security.md item 23).
 */
import { promises as fs } from 'node:fs';
import { resolveInScope } from '../context/scope.js';
import { MbuildError, type SourceRange } from '../../util/errors.js';

export interface PasswdEntry { name: string; uid: number; gid: number; home: string }
export interface GroupEntry { name: string; gid: number; members: string[] }
export interface UserDb { users: PasswdEntry[]; groups: GroupEntry[] }

async function readInRoot(root: string, file: string): Promise<string> {
  try {
    const p = await resolveInScope(root, file, true);
    const st = await fs.stat(p);
    if (!st.isFile() || st.size > 16 << 20) return '';
    return await fs.readFile(p, 'utf8');
  } catch {
    return '';
  }
}

export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid)) continue;
    out.push({ name: f[0], uid, gid, home: f[5] ?? '' });
  }
  return out;
}

export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || line.startsWith('#')) continue;
    const gid = Number(f[2]);
    if (!Number.isInteger(gid)) continue;
    out.push({ name: f[0], gid, members: (f[3] ?? '').split(',').map((s) => s.trim()).filter(Boolean) });
  }
  return out;
}

export async function readUserDb(root: string): Promise<UserDb> {
  const [p, g] = await Promise.all([readInRoot(root, '/etc/passwd'), readInRoot(root, '/etc/group')]);
  return { users: parsePasswd(p), groups: parseGroup(g) };
}

const isNum = (s: string) => /^\d+$/.test(s);

export interface ResolvedUser { uid: number; gid: number; groups: number[] }

/** USER value → ids, the way runc/BuildKit do for RUN: numeric users need not exist in passwd. */
export function resolveUser(spec: string, db: UserDb, range?: SourceRange): ResolvedUser {
  const [userPart, groupPart] = spec.includes(':') ? [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)] : [spec, undefined];
  const user = userPart === '' ? 'root' : userPart;
  let uid: number;
  let gid: number;
  let name: string | undefined;
  const entry = isNum(user) ? db.users.find((u) => u.uid === Number(user)) : db.users.find((u) => u.name === user);
  if (isNum(user)) {
    uid = Number(user);
    gid = entry ? entry.gid : 0;
    name = entry?.name;
  } else {
    if (!entry) throw new MbuildError('MBUILD_UNKNOWN_USER', `unable to find user ${user}: no matching entries in passwd file`, { range });
    uid = entry.uid;
    gid = entry.gid;
    name = entry.name;
  }
  let groups: number[] = [];
  if (groupPart !== undefined && groupPart !== '') {
    gid = resolveGroup(groupPart, db, range);
  } else if (name) {
    groups = db.groups.filter((g) => g.members.includes(name!) && g.gid !== gid).map((g) => g.gid);
  }
  return { uid, gid, groups };
}

export function resolveGroup(spec: string, db: UserDb, range?: SourceRange): number {
  if (isNum(spec)) return Number(spec);
  const g = db.groups.find((x) => x.name === spec);
  if (!g) throw new MbuildError('MBUILD_UNKNOWN_GROUP', `unable to find group ${spec}: no matching entries in group file`, { range });
  return g.gid;
}

/** COPY --chown value → ids: a uid alone means gid = uid; a name alone means its primary group. */
export function resolveChown(spec: string, db: UserDb, range?: SourceRange): { uid: number; gid: number } {
  const colon = spec.indexOf(':');
  const userPart = colon >= 0 ? spec.slice(0, colon) : spec;
  const groupPart = colon >= 0 ? spec.slice(colon + 1) : undefined;
  let uid: number;
  let gid: number;
  if (isNum(userPart)) {
    uid = Number(userPart);
    gid = uid;
  } else {
    const u = db.users.find((x) => x.name === userPart);
    if (!u) throw new MbuildError('MBUILD_UNKNOWN_USER', `unable to convert uid/gid chown string to host mapping: can't find uid for user ${userPart}`, { range });
    uid = u.uid;
    gid = u.gid;
  }
  if (groupPart !== undefined && groupPart !== '') gid = resolveGroup(groupPart, db, range);
  return { uid, gid };
}
