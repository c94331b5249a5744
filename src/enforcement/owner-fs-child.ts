/**
 * Owns the source of the owner-fs child: the small program that performs file operations in a
 * user's tree with that user's credentials (see owner-fs.ts for why). It is plain CommonJS run
 * with `node -e`, so the same text runs from src/ under the test runner and from dist/, and it
 * imports nothing but node:fs (and node:os, to give up guardd's raised priority: it runs as the
 * user, who must not get a nice −10 process out of it; src/daemon/priority.ts; and node:crypto
 * for `hashFd`, the one operation that reads a file whole).
 *
 * Protocol: one JSON request per stdin line `{id, op, args}`, one JSON answer per stdout line
 * `{id, ok: true, value}` or `{id, ok: false, code, message}` (`code` is the errno code, e.g.
 * ENOENT, EACCES). Operations on paths never follow a symlink in the last component (lstat,
 * O_NOFOLLOW, readlink); earlier components are resolved by the kernel with the child's
 * credentials, which is the point: whatever they lead to, the child can only reach what its user
 * could reach anyway. `openFd` takes no path: it opens a descriptor guardd handed over (the
 * kernel's /proc/self/fd link to it), which names one file whatever happens to paths meanwhile.
 */
export const OWNER_FS_CHILD_SOURCE = String.raw`
'use strict';
try { require('node:os').setPriority(0); } catch {}
const fs = require('node:fs');
const C = fs.constants;
const typeOf = (st) => st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'other';
const statOut = (st) => ({ type: typeOf(st), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: st.size, dev: st.dev, ino: st.ino });
const fail = (code, message) => { const e = new Error(message); e.code = code; throw e; };
const same = (st, a) => a.dev === undefined || (st.dev === a.dev && st.ino === a.ino);
const idOut = (st) => ({ dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, mode: st.mode, uid: st.uid, gid: st.gid });
// The owner may have taken their own permissions away (chmod 000 on a file, 0555 on a dir) to make
// a package impossible to copy or remove: as the owner we may give them back, and do, only on
// entries we own, never through a link.
const me = process.getuid ? process.getuid() : -1;
const withAccess = (path, bits, fn) => {
  try { return fn(); } catch (e) {
    if (e.code !== 'EACCES') throw e;
    const st = fs.lstatSync(path);
    if (st.isSymbolicLink() || st.uid !== me || (st.mode & bits) === bits) throw e;
    fs.chmodSync(path, (st.mode & 0o7777) | bits);
    try { return fn(); } finally { try { fs.chmodSync(path, st.mode & 0o7777); } catch {} }
  }
};
const openWritable = (root) => {
  const walk = (p) => {
    const st = fs.lstatSync(p);
    if (!st.isDirectory() || st.uid !== me) return;
    if ((st.mode & 0o700) !== 0o700) fs.chmodSync(p, (st.mode & 0o7777) | 0o700);
    for (const n of fs.readdirSync(p)) walk(p + '/' + n);
  };
  walk(root);
};
const ops = {
  lstat: (a) => statOut(fs.lstatSync(a.path)),
  realpath: (a) => fs.realpathSync(a.path),
  readdir: (a) => withAccess(a.path, 0o500, () => fs.readdirSync(a.path)).slice(0, a.max),
  readlink: (a) => fs.readlinkSync(a.path),
  readFile: (a) => {
    const fd = withAccess(a.path, 0o400, () => fs.openSync(a.path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK));
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile()) fail('EINVAL', a.path + ' is not a regular file');
      if (!same(st, a)) fail('ESTALE', a.path + ' was replaced');
      const len = Math.max(0, Math.min(a.length, st.size - a.offset));
      const buf = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const n = fs.readSync(fd, buf, got, len - got, a.offset + got);
        if (n === 0) break;
        got += n;
      }
      return buf.subarray(0, got).toString('base64');
    } finally { fs.closeSync(fd); }
  },
  unlinkIf: (a) => {
    const st = fs.lstatSync(a.path);
    if (a.symlinkTarget !== undefined) {
      if (!st.isSymbolicLink() || fs.readlinkSync(a.path) !== a.symlinkTarget) return false;
    } else {
      if (!st.isFile() || st.size > a.maxBytes) return false;
      const fd = fs.openSync(a.path, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
      let content;
      try { content = fs.readFileSync(fd); } finally { fs.closeSync(fd); }
      if (content.toString('base64') !== a.contentB64) return false;
    }
    fs.unlinkSync(a.path);
    return true;
  },
  rmTree: (a) => {
    const st = fs.lstatSync(a.path);
    if (!same(st, a)) fail('ESTALE', a.path + ' was replaced');
    try { fs.rmSync(a.path, { recursive: true, force: true }); } catch (e) {
      if (e.code !== 'EACCES' && e.code !== 'EPERM') throw e;
      openWritable(a.path);
      fs.rmSync(a.path, { recursive: true, force: true });
    }
    return true;
  },
  mkdirp: (a) => fs.mkdirSync(a.path, { recursive: true, mode: a.mode }) ?? null,
  mkdir: (a) => { fs.mkdirSync(a.path, { mode: a.mode }); return true; },
  writeFile: (a) => {
    const flags = a.append ? C.O_WRONLY | C.O_APPEND | C.O_NOFOLLOW : C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW;
    const fd = fs.openSync(a.path, flags, a.mode ?? 0o600);
    try { fs.writeSync(fd, Buffer.from(a.b64, 'base64')); } finally { fs.closeSync(fd); }
    return true;
  },
  lchown: (a) => { fs.lchownSync(a.path, a.uid, a.gid); return true; },
  symlink: (a) => { fs.symlinkSync(a.target, a.path); return true; },
  chmod: (a) => {
    if (fs.lstatSync(a.path).isSymbolicLink()) fail('ELOOP', a.path + ' is a symlink');
    fs.chmodSync(a.path, a.mode);
    return true;
  },
  // A descriptor guardd handed over at stdio index a.fd (an O_PATH descriptor of a process's
  // /proc/<pid>/exe): opened for reading through the kernel's link to it, with this user's
  // credentials, and kept open under the number returned; read by readFd/hashFd, closed at exit.
  openFd: (a) => {
    const fd = fs.openSync('/proc/self/fd/' + a.fd, C.O_RDONLY | C.O_NONBLOCK | C.O_NOCTTY);
    const st = fs.fstatSync(fd);
    if (!st.isFile()) { fs.closeSync(fd); fail('EINVAL', 'not a regular file'); }
    return { h: fd, ...idOut(st) };
  },
  statFd: (a) => idOut(fs.fstatSync(a.h)),
  readFd: (a) => {
    const buf = Buffer.alloc(Math.max(0, a.length));
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(a.h, buf, got, buf.length - got, a.offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got).toString('base64');
  },
  // SHA-256 of the whole file, null past a.max bytes (read here: only the digest crosses the pipe).
  hashFd: (a) => {
    if (fs.fstatSync(a.h).size > a.max) return null;
    const h = require('node:crypto').createHash('sha256');
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let pos = 0; ; ) {
      const n = fs.readSync(a.h, buf, 0, buf.length, pos);
      if (n === 0) return h.digest('hex');
      h.update(buf.subarray(0, n));
      pos += n;
      if (pos > a.max) return null;
    }
  },
};
let buf = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    let req;
    try { req = JSON.parse(line); } catch { continue; }
    let out;
    try {
      const fn = ops[req.op];
      if (!fn) fail('ENOSYS', 'unknown op ' + req.op);
      out = { id: req.id, ok: true, value: fn(req.args) };
    } catch (e) {
      out = { id: req.id, ok: false, code: e.code || 'EIO', message: String(e.message || e) };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  }
});
process.stdin.on('end', () => process.exit(0));
`;
