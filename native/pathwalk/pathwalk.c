/*
 * pathwalk: one thread-pool job for the steps of a path walk, for guardd's script package resolver
 * (src/sensors/script-package.ts through src/sensors/safe-read.ts `lstatUserChain`).
 *
 * Owns: `lstatChain(paths)`: lstat each path in order on a libuv pool thread (napi async work) and
 * readlink the first symlink met, stopping after it, after the first error or after the first entry
 * that is not a directory (nothing below it can be walked into). The resolver walks a script's path
 * one component at a time like the kernel (ownership and search rights of every step decide whether
 * a package.json may speak for the process); with one `fs.lstat` per component that was ten round
 * trips through the pool and the event loop for `node ~/.npm-global/lib/node_modules/x/cli.js`, and
 * each trip could queue behind other work: the tail of the time to kill a banned script. The
 * caller passes the lexical prefixes of what it will walk next and consumes the answers in order.
 *
 * Why hand-written: Node has no batched lstat (every fs call is one pool job), and no package does
 * this. The job touches the user's paths, so it may stall on their mount like any fs call: the
 * caller holds one ReadGate slot for it and abandons it at its deadline (the pool thread stays busy
 * until the kernel answers, as for fs.lstat).
 *
 * API (N-API version 8):
 *   lstatChain(paths: string[]) -> Promise<Array<{ mode, uid, gid, dev, ino, link } | { code }>>
 *       one answer per path walked, in order; `link` is the symlink's target (string) for a link,
 *       else null; `code` an errno name (ENOENT, EACCES, ELOOP, ENAMETOOLONG…). At most
 *       MAX_PATHS paths of at most PATH_MAX bytes; otherwise it throws GUARD_PATHWALK_ARGS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

/* Components of one walk at most (the resolver's own bound is smaller). */
#define MAX_PATHS 128

typedef struct {
  int err; /* 0 or errno */
  uint32_t mode, uid, gid;
  uint64_t dev, ino;
  char *link; /* malloc'd target for a symlink, else NULL */
} answer_t;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  size_t count;    /* paths given */
  size_t answered; /* answers filled by the pool thread */
  char **paths;
  answer_t *answers;
} job_t;

static void free_job(job_t *j) {
  for (size_t i = 0; i < j->count; i++) free(j->paths[i]);
  for (size_t i = 0; i < j->answered; i++) free(j->answers[i].link);
  free(j->paths);
  free(j->answers);
  free(j);
}

/* Pool thread: no N-API calls here. */
static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  for (size_t i = 0; i < j->count; i++) {
    answer_t *a = &j->answers[i];
    struct stat st;
    j->answered = i + 1;
    if (lstat(j->paths[i], &st) != 0) {
      a->err = errno;
      return;
    }
    a->mode = st.st_mode;
    a->uid = st.st_uid;
    a->gid = st.st_gid;
    a->dev = st.st_dev;
    a->ino = st.st_ino;
    if (S_ISLNK(st.st_mode)) {
      char buf[PATH_MAX + 1];
      ssize_t n = readlink(j->paths[i], buf, sizeof(buf));
      if (n < 0) a->err = errno;
      else if ((size_t)n >= sizeof(buf)) a->err = ENAMETOOLONG;
      else {
        a->link = malloc((size_t)n + 1);
        if (a->link == NULL) a->err = ENOMEM;
        else {
          memcpy(a->link, buf, (size_t)n);
          a->link[n] = '\0';
        }
      }
      return;
    }
    if (!S_ISDIR(st.st_mode)) return;
  }
}

static const char *errno_code(int err) {
  switch (err) {
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOMEM: return "ENOMEM";
    case EIO: return "EIO";
    default: return "EUNKNOWN";
  }
}

static int set_u32(napi_env env, napi_value obj, const char *key, uint32_t v) {
  napi_value n;
  return napi_create_uint32(env, v, &n) == napi_ok && napi_set_named_property(env, obj, key, n) == napi_ok;
}

