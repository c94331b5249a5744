/*
 * sched: the EEVDF time slice of one of guardd's threads, for src/daemon/priority.ts.
 * setSlice(tid, ns) -> the slice the kernel now reports, in ns:
 *   sched_getattr(tid); a thread that is not SCHED_OTHER/SCHED_BATCH (the exec-events reader runs
 *   SCHED_FIFO) is left alone and 0 returned; otherwise sched_setattr with the same policy, nice and
 *   reset-on-fork flag and sched_runtime = ns (Linux >= 6.12 takes it as the thread's slice, clamped
 *   to 0.1..100 ms; 0 restores the default), then sched_getattr again: its sched_runtime is the
 *   slice, 0 on a kernel without custom slices (it ignores sched_runtime for fair tasks).
 * resetOnFork(tid) -> boolean: whether the thread's reset-on-fork flag is set (tid 0: the calling
 *   thread), i.e. whether a child it forks starts at SCHED_OTHER and nice 0 whatever the thread's
 *   own priority (native/procevents/boost.c sets it on guardd's JS thread).
 * Hand-written because Node has no sched_setattr and glibc < 2.41 has no wrapper: the calls go
 * through syscall(2) with this file's own copy of the kernel's struct (SCHED_ATTR_SIZE_VER0
 * layout), so no header of a newer glibc or kernel can conflict with it.
 * Throws an Error with code "GUARD_SCHED_FAILED" (errno in the message and an `errno` property)
 * when the kernel refuses (ESRCH: the thread is gone; EPERM: another user's thread), a TypeError
 * with code "GUARD_SCHED_BAD_ARGUMENT" when tid is not a positive int32 or ns not an integer in
 * 0..100000000.
 * Uses only node_api.h (N-API version 8), so one build loads in every Node major that has it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

/* struct sched_attr as of SCHED_ATTR_SIZE_VER0 (48 bytes), linux/sched/types.h. */
struct tg_sched_attr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

#define TG_SCHED_OTHER 0
#define TG_SCHED_BATCH 3
#define TG_SCHED_FLAG_RESET_ON_FORK 0x01
#define TG_SLICE_MAX_NS 100000000.0

static int tg_getattr(pid_t tid, struct tg_sched_attr *attr) {
  memset(attr, 0, sizeof(*attr));
  return (int)syscall(SYS_sched_getattr, tid, attr, (unsigned int)sizeof(*attr), 0U);
}

static napi_value throw_failed(napi_env env, const char *call, int32_t tid, int err) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s(%d) failed: %s (errno %d)", call, tid, strerror(err), err);
  napi_value code, text, error, errno_value;
  if (napi_create_string_utf8(env, "GUARD_SCHED_FAILED", NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text) != napi_ok ||
      napi_create_error(env, code, text, &error) != napi_ok ||
      napi_create_int32(env, err, &errno_value) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok) {
    napi_throw_error(env, "GUARD_SCHED_FAILED", msg);
    return NULL;
  }
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_bad_argument(napi_env env, const char *msg) {
  napi_throw_type_error(env, "GUARD_SCHED_BAD_ARGUMENT", msg);
  return NULL;
}

/* `value` if it is a number holding an integer in [min, max], else NAN. */
static double integer_arg(napi_env env, napi_value value, double min, double max) {
  napi_valuetype type;
  double d;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) return NAN;
  if (napi_get_value_double(env, value, &d) != napi_ok) return NAN;
  if (!(d >= min && d <= max) || d != (double)(int64_t)d) return NAN;
  return d;
}

static napi_value set_slice(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) return throw_bad_argument(env, "setSlice(tid, ns): tid and ns are required");
  double tid_d = integer_arg(env, argv[0], 1, INT32_MAX);
  if (isnan(tid_d)) return throw_bad_argument(env, "setSlice(tid, ns): tid must be a positive 32-bit integer");
  double ns_d = integer_arg(env, argv[1], 0, TG_SLICE_MAX_NS);
  if (isnan(ns_d)) return throw_bad_argument(env, "setSlice(tid, ns): ns must be an integer in 0..100000000");
  pid_t tid = (pid_t)tid_d;

  struct tg_sched_attr attr;
  if (tg_getattr(tid, &attr) != 0) return throw_failed(env, "sched_getattr", tid, errno);
  double slice = 0;
  if (attr.sched_policy == TG_SCHED_OTHER || attr.sched_policy == TG_SCHED_BATCH) {
    struct tg_sched_attr want;
    memset(&want, 0, sizeof(want));
    want.size = sizeof(want);
    want.sched_policy = attr.sched_policy;
    /* Keeping reset-on-fork as it is: clearing it would need CAP_SYS_NICE. */
    want.sched_flags = attr.sched_flags & TG_SCHED_FLAG_RESET_ON_FORK;
    want.sched_nice = attr.sched_nice;
    want.sched_runtime = (uint64_t)ns_d;
    if (syscall(SYS_sched_setattr, tid, &want, 0U) != 0) return throw_failed(env, "sched_setattr", tid, errno);
    if (tg_getattr(tid, &attr) != 0) return throw_failed(env, "sched_getattr", tid, errno);
    /* The policy as set (another setter may have raced in): a slice only means one for a fair task. */
    if (attr.sched_policy == TG_SCHED_OTHER || attr.sched_policy == TG_SCHED_BATCH) slice = (double)attr.sched_runtime;
  }
  napi_value result;
  if (napi_create_double(env, slice, &result) != napi_ok) return NULL;
  return result;
}

static napi_value reset_on_fork(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1) return throw_bad_argument(env, "resetOnFork(tid): tid is required");
  double tid_d = integer_arg(env, argv[0], 0, INT32_MAX);
  if (isnan(tid_d)) return throw_bad_argument(env, "resetOnFork(tid): tid must be 0 or a positive 32-bit integer");
  struct tg_sched_attr attr;
  if (tg_getattr((pid_t)tid_d, &attr) != 0) return throw_failed(env, "sched_getattr", (int32_t)tid_d, errno);
  napi_value result;
  if (napi_get_boolean(env, (attr.sched_flags & TG_SCHED_FLAG_RESET_ON_FORK) != 0, &result) != napi_ok) return NULL;
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "setSlice", NAPI_AUTO_LENGTH, set_slice, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "setSlice", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "resetOnFork", NAPI_AUTO_LENGTH, reset_on_fork, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "resetOnFork", fn) != napi_ok) return NULL;
  return exports;
}
