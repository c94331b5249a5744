/*
 * procevents: Linux exec events for guardd's exec-events process source
 * (src/sensors/process-sources/exec-events-source.ts), from the kernel's process events connector
 * (netlink NETLINK_CONNECTOR, group CN_IDX_PROC; the socket needs CAP_NET_ADMIN).
 *
 * Owns: the connector socket, one reader thread, and a bounded queue of exec events handed to JS in
 * batches through a napi_threadsafe_function, so the event loop never blocks on the socket. For
 * every PROC_EVENT_EXEC the reader thread reads the process's /proc facts (stat, exe, cmdline, the
 * Uid line of status) right away, microseconds after the exec: a program that lives a few
 * milliseconds has usually exited before the event loop gets to it, and its snapshot is then the
 * only record of what ran. A classic BPF filter on the socket keeps only exec events (forks and
 * exits are most of the connector's traffic and guardd does not use them), so the kernel buffer
 * fills more slowly. When it does fill, recv fails with ENOBUFS: events were lost; the drop is
 * counted (`kernelDrops`) and reported with the next batch, and JS resyncs with a /proc scan.
 * Events beyond the queue's bounds are dropped and counted the same way (`queueDrops`).
 *
 * Why hand-written: Node has no netlink sockets. The npm `netlink` package (0.3.0) is a C++
 * node-addon-api binding for rtnetlink/generic netlink requests on the main loop: it has no process
 * connector support, it cannot read /proc from a thread at the moment of the exec (what makes short
 * programs visible), and it depends on an unpinned `node-addon-api: *` fetched at install. This
 * file is one C source built offline by scripts/build-native.js like native/peercred.
 *
 * API (N-API version 8, so one build loads in every Node major that has it):
 *   open(onBatch, { rcvbuf, boost }) -> handle
 *       onBatch(events, counters) runs on the JS thread; events: [{ pid, ts, stat, exe, cmdline,
 *       truncated, uid }] (stat/exe/uid null when the process was gone before the reader thread
 *       read it; cmdline a Buffer); counters: what counters(handle) returns, passed with the first
 *       batch and with each batch after kernelDrops, queueDrops or readerErrno changed, undefined
 *       otherwise (building it for every batch was a tenth of guardd's event-loop time per exec).
 *       Throws an Error with code GUARD_PROCEVENTS_OPEN_FAILED (errno name in the message: EPERM
 *       without CAP_NET_ADMIN, EPROTONOSUPPORT without the connector).
 *   counters(handle) -> { received, kernelDrops, queueDrops, rcvbuf, readerErrno, walks,
 *       walkDrops, identities } (also passed to onBatch); readerErrno is non-zero once the reader
 *       stopped on a socket error: no more events will come, and the caller must fall back (guardd
 *       polls /proc). walks/walkDrops/identities: the walker's (below).
 *   setWalks(handle, on): whether the reader asks walker.c (a second thread) for the script walks
 *       of interpreters' execs (off at open: guardd turns it on while a rule needs script packages).
 *   takeWalk(handle, pid, ts) -> [{ path, mode, uid, gid, dev, ino, link } | { path, code }] | null:
 *       the script walk of that exec read ahead by the walker, taken once; null when there is none
 *       (yet).
 *   setIdentities(handle, on): whether the reader asks the walker for the identity of every
 *       exec's executable (off at open: guardd turns it on while a rule needs hashes or markers).
 *   takeIdentity(handle, pid, ts) -> [dev, ino, size, mtimeMs, ctimeMs, mount] | null: that identity
 *       (walker.c says how it is read and when there is none), taken once.
 *   boost (open's option, default false): raise the calling (JS) thread to real-time priority while
 *       it handles each batch (boost.c says why and its bounds); endBoost(handle) tells the batches
 *       delivered so far are handled. counters() then also has boost (on or not), boostOff (why
 *       not), boosts, boostOverBudget, boostOverruns, boostErrors.
 *   close(handle) -> boolean: unsubscribes, stops and joins the threads, closes the socket, true.
 *       false when the reader or the walker did not stop within CLOSE_JOIN_LIMIT_S (left behind,
 *       see js_close; a walker left behind does not keep the socket open).
 *       Twice is safe; no onBatch call happens after it returns.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <unistd.h>

#include "boost.h"
#include "walker.h"

/* The same cap as the procfs source (CMDLINE_MAX_BYTES in proc-files.ts): argv beyond it is cut. */
#define CMDLINE_MAX 32768
/* One /proc/<pid>/stat line, the same cap as the procfs source (readStat in proc-files.ts). */
#define STAT_MAX 4096
/* Status up to the Uid line (the 9th line or so; the whole file is ~1.5 KiB). */
#define STATUS_MAX 2048
#define EXE_MAX 4096
/* Events waiting for the JS thread at most: a stalled event loop must not grow memory without
 * bound. 8192 events ≈ several seconds of a build's execs; 16 MiB bounds the argv they carry. */
