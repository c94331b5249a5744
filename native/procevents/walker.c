/*
 * walker: the script walks of interpreter execs, read ahead of the JS thread, for guardd's script
 * package resolver (src/sensors/script-package.ts, `walk`).
 *
 * Owns: one thread (tg-walker) and two small rings. For an exec of an interpreter (node, python…:
 * walker_is_interpreter, the same names as INTERPRETER in script-package.ts) the reader thread
 * hands over the argv; the walker takes the first arguments that may be the script (at most
 * MAX_CANDIDATES of the first SCAN_ARGS, not options), makes each absolute with the process's
 * working directory, and lstats every prefix of it from "/" (reading the first symlink met, and
 * stopping after it, after an error or after anything that is not a directory: the steps the
 * resolver asks native/pathwalk for, with the same answers). The answers wait in a ring until the
 * JS thread takes them for that (pid, exec timestamp) when it resolves the process's script. Why:
 * asking the libuv pool for that walk costs two thread hand-overs after the event reached JS, and
 * on a busy machine each hand-over waits milliseconds for a core (the tail of the time to kill a
 * banned script); read here, right after the exec, the answers are usually there when JS looks.
 *
 * The thread runs at the reader's real-time priority (SCHED_FIFO 1; without the privilege it keeps
 * guardd's nice): woken by the reader, it must walk before the event loop gets to the process,
 * which it does in tens of microseconds. Its work per request is bounded (MAX_ANSWERS lstats, three
 * readlinks), it sleeps when a call waits, and its CPU has a budget (CPU_RATE_NS): past it
 * requests are dropped, as when its queue is full.
 *
 * Never in anyone's way: the reader never waits for the walker (a full queue drops the request,
 * counted), JS never waits for it (not done yet: the resolver walks through the pool as before,
 * under its own deadline), and only this thread touches the user's paths, so a stalled mount
 * (FUSE, NFS) pins it alone; its queue then fills and requests are dropped until it returns.
 * Answers are facts of the moment after the exec, like the pool's a little later; the resolver
 * applies the same checks to both. Paths that are not already in normal form (".", "..", "//",
 * a trailing "/") are left to the resolver, which normalises them itself, and so are paths that
 * are not UTF-8 (`utf8_ok`: JS would file the answers under another name).
 *
 * The identity of an exec's executable (walker_take_identity), asked for every exec while a rule
 * needs hashes or content markers: the JS thread answers those from its caches, keyed by that
 * identity, without opening the file (three trips through the libuv pool per exec otherwise). It
 * is a statx of /proc/<pid>/exe with AT_STATX_DONT_SYNC (a FUSE or NFS file's cached attributes,
 * no request to its server), made here because following the link may still wait on a network
 * file system (NFS revalidates the dentry it jumps to) and only this thread may wait. The exec is
 * the one asked about only if the process's stat then still shows its start time and program
 * image as the reader read them right after the exec (`exec_key`): a process that exec'd again
 * in between gets no identity (its next exec is reported on its own).
 *
 * The lstat step and the errno names are those of native/pathwalk/pathwalk.c (`execute`,
 * `errno_code`): each addon is built from its own directory alone, so they are written in both;
 * test/sensors/process/exec-walks.test.ts checks the answers are equal.
 */
#define _GNU_SOURCE
#include "walker.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U
#endif

/* Requests waiting for the walker at most (a burst of execs; beyond it: dropped). */
#define QUEUE_MAX 64
/* Identities kept for JS to take at most (the oldest is overwritten). */
#define IDENTS_MAX 256
/* A stat line (procfs.ts reads at most this much too). */
#define STAT_MAX 4096
/* Walks kept for JS to take at most (the oldest is overwritten). */
#define RESULTS_MAX 64
/* Arguments looked at, and script candidates taken from them (script-package.ts takes 3). */
#define SCAN_ARGS 16
#define MAX_CANDIDATES 3
/* Answers per exec at most (the resolver's CHAIN_MAX_PATHS). */
#define MAX_ANSWERS 128
/* argv bytes copied per request at most (the candidates are among the first arguments). */
#define ARGV_COPY_MAX 16384
/* Path and link bytes one request's answers hold at most (64 kept: a few MiB however long the
 * paths a user makes up); the walk stops there. */
