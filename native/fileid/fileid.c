/*
 * fileid: the identity of an open file, with the mount it was reached through, for guardd's hash
 * and content-marker caches (src/sensors/file-id.ts).
 *
 * Owns: `identity(fd)`: statx of the descriptor on a libuv pool thread (napi async work, as Node's
 * own fh.stat()), answering what fs.Stats gives the caches (dev, ino, size, mtimeMs, ctimeMs, the
 * same doubles libuv makes; mode, uid, gid) plus the two ids of its mount: `mount`, the unique id (Linux 6.8+,
 * STATX_MNT_ID_UNIQUE: never reused while the machine runs; 0 before 6.8), which the caches key
 * by, and `mountId`, the id /proc/self/mountinfo numbers the mount by (reused after an unmount,
 * but not while the descriptor holds the mount), by which src/sensors/mount-trust.ts finds its
 * line. native/execperm and native/procevents put the same unique id in the identities they read.
 *
 * And `loopBacking(fd)`: the device and inode of the file a loop device (open on fd) reads,
 * LOOP_GET_STATUS64 on a pool thread (the kernel stats the backing file, which may wait on its
 * file system), for mount-trust.ts to check that the file /sys names as its backing file is that
 * file: the kernel names it by its path in the mount namespace it was opened in, which may be a
 * user's, where any path names any file of theirs.
 *
 * Why hand-written: Node's fs.Stats has no mount id and Node has no statx, nor ioctl; no package gives one.
 * The job may wait on the file's file system like any fs call (the caller's gate and deadline
 * apply, as for fh.stat()).
 *
 * API (N-API version 8):
 *   identity(fd: number) -> Promise<{ dev, ino, size, mtimeMs, ctimeMs, mode, uid, gid, mount, mountId }>
 *       rejects with code GUARD_FILEID_FAILED (errno in the message) when statx fails; throws
 *       GUARD_FILEID_ARGS for a bad fd argument.
 *   loopBacking(fd: number) -> Promise<{ dev, ino }>
 *       rejects with code GUARD_FILEID_FAILED when the ioctl fails (not a loop device: ENOTTY; no
 *       file attached: ENXIO).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define NAPI_VERSION 8
#include <node_api.h>

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U
#endif

typedef struct {
  int loop; /* 1: loopBacking, 0: identity */
  struct loop_info64 li;
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int err; /* 0 or errno */
  struct statx sx;
  uint64_t mount;   /* unique id, 0 when the kernel has none */
  int64_t mount_id; /* mountinfo's id, -1 when unknown */
} job_t;

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  if (j->loop) {
    if (ioctl(j->fd, LOOP_GET_STATUS64, &j->li) != 0) j->err = errno;
    return;
  }
  const unsigned int basic =
      STATX_TYPE | STATX_MODE | STATX_UID | STATX_GID | STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME;
  if (statx(j->fd, "", AT_EMPTY_PATH, basic | STATX_MNT_ID_UNIQUE, &j->sx) != 0) {
    j->err = errno;
    return;
  }
  if ((j->sx.stx_mask & basic) != basic) {
    j->err = EIO;
    return;
  }
  j->mount = (j->sx.stx_mask & STATX_MNT_ID_UNIQUE) ? j->sx.stx_mnt_id : 0;
  struct statx old;
  j->mount_id = statx(j->fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, STATX_MNT_ID, &old) == 0 &&
                        (old.stx_mask & STATX_MNT_ID)
                    ? (int64_t)old.stx_mnt_id
                    : -1;
}

static int set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, obj, key, n) == napi_ok;
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value out;
  int ok;
  if (j->loop)
    /* lo_device is the kernel's encoding (huge_encode_dev), the same number as glibc's makedev */
    ok = status == napi_ok && j->err == 0 && napi_create_object(env, &out) == napi_ok &&
         set_num(env, out, "dev", (double)j->li.lo_device) && set_num(env, out, "ino", (double)j->li.lo_inode);
  else
    ok = status == napi_ok && j->err == 0 && napi_create_object(env, &out) == napi_ok &&
      set_num(env, out, "dev", (double)makedev(j->sx.stx_dev_major, j->sx.stx_dev_minor)) &&
      set_num(env, out, "ino", (double)j->sx.stx_ino) && set_num(env, out, "size", (double)j->sx.stx_size) &&
      /* As libuv fills fs.Stats from statx, and Node's msFromTimeSpec: the same doubles. */
      set_num(env, out, "mtimeMs", (double)j->sx.stx_mtime.tv_sec * 1000.0 + (double)j->sx.stx_mtime.tv_nsec / 1000000.0) &&
      set_num(env, out, "ctimeMs", (double)j->sx.stx_ctime.tv_sec * 1000.0 + (double)j->sx.stx_ctime.tv_nsec / 1000000.0) &&
      set_num(env, out, "mode", (double)j->sx.stx_mode) && set_num(env, out, "uid", (double)j->sx.stx_uid) &&
      set_num(env, out, "gid", (double)j->sx.stx_gid) && set_num(env, out, "mount", (double)j->mount) &&
      set_num(env, out, "mountId", (double)j->mount_id);
  if (ok) {
    napi_resolve_deferred(env, j->deferred, out);
  } else {
    char msg[128];
    snprintf(msg, sizeof(msg), j->loop ? "loopBacking(fd): LOOP_GET_STATUS64 failed: %s" : "identity(fd): statx failed: %s",
             strerror(j->err != 0 ? j->err : EIO));
    napi_value m, code, err;
    napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
    napi_create_string_utf8(env, "GUARD_FILEID_FAILED", NAPI_AUTO_LENGTH, &code);
    napi_create_error(env, code, m, &err);
    napi_reject_deferred(env, j->deferred, err);
  }
  napi_delete_async_work(env, j->work);
  free(j);
}

/* identity(fd) (loop 0) and loopBacking(fd) (loop 1): a job for the pool. */
static napi_value queue(napi_env env, napi_callback_info info, int loop) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_error(env, "GUARD_FILEID_ARGS", "identity(fd): fd must be a descriptor number");
    return NULL;
  }
  job_t *j = calloc(1, sizeof(job_t));
  if (j == NULL) {
    napi_throw_error(env, "GUARD_FILEID_ARGS", "identity: out of memory");
    return NULL;
  }
  j->fd = fd;
  j->loop = loop;
  napi_value promise, name;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "toolguard:fileIdentity", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free(j);
    napi_throw_error(env, "GUARD_FILEID_ARGS", "identity: could not queue the job");
    return NULL;
  }
  return promise;
}

static napi_value identity(napi_env env, napi_callback_info info) { return queue(env, info, 0); }
static napi_value loop_backing(napi_env env, napi_callback_info info) { return queue(env, info, 1); }

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "identity", NAPI_AUTO_LENGTH, identity, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "identity", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "loopBacking", NAPI_AUTO_LENGTH, loop_backing, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "loopBacking", fn) != napi_ok) return NULL;
  return exports;
}