#define QUEUE_MAX_EVENTS 8192
#define QUEUE_MAX_BYTES (16u * 1024u * 1024u)
/* Scheduling of the reader thread (root only; best effort, in this order): a program that lives
 * 5 ms must be read before it exits even when every core is busy, so the thread runs SCHED_FIFO and
 * preempts ordinary tasks the moment an event arrives: at READER_RT_PRIORITY, one above the JS
 * thread's while boost.c raises it (the reader reads the next exec even then), else at 1. It
 * sleeps in poll() between events and does ~4 small /proc reads per exec (≈ 40 µs: 4 % of a core
 * at 1,000 execs/s); the kernel's real-time throttling (sched_rt_runtime_us, 95 % by default)
 * bounds it even if it spun. Without the privilege it falls back to nice READER_NICE. */
#define READER_RT_PRIORITY 2
/* During a long burst, JS is woken at least every this many events (~a few ms of reading). */
#define WAKE_EVERY 256
#define READER_NICE (-10)
/* Longest close() waits for the reader thread (s). */
#define CLOSE_JOIN_LIMIT_S 2

typedef struct event {
  struct event *next;
  int32_t pid;
  uint64_t ts;
  int32_t uid; /* -1: unknown */
  int truncated;
  int stat_len, exe_len, cmd_len; /* -1: unreadable */
  char *stat, *exe, *cmd;
  size_t bytes;
  char data[];
} event_t;

typedef struct {
  int sock, stopfd;
  pthread_t thread;
  int thread_started;
  napi_threadsafe_function tsfn;
  pthread_mutex_t mu;
  event_t *head, *tail;
  size_t count, bytes;
  atomic_int wake_pending;
  atomic_int closed;
  /* Two owners: the threadsafe function and the JS handle; the last one to finish frees. */
  atomic_int refs;
  /* Non-zero once the reader stopped without close(): the errno that stopped it. */
  atomic_int reader_errno;
  atomic_ullong received, kernel_drops, queue_drops;
  int rcvbuf;
  /* Script walks read ahead for interpreter execs (walker.c); NULL when it could not start. */
  walker_t *walker;
  /* Whether to ask it for walks (setWalks: only while a rule needs script packages) and for
   * executables' identities (setIdentities: only while a rule needs hashes or markers). */
  atomic_int walks_on, idents_on;
  /* The JS thread raised while it handles a batch (boost.c); NULL unless open() asked for it. */
  boost_t *boost;
  /* The boost generation the last batch was delivered with (JS thread only). */
  uint64_t boost_delivered;
  /* What the last batch's counters said (JS thread only): a batch carries counters when these changed. */
  int delivered;
  unsigned long long told_kernel_drops, told_queue_drops;
  int told_errno;
} state_t;

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static napi_value counters_of(napi_env env, state_t *s) {
  napi_value o;
  napi_create_object(env, &o);
  set_num(env, o, "received", (double)atomic_load(&s->received));
  set_num(env, o, "kernelDrops", (double)atomic_load(&s->kernel_drops));
  set_num(env, o, "queueDrops", (double)atomic_load(&s->queue_drops));
  set_num(env, o, "rcvbuf", s->rcvbuf);
  set_num(env, o, "readerErrno", atomic_load(&s->reader_errno));
  uint64_t walks, walk_drops, identities;
  walker_counters(s->walker, &walks, &walk_drops, &identities);
  set_num(env, o, "walks", (double)walks);
  set_num(env, o, "walkDrops", (double)walk_drops);
  set_num(env, o, "identities", (double)identities);
  boost_counters_t bc;
  boost_counters(s->boost, &bc);
  napi_value v;
  napi_get_boolean(env, bc.on != 0, &v);
  napi_set_named_property(env, o, "boost", v);
  if (!bc.on && bc.off != NULL) {
    napi_create_string_utf8(env, bc.off, NAPI_AUTO_LENGTH, &v);
    napi_set_named_property(env, o, "boostOff", v);
  }
  set_num(env, o, "boosts", (double)bc.raised);
  set_num(env, o, "boostOverBudget", (double)bc.over_budget);
  set_num(env, o, "boostOverruns", (double)bc.overruns);
  set_num(env, o, "boostErrors", (double)bc.errors);
  return o;
}