#define ANSWER_BYTES_MAX 65536
/* The reader's (procevents.c READER_RT_PRIORITY): the unit allows 1 and nothing above. */
#define WALKER_RT_PRIORITY 1
/* CPU the walker may spend: it runs SCHED_FIFO, ahead of every ordinary task and outside guardd's
 * CPUQuota, and a user chooses how deep (and, racing a rename, how link-laden) the paths are and
 * how often an interpreter execs: unbounded, a loop execing `node <130 levels deep>` kept ~1.2 s
 * of a core busy per 1.3 s of its own CPU. So it spends CPU_RATE_NS per second on average and
 * CPU_BURST_NS at once (a typical walk: ~20-100 µs); past that a walk stops where it is, it rests
 * (`rest`) and requests are dropped (counted): the resolver walks through the pool as without it. */
#define CPU_RATE_NS 50000000ULL /* 5 % of a core */
#define CPU_BURST_NS 20000000ULL
/* Out of budget, the walker rests until it has earned this much again (40 ms at 5 %). */
#define CPU_RESUME_NS 2000000ULL

typedef struct {
  char *path; /* the prefix answered */
  int err;    /* 0 or errno */
  uint32_t mode, uid, gid;
  uint64_t dev, ino;
  char *link; /* a symlink's target, else NULL */
} answer_t;

typedef struct {
  int32_t pid;
  uint64_t ts;
  int argv_len;
  char *argv; /* NUL-separated, malloc'd; NULL: no walk asked */
  char *stat; /* the reader's stat line, NUL-terminated, malloc'd; NULL: no identity asked */
} request_t;

/* What a kept answer is for: the exec (pid, ts); used 0 when the slot is free. First in each
 * kind of slot, so one lookup (take_slot) serves both rings. */
typedef struct {
  int32_t pid;
  uint64_t ts;
  int used;
} slot_key_t;

typedef struct {
  slot_key_t key;
  double v[6]; /* dev, ino, size, mtimeMs, ctimeMs, mount (unique id; 0 before Linux 6.8) */
} ident_t;

typedef struct {
  slot_key_t key;
  int count;
  answer_t *answers;
} result_t;

struct walker {
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cond;
  request_t queue[QUEUE_MAX];
  int qhead, qcount;
  result_t results[RESULTS_MAX];
  int rnext;
  ident_t idents[IDENTS_MAX];
  int inext;
  atomic_int stop;
  atomic_ullong done, dropped, identities;
  /* The CPU budget (walker thread only): ns it may still spend, as of `refilled` (CLOCK_MONOTONIC). */
  uint64_t budget, refilled;
  /* Set while it rests out of budget: the reader drops requests at once. */
  atomic_int resting;
};

static uint64_t clock_ns(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

int walker_is_interpreter(const char *name, int len) {
  static const char *const names[] = {"node", "nodejs", "bun", "deno", "ruby", "perl"};
  char low[32];
  if (len <= 0 || len >= (int)sizeof(low)) return 0;
  for (int i = 0; i < len; i++) low[i] = (char)tolower((unsigned char)name[i]);
  low[len] = '\0';
  if (len > 4 && strcmp(low + len - 4, ".exe") == 0) low[len -= 4] = '\0';
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strcmp(low, names[i]) == 0) return 1;
  /* python, python3, python3.12: python(\d+(\.\d+)?)? */
  if (strncmp(low, "python", 6) != 0) return 0;
  const char *p = low + 6;
  if (*p == '\0') return 1;
  if (!isdigit((unsigned char)*p)) return 0;
  while (isdigit((unsigned char)*p)) p++;
  if (*p == '\0') return 1;
  if (*p != '.' || !isdigit((unsigned char)p[1])) return 0;
  p++;
  while (isdigit((unsigned char)*p)) p++;
  return *p == '\0';
}

static void free_answers(answer_t *a, int n) {
  for (int i = 0; i < n; i++) {
    free(a[i].path);
    free(a[i].link);
  }
  free(a);
}

/* Absolute and already in normal form (what path.resolve returns unchanged). */
static int normal_absolute(const char *p, size_t n) {
  if (n == 0 || p[0] != '/' || n >= PATH_MAX) return 0;
  if (n > 1 && p[n - 1] == '/') return 0;
  for (size_t i = 0; i + 1 < n; i++) {
    if (p[i] != '/') continue;
    const char *s = p + i + 1;
    size_t rest = n - i - 1;
    if (s[0] == '/') return 0;
    if (s[0] == '.' && (rest == 1 || s[1] == '/')) return 0;
    if (s[0] == '.' && s[1] == '.' && (rest == 2 || s[2] == '/')) return 0;
  }
  return 1;
}

