/*
 * peercred: the kernel's credentials of the peer of a connected Unix socket, for guardd's control
 * server (src/control/peer-credentials.ts). One function, peerCredentials(fd) -> {pid, uid, gid}:
 *   Linux: getsockopt(SOL_SOCKET, SO_PEERCRED), credentials captured at connect();
 *   macOS: getpeereid() for uid/gid, LOCAL_PEERPID for the pid (-1 when unavailable).
 * Throws an Error with code "GUARD_PEERCRED_FAILED" (errno in message) when the kernel refuses.
 * Uses only node_api.h (N-API version 8), so one build loads in every Node major that has it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#if defined(__APPLE__)
#include <sys/un.h>
#endif

#define NAPI_VERSION 8
#include <node_api.h>

static napi_value throw_code(napi_env env, const char *msg) {
  napi_throw_error(env, "GUARD_PEERCRED_FAILED", msg);
  return NULL;
}

static napi_value set_int(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) != napi_ok) return NULL;
  if (napi_set_named_property(env, obj, key, n) != napi_ok) return NULL;
  return obj;
}

static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_code(env, "peerCredentials(fd): fd is required");
  int32_t fd;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0)
    return throw_code(env, "peerCredentials(fd): fd must be a non-negative integer");

  double pid, uid, gid;
  char msg[128];
#if defined(__linux__)
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || len != sizeof(cred)) {
    snprintf(msg, sizeof(msg), "getsockopt(SO_PEERCRED) failed: %s", strerror(errno));
    return throw_code(env, msg);
  }
  pid = cred.pid;
  uid = cred.uid;
  gid = cred.gid;
#elif defined(__APPLE__)
  uid_t u;
  gid_t g;
  if (getpeereid(fd, &u, &g) != 0) {
    snprintf(msg, sizeof(msg), "getpeereid failed: %s", strerror(errno));
    return throw_code(env, msg);
  }
  uid = u;
  gid = g;
  pid = -1;
#ifdef LOCAL_PEERPID
  pid_t p;
  socklen_t plen = sizeof(p);
  if (getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &p, &plen) == 0) pid = p;
#endif
#else
  (void)fd;
  (void)msg;
  pid = uid = gid = -1;
  return throw_code(env, "peer credentials are not supported on this platform");
#endif

  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (!set_int(env, obj, "pid", pid) || !set_int(env, obj, "uid", uid) || !set_int(env, obj, "gid", gid))
    return NULL;
  return obj;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "peerCredentials", NAPI_AUTO_LENGTH, peer_credentials, NULL, &fn) != napi_ok)
    return NULL;
  if (napi_set_named_property(env, exports, "peerCredentials", fn) != napi_ok) return NULL;
  return exports;
}