/* Reads up to max bytes of path into buf; returns the length or -1. *more = 1 when cut. */
static int read_file(const char *path, char *buf, int max, int *more) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  int n = 0;
  for (;;) {
    ssize_t r = read(fd, buf + n, (size_t)(max - n));
    if (r < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return -1;
    }
    if (r == 0) break;
    n += (int)r;
    if (n == max) break;
  }
  if (more) {
    char probe;
    *more = n == max && read(fd, &probe, 1) == 1;
  }
  close(fd);
  return n;
}

static int32_t parse_uid(const char *status, int len) {
  for (int i = 0; i + 5 <= len; i++) {
    if ((i == 0 || status[i - 1] == '\n') && memcmp(status + i, "Uid:", 4) == 0) {
      long v = 0;
      int j = i + 4, digits = 0;
      while (j < len && (status[j] == ' ' || status[j] == '\t')) j++;
      while (j < len && status[j] >= '0' && status[j] <= '9' && digits < 10) v = v * 10 + (status[j++] - '0'), digits++;
      return digits > 0 && v <= INT32_MAX ? (int32_t)v : -1;
    }
  }
  return -1;
}

/* The facts of one exec'd process, read now; NULL only when out of memory. */
static event_t *snapshot(int32_t pid, uint64_t ts) {
  static __thread char stat[STAT_MAX], exe[EXE_MAX], status[STATUS_MAX], cmd[CMDLINE_MAX];
  char path[64];
  int more = 0;
  snprintf(path, sizeof(path), "/proc/%d/stat", pid);
  int stat_len = read_file(path, stat, STAT_MAX, NULL);
  /* Reaped already (a short program often is by the time its event is read): the other files are
   * gone too, and trying each costs a failed path lookup. */
  int gone = stat_len < 0 && (errno == ENOENT || errno == ESRCH);
  ssize_t exe_len = -1;
  int cmd_len = -1, status_len = -1;
  if (!gone) {
    snprintf(path, sizeof(path), "/proc/%d/exe", pid);
    exe_len = readlink(path, exe, EXE_MAX);
    if (exe_len >= EXE_MAX) exe_len = -1;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
    cmd_len = read_file(path, cmd, CMDLINE_MAX, &more);
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    status_len = read_file(path, status, STATUS_MAX, NULL);
  }
  size_t extra = (stat_len > 0 ? (size_t)stat_len : 0) + (exe_len > 0 ? (size_t)exe_len : 0) +
                 (cmd_len > 0 ? (size_t)cmd_len : 0);
  event_t *e = malloc(sizeof(event_t) + extra);
  if (e == NULL) return NULL;
  e->next = NULL;
  e->pid = pid;
  e->ts = ts;
  e->uid = status_len > 0 ? parse_uid(status, status_len) : -1;
  e->truncated = more;
  e->bytes = sizeof(event_t) + extra;
  char *p = e->data;
  e->stat_len = stat_len;
  e->stat = p;
  if (stat_len > 0) memcpy(p, stat, (size_t)stat_len), p += stat_len;
  e->exe_len = (int)exe_len;
  e->exe = p;
  if (exe_len > 0) memcpy(p, exe, (size_t)exe_len), p += exe_len;
  e->cmd_len = cmd_len;
  e->cmd = p;
  if (cmd_len > 0) memcpy(p, cmd, (size_t)cmd_len);
  return e;
}