/* Well-formed UTF-8 (no overlong form, surrogate or code point past U+10FFFF): what JS gets back
 * byte for byte. Any other byte becomes U+FFFD in JS, whose path (and the pool's lstat of it)
 * then names another file than the one the walker looked at. */
static int utf8_ok(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + len > n) return 0;
    uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1Fu : len == 3 ? c & 0x0Fu : c & 0x07u;
    for (size_t k = 1; k < len; k++) {
      if ((p[i + k] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return 0;
    i += len;
  }
  return 1;
}

/* lstat of one step (as native/pathwalk `execute`): 1 when the walk goes on below it. */
static int step(const char *path, answer_t *a) {
  struct stat st;
  if (lstat(path, &st) != 0) {
    a->err = errno;
    return 0;
  }
  a->mode = st.st_mode;
  a->uid = st.st_uid;
  a->gid = st.st_gid;
  a->dev = st.st_dev;
  a->ino = st.st_ino;
  if (S_ISLNK(st.st_mode)) {
    char buf[PATH_MAX + 1];
    ssize_t n = readlink(path, buf, sizeof(buf));
    if (n < 0) a->err = errno;
    else if ((size_t)n >= sizeof(buf)) a->err = ENAMETOOLONG;
    else if ((a->link = strndup(buf, (size_t)n)) == NULL) a->err = ENOMEM;
    return 0;
  }
  return S_ISDIR(st.st_mode);
}

/* Appends the answers for every prefix of `path` (normal form) to `out`; returns the new count.
 * `*bytes`: path and link bytes held so far (ANSWER_BYTES_MAX); it stops once the thread's CPU
 * time reaches `cpu_until` (ns, CLOCK_THREAD_CPUTIME_ID). */
static int walk_path(const char *path, size_t n, answer_t *out, int count, size_t *bytes, uint64_t cpu_until) {
  size_t end = 1; /* "/" first */
  while (count < MAX_ANSWERS && *bytes + end + PATH_MAX <= ANSWER_BYTES_MAX &&
         clock_ns(CLOCK_THREAD_CPUTIME_ID) < cpu_until) {
    answer_t *a = &out[count];
    memset(a, 0, sizeof(*a));
    if ((a->path = strndup(path, end)) == NULL) return count;
    count++;
    int more = step(a->path, a);
    *bytes += end + (a->link ? strlen(a->link) : 0);
    if (!more || end >= n) return count;
    /* the next component starts after "/" (end 1) or after the '/' at `end` */
    size_t from = end == 1 ? 1 : end + 1;
    const char *slash = memchr(path + from, '/', n - from);
    end = slash ? (size_t)(slash - path) : n;
  }
  return count;
}

/* The walks of one request: candidates from its argv, each made absolute and walked (until the
 * thread's CPU time reaches `cpu_until`). */
static int walk_request(const request_t *r, answer_t *out, uint64_t cpu_until) {
  int count = 0, taken = 0;
  size_t bytes = 0;
  char cwd[PATH_MAX];
  int cwd_len = -1; /* -1: not read yet, -2: unreadable */
  const char *p = r->argv, *end = r->argv + r->argv_len;
  p += strnlen(p, (size_t)(end - p)) + 1; /* argv[0] */
  for (int i = 1; i <= SCAN_ARGS && p < end && taken < MAX_CANDIDATES; i++) {
    size_t len = strnlen(p, (size_t)(end - p));
    const char *arg = p;
    p += len + 1;
    if (len == 0 || arg[0] == '-') continue;
    taken++;
    char path[PATH_MAX];
    size_t n;
    if (arg[0] == '/') {
      if (len >= sizeof(path)) continue;
      memcpy(path, arg, len);
      n = len;
    } else {
      if (cwd_len == -1) {
        char link[64];
        snprintf(link, sizeof(link), "/proc/%d/cwd", r->pid);
        ssize_t c = readlink(link, cwd, sizeof(cwd) - 1);
        cwd_len = c > 0 && cwd[0] == '/' ? (int)c : -2;
      }
      if (cwd_len < 0) continue;
      size_t base = cwd_len == 1 ? 0 : (size_t)cwd_len; /* cwd "/" joins as "/arg" */
      if (base + 1 + len >= sizeof(path)) continue;
      memcpy(path, cwd, base);
      path[base] = '/';
      memcpy(path + base + 1, arg, len);
      n = base + 1 + len;
    }
    path[n] = '\0';
    if (!normal_absolute(path, n) || !utf8_ok((const unsigned char *)path, n)) continue;
    count = walk_path(path, n, out, count, &bytes, cpu_until);
  }
  return count;
}

/* The fields of a stat line that change with each exec of a process or with its pid's reuse —
 * start time (field 22), start_code, end_code, start_stack (26–28) and arg_start (48), as
 * "a:b:c:d:e" (a missing one as 0) — into out; 0 when the line is malformed. */
static int exec_key(const char *stat, char *out, size_t out_len) {
  static const int wanted[] = {19, 23, 24, 25, 45}; /* indexes after comm, as parseStat's */
  const char *close = strrchr(stat, ')');
  if (close == NULL || close[1] != ' ') return 0;
  const char *p = close + 2;
  size_t n = 0;
  int field = 0, w = 0;
  out[0] = '\0';
  while (w < 5) {
    const char *end = p;
    while (*end != '\0' && *end != ' ' && *end != '\n') end++;
    if (field == wanted[w]) {
      int len = (int)(end - p);
      int k = snprintf(out + n, out_len - n, "%s%.*s", w ? ":" : "", len > 0 ? len : 1, len > 0 ? p : "0");
      if (k < 0 || (size_t)k >= out_len - n) return 0;
      n += (size_t)k;
      w++;
    }
    if (*end != ' ') break;
    p = end + 1;
    field++;
  }
  if (w == 0) return 0; /* not even the start time */
  for (; w < 5; w++) {
    int k = snprintf(out + n, out_len - n, ":0");
    if (k < 0 || (size_t)k >= out_len - n) return 0;
    n += (size_t)k;
  }
  return 1;
}

/* The identity of request r's executable into v (see the module header); 1 when read. */
static int read_identity(const request_t *r, double v[6]) {
  char path[64], want[160], now[160], line[STAT_MAX + 1];
  if (!exec_key(r->stat, want, sizeof(want))) return 0;
  snprintf(path, sizeof(path), "/proc/%d/exe", r->pid);
  struct statx sx;
  const unsigned int mask = STATX_TYPE | STATX_INO | STATX_SIZE | STATX_MTIME | STATX_CTIME;
  if (statx(AT_FDCWD, path, AT_STATX_DONT_SYNC, mask | STATX_MNT_ID_UNIQUE, &sx) != 0 || (sx.stx_mask & mask) != mask ||
      !S_ISREG(sx.stx_mode))
    return 0;
  snprintf(path, sizeof(path), "/proc/%d/stat", r->pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  ssize_t got = read(fd, line, STAT_MAX);
  close(fd);
  if (got <= 0) return 0;
  line[got] = '\0';
  if (!exec_key(line, now, sizeof(now)) || strcmp(want, now) != 0) return 0;
  /* As libuv fills Node's fs.Stats from statx, and Node's msFromTimeSpec: the same doubles. */
  v[0] = (double)makedev(sx.stx_dev_major, sx.stx_dev_minor);
  v[1] = (double)sx.stx_ino;
  v[2] = (double)sx.stx_size;
  v[3] = (double)sx.stx_mtime.tv_sec * 1000.0 + (double)sx.stx_mtime.tv_nsec / 1000000.0;
  v[4] = (double)sx.stx_ctime.tv_sec * 1000.0 + (double)sx.stx_ctime.tv_nsec / 1000000.0;
  /* The mount the executable was reached through, as native/execperm keys it (mount_of_fd). */
  v[5] = (sx.stx_mask & STATX_MNT_ID_UNIQUE) ? (double)sx.stx_mnt_id : 0;
  return 1;
}

static void store_identity(walker_t *w, const request_t *r, const double v[6]) {
  pthread_mutex_lock(&w->mu);
  ident_t *slot = &w->idents[w->inext];
  w->inext = (w->inext + 1) % IDENTS_MAX;
  slot->key = (slot_key_t){.pid = r->pid, .ts = r->ts, .used = 1};
  memcpy(slot->v, v, sizeof(slot->v));
  pthread_mutex_unlock(&w->mu);
}

static void store(walker_t *w, const request_t *r, answer_t *answers, int count) {
  pthread_mutex_lock(&w->mu);
  result_t *slot = &w->results[w->rnext];
  w->rnext = (w->rnext + 1) % RESULTS_MAX;
  if (slot->key.used) free_answers(slot->answers, slot->count);
  slot->key = (slot_key_t){.pid = r->pid, .ts = r->ts, .used = 1};
  slot->count = count;
  slot->answers = answers;
  pthread_mutex_unlock(&w->mu);
}

/* The budget earned since the last refill, up to CPU_BURST_NS. */
static void refill(walker_t *w) {
  uint64_t now = clock_ns(CLOCK_MONOTONIC), d = now - w->refilled;
  w->budget += d / 1000000000ULL * CPU_RATE_NS + d % 1000000000ULL * CPU_RATE_NS / 1000000000ULL;
  if (w->budget > CPU_BURST_NS) w->budget = CPU_BURST_NS;
  w->refilled = now;
}

/* Out of budget: the reader drops every request (without copying it) while the walker sleeps
 * until it has earned CPU_RESUME_NS; the requests queued meanwhile are stale by then: dropped. */
static void rest(walker_t *w) {
  atomic_store(&w->resting, 1);
  uint64_t ns = CPU_RESUME_NS * 1000000000ULL / CPU_RATE_NS;
  struct timespec t = {.tv_sec = (time_t)(ns / 1000000000ULL), .tv_nsec = (long)(ns % 1000000000ULL)};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) continue;
  refill(w);
  pthread_mutex_lock(&w->mu);
  for (; w->qcount > 0; w->qcount--, w->qhead = (w->qhead + 1) % QUEUE_MAX) {
    free(w->queue[w->qhead].argv);
    free(w->queue[w->qhead].stat);
    atomic_fetch_add(&w->dropped, 1);
  }
  atomic_store(&w->resting, 0);
  pthread_mutex_unlock(&w->mu);
}

static void *run(void *arg) {
  walker_t *w = arg;
  (void)pthread_setname_np(pthread_self(), "tg-walker");
  struct sched_param sp = {.sched_priority = WALKER_RT_PRIORITY};
  (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp); /* else: guardd's nice, inherited */
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (w->qcount == 0 && !atomic_load(&w->stop)) pthread_cond_wait(&w->cond, &w->mu);
    if (atomic_load(&w->stop)) break;
    request_t r = w->queue[w->qhead];
    w->qhead = (w->qhead + 1) % QUEUE_MAX;
    w->qcount--;
    pthread_mutex_unlock(&w->mu);
    /* Charged: everything from here to the next wait (the walk, the answers replaced, the frees). */
    uint64_t cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    refill(w);
    double v[6];
    if (r.stat != NULL && read_identity(&r, v)) {
      store_identity(w, &r, v);
      atomic_fetch_add(&w->identities, 1);
    }
    if (r.argv != NULL) {
      answer_t *answers = calloc(MAX_ANSWERS, sizeof(answer_t));
      if (answers == NULL) atomic_fetch_add(&w->dropped, 1);
      else {
        int count = walk_request(&r, answers, cpu + w->budget);
        store(w, &r, answers, count);
        atomic_fetch_add(&w->done, 1);
      }
    }
    free(r.argv);
    free(r.stat);
    uint64_t spent = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
    w->budget = spent < w->budget ? w->budget - spent : 0;
    if (w->budget == 0) rest(w);
    pthread_mutex_lock(&w->mu);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

walker_t *walker_start(void) {
  walker_t *w = calloc(1, sizeof(walker_t));
  if (w == NULL) return NULL;
  w->budget = CPU_BURST_NS;
  w->refilled = clock_ns(CLOCK_MONOTONIC);
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cond, NULL);
  if (pthread_create(&w->thread, NULL, run, w) != 0) {
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return NULL;
  }
  return w;
}

void walker_request(walker_t *w, int32_t pid, uint64_t ts, const char *cmd, int cmd_len, const char *stat,
                    int stat_len) {
  if (w == NULL || (cmd_len <= 0 && stat_len <= 0)) return;
  if (atomic_load(&w->resting)) {
    atomic_fetch_add(&w->dropped, 1);
    return;
  }
  int len = cmd_len < ARGV_COPY_MAX ? cmd_len : ARGV_COPY_MAX;
  char *copy = NULL, *line = NULL;
  if (cmd_len > 0 && (copy = malloc((size_t)len + 1)) != NULL) {
    memcpy(copy, cmd, (size_t)len);
    copy[len] = '\0'; /* a cut argument ends here */
  }
  if (stat_len > 0 && (line = malloc((size_t)(stat_len < STAT_MAX ? stat_len : STAT_MAX) + 1)) != NULL) {
    int n = stat_len < STAT_MAX ? stat_len : STAT_MAX;
    memcpy(line, stat, (size_t)n);
    line[n] = '\0';
  }
  pthread_mutex_lock(&w->mu);
  if ((copy == NULL && line == NULL) || w->qcount >= QUEUE_MAX || atomic_load(&w->stop)) {
    pthread_mutex_unlock(&w->mu);
    free(copy);
    free(line);
    atomic_fetch_add(&w->dropped, 1);
    return;
  }
  w->queue[(w->qhead + w->qcount) % QUEUE_MAX] =
      (request_t){.pid = pid, .ts = ts, .argv_len = copy ? len + 1 : 0, .argv = copy, .stat = line};
  w->qcount++;
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->mu);
}

