/*
 * quickexit: ends guardd's process now, for src/common/quick-exit.ts. One function,
 * exitNow(code): _exit(code) — exit_group without the process's exit-time destructors.
 *
 * Why: libuv joins its thread pool's threads in a destructor at exit, so a process with a pool
 * thread stuck in a file system call — a user's FUSE daemon that never answers the stat guardd
 * made of their tree, a hung NFS server — never finished exiting after process.exit(): guardd's
 * stop hung until the FUSE daemon answered or systemd's stop timeout killed it (`guardd --local`
 * had no such backstop). _exit ends every thread at once (a thread waiting on FUSE or NFS is
 * woken by the kernel's kill), skipping only what exit-time destructors would do; guardd calls it
 * once everything it owns is stopped and closed.
 * Hand-written because Node has no _exit: process.exit() and process.reallyExit() both run the
 * destructors. Uses only node_api.h (N-API version 8), so one build loads in every Node major
 * that has it.
 */
#include <stdint.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

static napi_value exit_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t code = 1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= 1)
    (void)napi_get_value_int32(env, argv[0], &code);
  _exit(code & 0xff);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "exitNow", NAPI_AUTO_LENGTH, exit_now, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "exitNow", fn) != napi_ok) return NULL;
  return exports;
}