/* Whether the exec is of an interpreter (walker_is_interpreter on the exe's basename or comm). */
static int is_interpreter_exec(const event_t *e) {
  int interp = 0;
  if (e->exe_len > 0) {
    const char *exe = e->exe, *base = exe;
    int len = e->exe_len;
    if (len > 10 && memcmp(exe + len - 10, " (deleted)", 10) == 0) len -= 10;
    for (int i = 0; i < len; i++)
      if (exe[i] == '/') base = exe + i + 1;
    interp = walker_is_interpreter(base, (int)(exe + len - base));
  }
  if (!interp && e->stat_len > 0) {
    const char *open = memchr(e->stat, '(', (size_t)e->stat_len), *close = NULL;
    for (int i = e->stat_len - 1; i >= 0 && close == NULL; i--)
      if (e->stat[i] == ')') close = e->stat + i;
    if (open != NULL && close != NULL && close > open) interp = walker_is_interpreter(open + 1, (int)(close - open - 1));
  }
  return interp;
}

/* Asks the walker for what it reads ahead of JS: the script walks of an interpreter's exec (exe
 * basename or comm) while setWalks is on, the identity of the executable while setIdentities is. */
static void ask_walker(state_t *s, const event_t *e) {
  if (s->walker == NULL) return;
  int ident = atomic_load(&s->idents_on) && e->stat_len > 0 && e->exe_len > 0;
  int walk = e->cmd_len > 0 && atomic_load(&s->walks_on) && is_interpreter_exec(e);
  if (walk || ident)
    walker_request(s->walker, e->pid, e->ts, walk ? e->cmd : NULL, walk ? e->cmd_len : 0, ident ? e->stat : NULL,
                   ident ? e->stat_len : 0);
}

/* Hands what is queued to JS: raises the JS thread first (boost.c), so it takes the batch at once. */
static void wake(state_t *s) {
  boost_raise(s->boost);
  int expected = 0;
  if (atomic_compare_exchange_strong(&s->wake_pending, &expected, 1)) {
    if (napi_call_threadsafe_function(s->tsfn, NULL, napi_tsfn_nonblocking) != napi_ok)
      atomic_store(&s->wake_pending, 0);
  }
}

static void enqueue(state_t *s, event_t *e) {
  pthread_mutex_lock(&s->mu);
  if (s->count >= QUEUE_MAX_EVENTS || s->bytes + e->bytes > QUEUE_MAX_BYTES) {
    pthread_mutex_unlock(&s->mu);
    free(e);
    atomic_fetch_add(&s->queue_drops, 1);
    return;
  }
  if (s->tail) s->tail->next = e;
  else s->head = e;
  s->tail = e;
  s->count++;
  s->bytes += e->bytes;
  pthread_mutex_unlock(&s->mu);
}