/* errno names as native/pathwalk `errno_code`. */
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

static void set_str(napi_env env, napi_value obj, const char *key, const char *s) {
  napi_value v;
  if (s == NULL) napi_get_null(env, &v);
  else napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_double(napi_env env, napi_value obj, const char *key, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  napi_set_named_property(env, obj, key, v);
}

/* Moves the kept slot of exec (pid, ts) out of `slots` (n of `size` bytes, each starting with its
 * slot_key_t) into `out`, freeing it; 0 when there is none. `ts` as JS got it (a double). */
static int take_slot(walker_t *w, void *slots, int n, size_t size, int32_t pid, double ts, void *out) {
  int found = 0;
  if (w == NULL) return 0;
  pthread_mutex_lock(&w->mu);
  for (int i = 0; i < n && !found; i++) {
    slot_key_t *k = (slot_key_t *)((char *)slots + (size_t)i * size);
    if (k->used && k->pid == pid && (double)k->ts == ts) {
      memcpy(out, k, size);
      memset(k, 0, size);
      found = 1;
    }
  }
  pthread_mutex_unlock(&w->mu);
  return found;
}

napi_value walker_take(napi_env env, walker_t *w, int32_t pid, double ts) {
  napi_value out;
  result_t found;
  if (!take_slot(w, w ? w->results : NULL, RESULTS_MAX, sizeof(result_t), pid, ts, &found)) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_array_with_length(env, (size_t)found.count, &out);
  for (int i = 0; i < found.count; i++) {
    const answer_t *a = &found.answers[i];
    napi_value o;
    napi_create_object(env, &o);
    set_str(env, o, "path", a->path);
    if (a->err != 0) set_str(env, o, "code", errno_code(a->err));
    else {
      set_double(env, o, "mode", a->mode);
      set_double(env, o, "uid", a->uid);
      set_double(env, o, "gid", a->gid);
      set_double(env, o, "dev", (double)a->dev);
      set_double(env, o, "ino", (double)a->ino);
      set_str(env, o, "link", a->link);
    }
    napi_set_element(env, out, (uint32_t)i, o);
  }
  free_answers(found.answers, found.count);
  return out;
}

napi_value walker_take_identity(napi_env env, walker_t *w, int32_t pid, double ts) {
  napi_value out;
  ident_t found;
  if (!take_slot(w, w ? w->idents : NULL, IDENTS_MAX, sizeof(ident_t), pid, ts, &found)) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_array_with_length(env, 6, &out);
  for (uint32_t i = 0; i < 6; i++) {
    napi_value v;
    napi_create_double(env, found.v[i], &v);
    napi_set_element(env, out, i, v);
  }
  return out;
}

void walker_counters(walker_t *w, uint64_t *done, uint64_t *dropped, uint64_t *identities) {
  *done = w ? atomic_load(&w->done) : 0;
  *dropped = w ? atomic_load(&w->dropped) : 0;
  *identities = w ? atomic_load(&w->identities) : 0;
}

int walker_stop(walker_t *w, const struct timespec *until) {
  if (w == NULL) return 0;
  pthread_mutex_lock(&w->mu);
  atomic_store(&w->stop, 1);
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->mu);
  if ((until == NULL ? pthread_join(w->thread, NULL) : pthread_timedjoin_np(w->thread, NULL, until)) != 0) return -1;
  for (int i = 0; i < w->qcount; i++) {
    free(w->queue[(w->qhead + i) % QUEUE_MAX].argv);
    free(w->queue[(w->qhead + i) % QUEUE_MAX].stat);
  }
  for (int i = 0; i < RESULTS_MAX; i++)
    if (w->results[i].key.used) free_answers(w->results[i].answers, w->results[i].count);
  pthread_cond_destroy(&w->cond);
  pthread_mutex_destroy(&w->mu);
  free(w);
  return 0;
}