/* As a JS number, like fs.Stats' dev and ino. */
static int set_num(napi_env env, napi_value obj, const char *key, uint64_t v) {
  napi_value n;
  return napi_create_double(env, (double)v, &n) == napi_ok && napi_set_named_property(env, obj, key, n) == napi_ok;
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value arr, err;
  int ok = status == napi_ok && napi_create_array_with_length(env, j->answered, &arr) == napi_ok;
  for (size_t i = 0; ok && i < j->answered; i++) {
    answer_t *a = &j->answers[i];
    napi_value obj, v;
    ok = napi_create_object(env, &obj) == napi_ok;
    if (ok && a->err != 0) {
      ok = napi_create_string_utf8(env, errno_code(a->err), NAPI_AUTO_LENGTH, &v) == napi_ok &&
           napi_set_named_property(env, obj, "code", v) == napi_ok;
    } else if (ok) {
      ok = set_u32(env, obj, "mode", a->mode) && set_u32(env, obj, "uid", a->uid) && set_u32(env, obj, "gid", a->gid) &&
           set_num(env, obj, "dev", a->dev) && set_num(env, obj, "ino", a->ino);
      if (ok) ok = (a->link ? napi_create_string_utf8(env, a->link, NAPI_AUTO_LENGTH, &v) : napi_get_null(env, &v)) == napi_ok;
      if (ok) ok = napi_set_named_property(env, obj, "link", v) == napi_ok;
    }
    if (ok) ok = napi_set_element(env, arr, (uint32_t)i, obj) == napi_ok;
  }
  if (ok) napi_resolve_deferred(env, j->deferred, arr);
  else {
    napi_value msg;
    napi_create_string_utf8(env, "lstatChain: could not build the answer", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_reject_deferred(env, j->deferred, err);
  }
  napi_delete_async_work(env, j->work);
  free_job(j);
}

static napi_value throw_args(napi_env env, const char *msg) {
  napi_throw_error(env, "GUARD_PATHWALK_ARGS", msg);
  return NULL;
}

static napi_value lstat_chain(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  bool is_array = false;
  if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array)
    return throw_args(env, "lstatChain(paths): paths must be an array of strings");
  uint32_t count;
  if (napi_get_array_length(env, argv[0], &count) != napi_ok) return NULL;
  if (count == 0 || count > MAX_PATHS) return throw_args(env, "lstatChain(paths): 1 to 128 paths");
  job_t *j = calloc(1, sizeof(job_t));
  if (j == NULL) return throw_args(env, "lstatChain: out of memory");
  j->paths = calloc(count, sizeof(char *));
  j->answers = calloc(count, sizeof(answer_t));
  if (j->paths == NULL || j->answers == NULL) {
    free_job(j);
    return throw_args(env, "lstatChain: out of memory");
  }
  for (uint32_t i = 0; i < count; i++) {
    napi_value el;
    size_t len;
    if (napi_get_element(env, argv[0], i, &el) != napi_ok ||
        napi_get_value_string_utf8(env, el, NULL, 0, &len) != napi_ok) {
      free_job(j);
      return throw_args(env, "lstatChain(paths): paths must be an array of strings");
    }
    if (len == 0 || len >= PATH_MAX) {
      free_job(j);
      return throw_args(env, "lstatChain(paths): each path 1 to PATH_MAX-1 bytes");
    }
    j->paths[i] = malloc(len + 1);
    j->count = i + 1;
    if (j->paths[i] == NULL || napi_get_value_string_utf8(env, el, j->paths[i], len + 1, &len) != napi_ok) {
      free_job(j);
      return throw_args(env, "lstatChain: out of memory");
    }
    if (strlen(j->paths[i]) != len) {
      free_job(j);
      return throw_args(env, "lstatChain(paths): a path holds NUL");
    }
  }
  napi_value promise, name;
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "toolguard:lstatChain", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    free_job(j);
    return throw_args(env, "lstatChain: could not queue the job");
  }
  return promise;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "lstatChain", NAPI_AUTO_LENGTH, lstat_chain, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "lstatChain", fn) != napi_ok) return NULL;
  return exports;
}