static void *reader(void *arg) {
  state_t *s = arg;
  /* Named so `top -H` / /proc/<pid>/task/<tid>/comm tell guardd's threads apart. */
  (void)pthread_setname_np(pthread_self(), "tg-procevents");
  int rt = 0;
  for (int prio = READER_RT_PRIORITY; prio >= 1 && rt == 0; prio--) {
    struct sched_param sp = {.sched_priority = prio};
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0) rt = prio;
  }
  if (rt == 0) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), READER_NICE);
  /* One connector message is ~100 bytes; a page holds any datagram the kernel sends here. */
  char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
  struct pollfd fds[2] = {{.fd = s->sock, .events = POLLIN}, {.fd = s->stopfd, .events = POLLIN}};
  int err = 0;
  while (!atomic_load(&s->closed)) {
    int r = poll(fds, 2, -1);
    if (r < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    if (fds[1].revents) break;
    if (!(fds[0].revents & POLLIN)) {
      if (fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
        /* A pending ENOBUFS is reported as POLLERR: the recv below collects it. */
        if (!(fds[0].revents & POLLERR)) {
          err = EPIPE;
          break;
        }
      } else continue;
    }
    int got = 0;
    /* Drain what is queued in the socket, waking JS once per burst (and every WAKE_EVERY events
     * of a long one, so a flood does not hold events back until it ends). */
    for (;;) {
      ssize_t n = recv(s->sock, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == ENOBUFS) {
          atomic_fetch_add(&s->kernel_drops, 1);
          got++;
          continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
        break;
      }
      for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_ERROR || h->nlmsg_type == NLMSG_NOOP) continue;
        struct cn_msg *cn = NLMSG_DATA(h);
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(struct proc_event))) continue;
        if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC) continue;
        struct proc_event *ev = (struct proc_event *)cn->data;
        if (ev->what != PROC_EVENT_EXEC) continue;
        atomic_fetch_add(&s->received, 1);
        event_t *e = snapshot(ev->event_data.exec.process_tgid, ev->timestamp_ns);
        if (e == NULL) atomic_fetch_add(&s->queue_drops, 1);
        else {
          ask_walker(s, e);
          enqueue(s, e);
        }
        if (++got % WAKE_EVERY == 0) wake(s);
      }
    }
    if (got) wake(s);
    if (err) break;
  }
  if (!atomic_load(&s->closed)) {
    /* Stopped on its own (the socket failed): JS learns it from the counters and polls instead. */
    atomic_store(&s->reader_errno, err ? err : EIO);
    wake(s);
  }
  return NULL;
}

/* Runs on the JS thread: hands everything queued to onBatch as one array. */
static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)data;
  state_t *s = context;
  atomic_store(&s->wake_pending, 0);
  pthread_mutex_lock(&s->mu);
  event_t *e = s->head;
  s->head = s->tail = NULL;
  s->count = 0;
  s->bytes = 0;
  pthread_mutex_unlock(&s->mu);
  s->boost_delivered = boost_generation(s->boost);
  if (env == NULL || atomic_load(&s->closed)) {
    while (e) {
      event_t *next = e->next;
      free(e);
      e = next;
    }
    return;
  }
  napi_value arr, undef;
  napi_create_array(env, &arr);
  napi_get_undefined(env, &undef);
  uint32_t i = 0;
  while (e) {
    napi_value o, v;
    napi_create_object(env, &o);
    set_num(env, o, "pid", e->pid);
    set_num(env, o, "ts", (double)e->ts);
    if (e->uid >= 0) set_num(env, o, "uid", e->uid);
    else napi_set_named_property(env, o, "uid", (napi_get_null(env, &v), v));
    if (e->stat_len > 0) napi_create_string_utf8(env, e->stat, (size_t)e->stat_len, &v);
    else napi_get_null(env, &v);
    napi_set_named_property(env, o, "stat", v);
    if (e->exe_len > 0) napi_create_string_utf8(env, e->exe, (size_t)e->exe_len, &v);
    else napi_get_null(env, &v);
    napi_set_named_property(env, o, "exe", v);
    if (e->cmd_len >= 0) napi_create_buffer_copy(env, (size_t)e->cmd_len, e->cmd, NULL, &v);
    else napi_get_null(env, &v);
    napi_set_named_property(env, o, "cmdline", v);
    napi_get_boolean(env, e->truncated != 0, &v);
    napi_set_named_property(env, o, "truncated", v);
    napi_set_element(env, arr, i++, o);
    event_t *next = e->next;
    free(e);
    e = next;
  }
  unsigned long long kd = atomic_load(&s->kernel_drops), qd = atomic_load(&s->queue_drops);
  int rerr = atomic_load(&s->reader_errno);
  napi_value args[2] = {arr, undef};
  if (!s->delivered || kd != s->told_kernel_drops || qd != s->told_queue_drops || rerr != s->told_errno) {
    s->delivered = 1;
    s->told_kernel_drops = kd;
    s->told_queue_drops = qd;
    s->told_errno = rerr;
    args[1] = counters_of(env, s);
  }
  napi_call_function(env, undef, cb, 2, args, NULL);
}

static void unref_state(state_t *s) {
  if (atomic_fetch_sub(&s->refs, 1) != 1) return;
  event_t *e = s->head;
  while (e) {
    event_t *next = e->next;
    free(e);
    e = next;
  }
  pthread_mutex_destroy(&s->mu);
  boost_free(s->boost);
  free(s);
}

static void tsfn_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  unref_state(data);
}

/* The handle was collected: if it was never closed, the reader may still run and the state is
 * left allocated (a leak, never a use after free, also at process exit). */
static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  state_t *s = data;
  if (atomic_load(&s->closed)) unref_state(s);
}

/* Throws Error{code: GUARD_PROCEVENTS_OPEN_FAILED, errno}: JS tells EPERM (no CAP_NET_ADMIN) apart. */
static napi_value throw_open(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s failed: %s", what, strerror(err));
  napi_value code, text, error;
  napi_create_string_utf8(env, "GUARD_PROCEVENTS_OPEN_FAILED", NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, code, text, &error);
  set_num(env, error, "errno", err);
  napi_throw(env, error);
  return NULL;
}

static int send_mcast(int sock, enum proc_cn_mcast_op op) {
  struct {
    struct nlmsghdr h;
    struct {
      struct cn_msg cn;
      enum proc_cn_mcast_op op;
    } __attribute__((packed)) body;
  } __attribute__((aligned(NLMSG_ALIGNTO))) msg;
  memset(&msg, 0, sizeof(msg));
  msg.h.nlmsg_len = sizeof(msg);
  msg.h.nlmsg_pid = 0;
  msg.h.nlmsg_type = NLMSG_DONE;
  msg.body.cn.id.idx = CN_IDX_PROC;
  msg.body.cn.id.val = CN_VAL_PROC;
  msg.body.cn.len = sizeof(enum proc_cn_mcast_op);
  msg.body.op = op;
  return send(sock, &msg, sizeof(msg), 0) < 0 ? -1 : 0;
}

/* Keeps exec events only: what = PROC_EVENT_EXEC (BPF loads words big-endian, hence htonl). */
static void attach_filter(int sock) {
  const uint32_t what_off = NLMSG_LENGTH(0) + offsetof(struct cn_msg, data) + offsetof(struct proc_event, what);
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, what_off),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __builtin_bswap32(PROC_EVENT_EXEC), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  struct sock_fprog prog = {.len = sizeof(code) / sizeof(code[0]), .filter = code};
  /* Best effort: without the filter every event still arrives and the reader skips non-exec ones. */
  (void)setsockopt(sock, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog));
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t;
  if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_function) {
    napi_throw_type_error(env, "GUARD_PROCEVENTS_BAD_ARGUMENT", "open(onBatch, options): onBatch must be a function");
    return NULL;
  }
  int32_t rcvbuf = 8 * 1024 * 1024;
  bool boost = false;
  if (argc >= 2 && napi_typeof(env, argv[1], &t) == napi_ok && t == napi_object) {
    napi_value v;
    bool has = false;
    if (napi_has_named_property(env, argv[1], "rcvbuf", &has) == napi_ok && has &&
        napi_get_named_property(env, argv[1], "rcvbuf", &v) == napi_ok)
      napi_get_value_int32(env, v, &rcvbuf);
    if (napi_has_named_property(env, argv[1], "boost", &has) == napi_ok && has &&
        napi_get_named_property(env, argv[1], "boost", &v) == napi_ok)
      napi_get_value_bool(env, v, &boost);
  }
  int sock = socket(PF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (sock < 0) return throw_open(env, "socket(NETLINK_CONNECTOR)", errno);
  /* SO_RCVBUFFORCE (root) passes rmem_max; SO_RCVBUF is the capped fallback. */
  if (setsockopt(sock, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf)) != 0)
    (void)setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  int effective = 0;
  socklen_t elen = sizeof(effective);
  getsockopt(sock, SOL_SOCKET, SO_RCVBUF, &effective, &elen);
  attach_filter(sock);
  struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
  if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int err = errno;
    close(sock);
    return throw_open(env, "bind(CN_IDX_PROC)", err);
  }
  if (send_mcast(sock, PROC_CN_MCAST_LISTEN) != 0) {
    int err = errno;
    close(sock);
    return throw_open(env, "send(PROC_CN_MCAST_LISTEN)", err);
  }
  int stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stopfd < 0) {
    int err = errno;
    close(sock);
    return throw_open(env, "eventfd", err);
  }
  state_t *s = calloc(1, sizeof(state_t));
  if (s == NULL) {
    close(sock);
    close(stopfd);
    return throw_open(env, "calloc", ENOMEM);
  }
  s->sock = sock;
  s->stopfd = stopfd;
  s->rcvbuf = effective;
  /* For the calling thread, the JS thread; none: batches are handed over at its own priority. */
  s->boost = boost ? boost_new() : NULL;
  atomic_store(&s->refs, 2);
  pthread_mutex_init(&s->mu, NULL);
  napi_value name;
  napi_create_string_utf8(env, "procevents", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, s, tsfn_finalize, s, call_js, &s->tsfn) !=
      napi_ok) {
    close(sock);
    close(stopfd);
    pthread_mutex_destroy(&s->mu);
    boost_free(s->boost);
    free(s);
    return throw_open(env, "napi_create_threadsafe_function", EINVAL);
  }
  /* The reader never keeps the process alive by itself: guardd's own timers and servers do. */
  napi_unref_threadsafe_function(env, s->tsfn);
  /* Started before the reader, which asks it from the first event; none: no read-ahead. */
  s->walker = walker_start();
  if (pthread_create(&s->thread, NULL, reader, s) != 0) {
    int err = errno;
    (void)walker_stop(s->walker, NULL); /* never asked anything: it only has to wake and return */
    s->walker = NULL;
    close(sock);
    close(stopfd);
    s->sock = s->stopfd = -1;
    atomic_store(&s->closed, 1);
    atomic_store(&s->refs, 1);
    napi_release_threadsafe_function(s->tsfn, napi_tsfn_abort);
    return throw_open(env, "pthread_create", err);
  }
  s->thread_started = 1;
  napi_value ext;
  napi_create_external(env, s, handle_finalize, NULL, &ext);
  return ext;
}

static state_t *handle_of(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *p = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "GUARD_PROCEVENTS_BAD_ARGUMENT", "expected a handle from open()");
    return NULL;
  }
  return p;
}

static napi_value js_counters(napi_env env, napi_callback_info info) {
  state_t *s = handle_of(env, info);
  return s ? counters_of(env, s) : NULL;
}

typedef napi_value (*take_fn)(napi_env env, walker_t *w, int32_t pid, double ts);

/* Calls `take` with the (handle, pid, ts) arguments; throws with `usage` on bad arguments. */
static napi_value take_from_walker(napi_env env, napi_callback_info info, take_fn take, const char *usage) {
  size_t argc = 3;
  napi_value argv[3];
  void *p = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t pid;
  double ts;
  if (argc < 3 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL ||
      napi_get_value_int32(env, argv[1], &pid) != napi_ok || napi_get_value_double(env, argv[2], &ts) != napi_ok) {
    napi_throw_type_error(env, "GUARD_PROCEVENTS_BAD_ARGUMENT", usage);
    return NULL;
  }
  state_t *s = p;
  return take(env, atomic_load(&s->closed) ? NULL : s->walker, pid, ts);
}

/* takeWalk(handle, pid, ts): the walker's answers for that exec, or null (walker.h). */
static napi_value js_take_walk(napi_env env, napi_callback_info info) {
  return take_from_walker(env, info, walker_take, "takeWalk(handle, pid, ts)");
}

/* takeIdentity(handle, pid, ts): the identity of that exec's executable read by the walker. */
static napi_value js_take_identity(napi_env env, napi_callback_info info) {
  return take_from_walker(env, info, walker_take_identity, "takeIdentity(handle, pid, ts)");
}

/* Sets one of the handle's switches from (handle, on); throws with `usage` on bad arguments. */
static napi_value set_switch(napi_env env, napi_callback_info info, size_t offset, const char *usage) {
  size_t argc = 2;
  napi_value argv[2];
  void *p = NULL;
  bool on;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_external(env, argv[0], &p) != napi_ok || p == NULL ||
      napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, "GUARD_PROCEVENTS_BAD_ARGUMENT", usage);
    return NULL;
  }
  atomic_store((atomic_int *)((char *)p + offset), on ? 1 : 0);
  return NULL;
}

/* endBoost(handle): the batches delivered so far are handled: the JS thread back to its priority. */
static napi_value js_end_boost(napi_env env, napi_callback_info info) {
  state_t *s = handle_of(env, info);
  if (s != NULL) boost_end(s->boost, s->boost_delivered);
  return NULL;
}

/* setWalks(handle, on): whether the reader asks the walker for interpreters' script walks. */
static napi_value js_set_walks(napi_env env, napi_callback_info info) {
  return set_switch(env, info, offsetof(state_t, walks_on), "setWalks(handle, on)");
}

/* setIdentities(handle, on): whether the reader asks the walker for every exec's identity. */
static napi_value js_set_identities(napi_env env, napi_callback_info info) {
  return set_switch(env, info, offsetof(state_t, idents_on), "setIdentities(handle, on)");
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  state_t *s = handle_of(env, info);
  if (s == NULL) return NULL;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&s->closed, &expected, 1)) return NULL;
  int walker_left = 0;
  /* First: whatever happens to the threads below, the JS thread is not left raised. */
  boost_stop(s->boost);
  uint64_t one = 1;
  (void)!write(s->stopfd, &one, sizeof(one));
  if (s->thread_started) {
    /* The reader's /proc reads take the target's locks (cmdline: its memory-map lock; the kernel
     * reads argv from anonymous memory only, so a file mapped over argv cannot stall it since
     * 4.17, CVE-2018-1120): whatever holds it up, the JS thread must not wait for ever. Left
     * behind, the reader keeps its socket, eventfd and state (never freed; its wake-ups are
     * dropped since `closed` is set), and close() returns false so guardd logs it. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += CLOSE_JOIN_LIMIT_S;
    if (pthread_timedjoin_np(s->thread, NULL, &until) != 0) {
      napi_value no;
      napi_get_boolean(env, false, &no);
      return no;
    }
    /* The reader is gone, so nothing asks the walker any more; a walker inside a stalled walk is
     * left behind the same way (with its own memory: `closed` keeps takeWalk away from it). It
     * uses nothing below, so the socket, eventfd and threadsafe function are let go all the same
     * (left open, the socket would still be subscribed and collect every exec in its buffer). */
    walker_left = walker_stop(s->walker, &until) != 0;
    s->walker = NULL;
  }
  (void)send_mcast(s->sock, PROC_CN_MCAST_IGNORE);
  close(s->sock);
  close(s->stopfd);
  s->sock = s->stopfd = -1;
  /* Queued calls still run call_js, which sees `closed` and frees instead of calling JS. */
  napi_release_threadsafe_function(s->tsfn, napi_tsfn_release);
  napi_value done;
  napi_get_boolean(env, !walker_left, &done);
  return done;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, js_counters, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"takeWalk", NULL, js_take_walk, NULL, NULL, NULL, napi_default, NULL},
      {"setWalks", NULL, js_set_walks, NULL, NULL, NULL, napi_default, NULL},
      {"takeIdentity", NULL, js_take_identity, NULL, NULL, NULL, napi_default, NULL},
      {"setIdentities", NULL, js_set_identities, NULL, NULL, NULL, napi_default, NULL},
      {"endBoost", NULL, js_end_boost, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
