/*
 * execperm: guardd's pre-exec deny listener (src/enforcement/exec-deny.ts). Owns one fanotify
 * descriptor (FAN_CLASS_CONTENT, FAN_OPEN_EXEC_PERM) and the native thread that answers every
 * permission event on it. Hand-written because Node has no fanotify, and because the answer must
 * not depend on the JS event loop: an unanswered permission event blocks the exec'ing process,
 * machine-wide.
 *
 * The thread, for each event:
 *   - the exec'ing pid is guardd or a child of guardd running as guardd's uid → FAN_ALLOW at once
 *     (libuv blocks the loop in uv_spawn until its child has exec'd: asking JS would stall until
 *     the deadline); a child running as a user (owner-fs, notify-send) is decided like the user;
 *   - fstat(event fd) → file identity (dev, ino, size, mtime, ctime, and the unique id of the mount
 *     it came through: mount_of_fd); a verdict cache keyed by
 *     (identity, a keyed hash of the path: siphash, policy generation) answers repeats without JS
 *     (a cached deny is still reported to JS, as already answered, so a denied attempt becomes an event — within MAX_REPORTS
 *     waiting and REPORTS_PER_SEC, each user within a share of them, so a user's loop of refused
 *     execs can crowd out neither decisions nor another user's reports;
 *     past them it is only counted);
 *   - otherwise the event goes to JS (threadsafe function) with its id, pid, the path (readlink of
 *     /proc/self/fd/N), the identity and the fd number (JS reads the file through
 *     /proc/self/fd/N: a plain open, which generates no exec permission event);
 *   - JS answers with respond(id, allow, cacheable); an allow (JS's or the deadline's) becomes a
 *     deny when the file was written while the exec waited (slot_changed: a writer broke the read
 *     lease held on it meanwhile, take_lease, or its identity moved since the request) (an allow
 *     is cached only for a file whose ctime was IDENTITY_SETTLE_MS old at the request: coarse
 *     timestamps let its owner put other bytes under the same identity within one tick); if it has not within the deadline, the thread
 *     answers FAN_ALLOW and counts a deadline miss. The fd stays open until JS responds (so its
 *     number is not reused under JS's read) or the slot is reclaimed under load.
 * If the process dies, the kernel closes the fanotify descriptor and allows every pending event.
 *
 * Open marks (src/enforcement/open-marks.ts decides which files): an inode mark with FAN_OPEN_PERM
 * on one file of a banned package, and its (dev, ino) in a table of at most MAX_FILE_MARKS. An
 * open of a marked file is answered by the same thread without JS: FAN_ALLOW when guardd or a
 * child of guardd opens it (guardd reads the files it decides on, and its owner-fs child copies
 * them into quarantine), FAN_DENY for anyone else (reported to JS once per pid and file in a row).
 * A FAN_OPEN_PERM event for a file not in the table (a mark being added or removed) is allowed.
 * markFile opens the file itself, never through a name the user could redirect: the mount point
 * from / and then the path below it with openat2 (no symlink, no magic link, no other mount, no
 * `..` out), O_PATH first (no open of a device or FIFO), then checks the descriptor is the regular
 * file the caller identified (dev, ino) with one link, and marks through a reopen of that very
 * descriptor. Only mount-wide exec marks and these inode marks exist: no mount-wide open mark,
 * so opens of every other file never wait on guardd.
 *
 * Kernel-cached allows: a file allowed twice in a row from the verdict cache (an allow is cached only
 * when no rule matches the file at that path, for every user) gets an inode mark whose *ignored*
 * mask holds FAN_OPEN_EXEC_PERM, so the kernel stops asking about its execs at all (Santa's
 * Endpoint Security allow cache, on fanotify). Only a file no user can change or reach under
 * another name: a regular file owned by root, not writable by group or others, with one link, on
 * a path whose every directory from / is owned by root and writable by nobody else (checked top
 * down, each name opened O_PATH inside the directory already checked, which only root can change,
 * and stat'ed only when it is not on a FUSE or network mount — start's skipFstypes — since a user
 * may cover a directory of theirs with a FUSE mount whose daemon never answers) and that leads to
 * this very file; exec'd by a process of guardd's own user namespace
 * through a mount of its own mount namespace (a user's bind mount in their own namespaces shows
 * the kernel a path they made up: allowed there, the file would go unasked at its real, refused
 * path, for everyone; such a path is not even walked); and only while fs.protected_hardlinks = 1
 * (a user cannot hard-link a file they may not write). The kernel drops the ignored mask when the
 * file is written (FAN_MARK_IGNORED_SURV_MODIFY is not set), but not on a write through a shared
 * mapping or by AIO (no modify event): the same mark reports every writer's close
 * (FAN_CLOSE_WRITE; exec is refused while a writer has the file open), on which the thread
 * removes it. setGeneration (a new policy) and flushFileMarks remove every inode mark, these
 * included, under the same lock the thread holds while it adds one; at most MAX_IGNORE_MARKS.
 *
 * Exports: start({deadlineMs, skipFstypes}, onEvent), mark(path, 'filesystem'|'mount'), unmark(path, kind),
 * markFile(mountPoint, relPath, dev, ino), unmarkFile(mountPoint, relPath, dev, ino),
 * flushFileMarks(),
 * respond(id, allow, cacheable) → 'answered'|'late'|'unknown', setGeneration(n), counters() (with
 * loop_age_ms: how long ago the thread last went round its loop, ≤ 1 s when healthy), stop().
 * Errors thrown carry code GUARD_EXEC_DENY_FAILED (errno in the message).
 * Uses only node_api.h (N-API version 8). Linux only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define NAPI_VERSION 8
#include <node_api.h>

#include "siphash.h"

/* Events waiting for JS at once. Past it an event is allowed at once and counted as overflow:
 * 1,024 is far above what a 200 ms deadline lets pile up from cache misses (new files). */
#define MAX_PENDING 1024
/* Verdict cache entries (direct-mapped by identity hash): distinct executables a machine runs. */
#define CACHE_SIZE 8192
/* Bytes read from the fanotify fd per read(): ~2,700 events of 24 bytes. */
#define READ_BUF_BYTES 65536
/* Longest poll() sleep with nothing pending (ms): only bounds how late stop() is noticed. */
#define IDLE_POLL_MS 1000
/* Threadsafe-function queue: events posted to JS and not yet taken by its loop. */
#define TSFN_QUEUE 4096
/* Refusal reports (an exec denied from the verdict cache, a refused open of a marked file) posted
 * to JS and not yet taken by its loop, at most; and how many a second are posted, at most (a
 * burst of MAX_REPORTS, then REPORTS_PER_SEC). They share the queue and the loop with exec
 * decisions. Found in review: a user exec'ing a refused file in a loop from four processes
 * (~50,000 refusals a second, each answered from the cache at once) filled the queue, and every
 * banned file new to the cache was allowed as overflow; bounded to the queue alone, JS recording
 * ~20,000 refusals a second let the new file's decision miss the deadline (allowed) instead. At
 * 500 a second, recording them costs the loop a few percent. A refusal past either bound is still
 * refused and counted (denied, open_denied), and counted as not reported (deny_reports_dropped,
 * open_reports_dropped); refusals past a burst are folded into counted events anyway. */
#define MAX_REPORTS 128
#define REPORTS_PER_SEC 500
/* And each user's share of them: the reports of one uid (the owner of /proc/<pid>: the refused
 * process's effective uid; in a user's namespace, that user: uid_of) queued at most and posted a second at most, inside the bounds above —
 * half of each, so a user flooding refusals leaves the other half to everyone else, and a shell
 * loop of a few dozen refused runs still has every one recorded; USER_BUCKETS uids are tracked,
 * the one least recently refilled gives way to a new one (full). Found in review: one user's
 * flood took every token the moment it was refilled, so another user's refusal in the same
 * seconds became a counter, not an event. A user acts as no uid but theirs, and the subordinate
 * uids of their user namespaces, charged to them (uid_of). */
#define USER_BUCKETS 32
#define USER_MAX_REPORTS (MAX_REPORTS / 2)
#define USER_REPORTS_PER_SEC (REPORTS_PER_SEC / 2)
/* Files with an open mark at most (src/enforcement/open-marks.ts MAX_OPEN_MARKS is the same). */
#define MAX_FILE_MARKS 1024
/* An allow is cached only for a file whose ctime is at least this old when its request came. A
 * file's identity (size, mtime, ctime) is only as fine as its file system's timestamps: whole
 * seconds on ext4 with 128-byte inodes, 2 s on msdos FAT, one jiffy on ext4/xfs before Linux 6.13
 * (multigrain timestamps). Its owner can overwrite it in place within that tick and keep every
 * field (mtime they may set anyway); only ctime, which they cannot set, moves on afterwards. A
 * change made after the request gets a ctime of at least (now − one tick), so one older than this
 * margin (the coarsest tick, 2 s, and the coarse clock's lag) can never come back. Denies are
 * cached whatever the age: a deny kept for other bytes refuses only the writer's own file.
 * src/sensors/file-facts.ts IDENTITY_SETTLE_MS is the same rule for the hash and marker caches. */
#define IDENTITY_SETTLE_MS 3000
/* Kernel-cached allows at most (inode marks with an ignored mask; the kernel's
 * fs.fanotify.max_user_marks, ≥ 8,192, is shared with the open marks and every other root group). */
#define MAX_IGNORE_MARKS 2048

/* What a verdict is cached under: the file (an inode number is only unique within its file system,
 * so the device is part of it; size, mtime and ctime change when it is rewritten, ctime when it is
 * linked or chmod'ed), the mount it was reached through (its unique id: a file system unmounted
 * and mounted again, or another one given the same device number, may hold other bytes under the
 * same identity — src/sensors/mount-trust.ts) and the path it was opened by, since name and path
 * rules give another verdict to a hard link or a rename of the same inode. */
typedef struct {
  uint64_t dev, ino;
  int64_t size, mtime_s, mtime_ns, ctime_s, ctime_ns;
  uint64_t mount;
  uint64_t path_hash;
} ident_t;

enum slot_state { SLOT_FREE = 0, SLOT_WAITING = 1, SLOT_EXPIRED = 2 };

typedef struct {
  int state;
  int fd;
  uint64_t id;
  uint64_t generation;
  struct timespec deadline;
  ident_t ident;
  /* The file's ctime was IDENTITY_SETTLE_MS old when the request came: an allow may be cached. */
  int settled;
  /* take_lease: 1 a read lease held on fd while the request waits, 0 none to be had, -1 the file was
   * open for writing at the request or written since (then an allow is refused). */
  int lease;
} slot_t;

typedef struct {
  int used;
  int allow;
  uint64_t generation;
  ident_t ident;
} cache_entry_t;

typedef struct {
  uint64_t events, cache_hits, allowed, denied, deadline_misses, overflow, self_allowed, posted, late_responses,
      unreadable, mount_changes, mount_notices_folded, open_events, open_denied, open_self_allowed, open_reports_dropped, deny_reports_dropped,
      changed_denied,
      ignore_marks_added, ignore_mark_errors, ignore_marks_dropped;
} counters_t;

/* One file with an open mark. last_pid: the last process refused its open, so a process that
 * retries (node tries the file, then its extensions) is reported once, not per attempt. */
typedef struct {
  int used;
  uint64_t dev, ino;
  int32_t last_pid;
} file_mark_t;

/* What one event carries to JS. kind: 0 = decide (slot id), 1 = already denied from the cache,
 * 2 = mounts changed, 3 = an open of a marked file denied. */
typedef struct {
  int kind;
  uint64_t id;
  /* A decision's mount id as /proc/self/mountinfo numbers it (pinned while the fd is open). */
  int64_t mount_id;
  int32_t pid;
  /* A refusal report's uid (report_admit), for its user's share to be given back when it is taken. */
  uint32_t uid;
  int fd;
  ident_t ident;
  char path[PATH_MAX];
} post_t;

#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x4000U
#endif

/* The mount fd was reached through: with unique, its unique id (Linux 6.8+, never reused while the
 * machine runs; 0 before 6.8), else its id as /proc/self/mountinfo numbers it (reused after an
 * unmount, but not while fd holds the mount; -1 when unknown). */
static int64_t mount_of_fd(int fd, int unique) {
  struct statx sx;
  unsigned int want = unique ? STATX_MNT_ID_UNIQUE : STATX_MNT_ID;
  if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, want, &sx) != 0 || !(sx.stx_mask & want))
    return unique ? 0 : -1;
  return (int64_t)sx.stx_mnt_id;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fan_fd = -1;
static int wake_pipe[2] = {-1, -1};
static int mountinfo_fd = -1;
static pthread_t thread;
static int running = 0;
static volatile int stopping = 0;
static napi_threadsafe_function tsfn = NULL;
static long deadline_ms = 200;
static pid_t self_pid;
static uint64_t generation = 0;
static uint64_t next_id = 1;
static slot_t slots[MAX_PENDING];
static cache_entry_t cache[CACHE_SIZE];
static file_mark_t file_marks[MAX_FILE_MARKS];
/* Refusal reports in the queue now, and the tokens left to post more (under lock; MAX_REPORTS,
 * REPORTS_PER_SEC), refilled from report_refill (CLOCK_MONOTONIC). */
static int reports_queued = 0;
static double report_tokens = MAX_REPORTS;
static struct timespec report_refill;
/* Each user's share (under lock; USER_MAX_REPORTS, USER_REPORTS_PER_SEC). */
typedef struct {
  int used;
  uint32_t uid;
  int queued;
  double tokens;
  struct timespec refill;
} user_bucket_t;
static user_bucket_t user_buckets[USER_BUCKETS];
/* A mount-change notice posted and not yet taken by JS (under lock): changes meanwhile are folded
 * into it (mount_notices_folded), since JS reads the whole table when it takes it — a host starting
 * containers changes it hundreds of times in a burst, each one a pass over every mount. */
static int mount_notice_waiting = 0;
/* Kernel-cached allows in place now (under lock; emptied with every flush). */
static int ignore_marks = 0;
/* File system types the walk of a kernel-cached allow never enters (start's skipFstypes: remote,
 * FUSE and pseudo; one ending in '.' is a prefix, "fuse." for every fuse.*). Set at start only. */
#define MAX_SKIP_FSTYPES 64
static char skip_fstypes[MAX_SKIP_FSTYPES][32];
static int skip_fstype_count = 0;
/* fs.protected_hardlinks was 1 at start: without it no kernel-cached allow is added. */
static int hardlinks_protected = 0;
static counters_t counters;
/* When the thread last went round its loop (CLOCK_MONOTONIC): the JS watchdog reads its age. */
static struct timespec last_loop;

static void ts_add_ms(struct timespec *t, long ms) {
  t->tv_sec += ms / 1000;
  t->tv_nsec += (ms % 1000) * 1000000L;
  if (t->tv_nsec >= 1000000000L) {
    t->tv_sec++;
    t->tv_nsec -= 1000000000L;
  }
}

static long ts_diff_ms(const struct timespec *a, const struct timespec *b) {
  return (long)((a->tv_sec - b->tv_sec) * 1000 + (a->tv_nsec - b->tv_nsec) / 1000000L);
}

static void answer(int fd, int allow) {
  struct fanotify_response r = {.fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY};
  /* A failed write (ENOENT: the event is gone, the process died) needs nothing more. */
  ssize_t w = write(fan_fd, &r, sizeof(r));
  (void)w;
  if (allow)
    counters.allowed++;
  else
    counters.denied++;
}

/* SipHash-2-4 (Aumasson and Bernstein), under a key drawn from getrandom at every start: the path
 * part of a verdict's key and its cache slot. Unkeyed (FNV, as before), the hash let a user compute
 * a name whose hash equals another path's — a second name of one inode would share that path's
 * verdict, which name and path rules give per path — and identities that land in the slot of a
 * cached deny to push it out (found in review). siphash.h: the addon has no dependencies, and the
 * reference algorithm is these few lines (tested against the paper's vectors). */
static uint64_t sip_k0, sip_k1;
static uint64_t siphash(const void *data, size_t len) { return siphash_2_4(sip_k0, sip_k1, data, len); }

/* ident_t is 9 fields of 8 bytes: no padding, hashed as it is (and compared by memcmp). */
_Static_assert(sizeof(ident_t) == 72, "ident_t has padding");
static uint64_t ident_hash(const ident_t *k) { return siphash(k, sizeof(*k)); }

static int ident_eq(const ident_t *a, const ident_t *b) { return memcmp(a, b, sizeof(*a)) == 0; }

/* Whether a file of this ctime has settled (IDENTITY_SETTLE_MS): no later change can repeat it. */
static int settled_ctime(const struct timespec *ctime) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return (int64_t)(now.tv_sec - ctime->tv_sec) * 1000 + (now.tv_nsec - ctime->tv_nsec) / 1000000L >=
         IDENTITY_SETTLE_MS;
}

/* Caller holds lock. -1 miss, 0 deny, 1 allow. */
static int cache_get(const ident_t *k) {
  cache_entry_t *e = &cache[ident_hash(k) % CACHE_SIZE];
  if (!e->used || e->generation != generation || !ident_eq(&e->ident, k)) return -1;
  return e->allow;
}

static void cache_put(const ident_t *k, uint64_t gen, int allow) {
  if (gen != generation) return; /* decided under an older policy */
  cache_entry_t *e = &cache[ident_hash(k) % CACHE_SIZE];
  e->used = 1;
  e->allow = allow;
  e->generation = gen;
  e->ident = *k;
}

/* The start of a small kernel-made text file (/proc) into buf, NUL-terminated: 1, or 0 when it
 * could not be opened or read. One read: these files are made whole at the first. */
static int read_text(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, cap - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  return 1;
}

static int ppid_of(pid_t pid) {
  char p[64], buf[512];
  snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
  if (!read_text(p, buf, sizeof(buf))) return -1;
  char *rp = strrchr(buf, ')');
  if (!rp) return -1;
  char state;
  int ppid;
  if (sscanf(rp + 1, " %c %d", &state, &ppid) != 2) return -1;
  return ppid;
}

/* Whether every uid of pid (real, effective, saved, fs) is guardd's own. A child guardd started as
 * a user (the owner-fs helper, notify-send) runs a program that user may ptrace and make exec
 * anything: its execs are decided like the user's own (the first one waits for the deadline, since
 * the loop is in uv_spawn; its verdict is cached for the next). */
static int same_uids(pid_t pid) {
  char p[64], buf[4096];
  snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
  if (!read_text(p, buf, sizeof(buf))) return 0;
  char *u = strstr(buf, "\nUid:");
  if (!u) return 0;
  long r, e, sv, fs;
  if (sscanf(u + 5, " %ld %ld %ld %ld", &r, &e, &sv, &fs) != 4) return 0;
  long self = (long)getuid();
  return r == self && e == self && sv == self && fs == self;
}

static void post(post_t *p) {
  if (tsfn == NULL || napi_call_threadsafe_function(tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
    free(p);
    counters.overflow++;
  }
}

/* A read lease on the descriptor of a request about to wait for JS (slot_t.lease): from now on an
 * open of the file for writing, or a truncate, breaks it (the writer waits for the lease to go,
 * holding the file's write access, so the exec would fail with ETXTBSY anyway), and F_GETLEASE
 * shows that at the answer — whatever the timestamps say: within one tick of a coarse file system
 * a write moves none of them (found in review: on ext4 with 128-byte inodes, a flipped first byte
 * written back once guardd had read it, in the second the file was written, left its identity as
 * it was, and the banned bytes ran). The file is open for writing now: -1. A file system or
 * fs.leases-enable without leases: 0 (the identity alone). No signal: a broken lease would send
 * its owner SIGIO, which kills guardd, so the signal is SIGURG (ignored by default) and the owner
 * is then cleared. guardd is root (CAP_LEASE); the event's descriptor is read-only. */
static int take_lease(int fd) {
  if (fcntl(fd, F_SETSIG, SIGURG) != 0) return 0;
  if (fcntl(fd, F_SETLEASE, F_RDLCK) != 0) return errno == EAGAIN ? -1 : 0;
  (void)fcntl(fd, F_SETOWN, 0);
  return 1;
}

/* Caller holds lock. Whether the file of a waiting request was written since the request came (a
 * writer broke its lease, or its identity moved): then the exec is refused, whatever JS decided or
 * at the deadline. The kernel holds writers off an exec'd file only once the exec is allowed
 * (ETXTBSY); until then a user can rewrite it while guardd reads it (found in review: a flipped
 * byte written back once guardd had begun hashing it left the hash "changed", the sha256 rule
 * unmatched, and the banned bytes ran). A writer still open when it is answered makes the exec fail
 * anyway (ETXTBSY). Counted. */
static int slot_changed(slot_t *s, int count) {
  struct stat st;
  int changed = s->fd < 0 || s->lease < 0 || (s->lease > 0 && fcntl(s->fd, F_GETLEASE) != F_RDLCK) ||
                fstat(s->fd, &st) != 0 || (uint64_t)st.st_size != (uint64_t)s->ident.size ||
                st.st_mtim.tv_sec != s->ident.mtime_s || st.st_mtim.tv_nsec != s->ident.mtime_ns ||
                st.st_ctim.tv_sec != s->ident.ctime_s || st.st_ctim.tv_nsec != s->ident.ctime_ns;
  if (changed && count) counters.changed_denied++;
  return changed;
}

static double seconds_since(const struct timespec *then, const struct timespec *now) {
  return (double)(now->tv_sec - then->tv_sec) + (now->tv_nsec - then->tv_nsec) / 1e9;
}

/* Caller holds lock. uid's share, refilled to now: its bucket, or the least recently refilled
 * one given to it (full, as for any user not seen lately). */
static user_bucket_t *user_bucket(uint32_t uid, const struct timespec *now) {
  user_bucket_t *b = NULL;
  for (int i = 0; i < USER_BUCKETS && b == NULL; i++)
    if (user_buckets[i].used && user_buckets[i].uid == uid) b = &user_buckets[i];
  if (b == NULL) {
    b = &user_buckets[0];
    for (int i = 0; i < USER_BUCKETS; i++) {
      user_bucket_t *c = &user_buckets[i];
      if (!c->used) {
        b = c;
        break;
      }
      if (seconds_since(&c->refill, &b->refill) < 0) b = c;
    }
    b->used = 1;
    b->uid = uid;
    b->queued = 0;
    b->tokens = USER_MAX_REPORTS;
    b->refill = *now;
  }
  b->tokens += seconds_since(&b->refill, now) * USER_REPORTS_PER_SEC;
  if (b->tokens > USER_MAX_REPORTS) b->tokens = USER_MAX_REPORTS;
  b->refill = *now;
  return b;
}

/* Whose share pid's refusal reports take: its effective uid (the owner of /proc/<pid>), or for
 * a process in a user namespace below guardd's, the owner of the outermost one a user (not root)
 * made — that user, whose subordinate uids (/etc/subuid, newuidmap) it may run as: found in
 * review, a user flooding as their own uid and seven subordinate ones had eight shares, every
 * report. Namespaces root made (a container's) keep their uids apart, as root mapped them.
 * UINT32_MAX when it is gone: such reports share one bucket. So it is asked before the refusal
 * is answered, while pid waits in its exec or open: asked after, a process refused and gone at
 * once (a shell loop's child: refused, exits, reaped) went to that one bucket, shared by every
 * user — a second share for a flooding user, taken from everyone else's refusals found gone. */
static uint32_t uid_of(pid_t pid) {
  char p[64];
  struct stat st, ns, self;
  snprintf(p, sizeof(p), "/proc/%d", (int)pid);
  if (stat(p, &st) != 0) return UINT32_MAX;
  uint32_t uid = (uint32_t)st.st_uid;
  snprintf(p, sizeof(p), "/proc/%d/ns/user", (int)pid);
  if (stat("/proc/self/ns/user", &self) != 0 || stat(p, &ns) != 0 ||
      (ns.st_ino == self.st_ino && ns.st_dev == self.st_dev))
    return uid;
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  /* Up the namespace's parents (32 levels at most) to guardd's, the last user-made one's owner. */
  for (int i = 0; fd >= 0 && i < 40; i++) {
    uid_t owner;
    if (ioctl(fd, NS_GET_OWNER_UID, &owner) == 0 && owner != 0) uid = (uint32_t)owner;
    int parent = ioctl(fd, NS_GET_PARENT);
    close(fd);
    fd = parent;
    if (fd >= 0 && fstat(fd, &ns) == 0 && ns.st_ino == self.st_ino && ns.st_dev == self.st_dev) break;
  }
  if (fd >= 0) close(fd);
  return uid;
}

/* Caller holds lock. Whether one more refusal report of pid's user may be posted (MAX_REPORTS
 * queued at most and REPORTS_PER_SEC in all, the user's share of them); if so it is counted as
 * queued (the caller undoes that with report_undo if the post fails) and *uid says whose. */
static int report_admit(pid_t pid, uint32_t *uid) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  report_tokens += seconds_since(&report_refill, &now) * REPORTS_PER_SEC;
  if (report_tokens > MAX_REPORTS) report_tokens = MAX_REPORTS;
  report_refill = now;
  if (reports_queued >= MAX_REPORTS || report_tokens < 1) return 0;
  *uid = uid_of(pid);
  user_bucket_t *b = user_bucket(*uid, &now);
  if (b->queued >= USER_MAX_REPORTS || b->tokens < 1) return 0;
  b->tokens -= 1;
  b->queued++;
  report_tokens -= 1;
  reports_queued++;
  return 1;
}

/* Caller holds lock. One report of uid no longer queued (taken by JS, or its post failed). */
static void report_undo(uint32_t uid) {
  if (reports_queued > 0) reports_queued--;
  for (int i = 0; i < USER_BUCKETS; i++)
    if (user_buckets[i].used && user_buckets[i].uid == uid && user_buckets[i].queued > 0) {
      user_buckets[i].queued--;
      break;
    }
}

/* Caller holds lock. Closes the fd of a slot and frees it. */
static void slot_free(slot_t *s) {
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  s->state = SLOT_FREE;
}

/* Caller holds lock. A free slot, reclaiming the oldest expired one if none is free; NULL if
 * every slot waits for JS. */
static slot_t *slot_take(void) {
  slot_t *oldest = NULL;
  for (int i = 0; i < MAX_PENDING; i++) {
    if (slots[i].state == SLOT_FREE) return &slots[i];
    if (slots[i].state == SLOT_EXPIRED && (oldest == NULL || slots[i].id < oldest->id)) oldest = &slots[i];
  }
  if (oldest) slot_free(oldest);
  return oldest;
}

/* Caller holds lock. The table entry of (dev, ino), or NULL. */
static file_mark_t *file_mark_find(uint64_t dev, uint64_t ino) {
  for (int i = 0; i < MAX_FILE_MARKS; i++)
    if (file_marks[i].used && file_marks[i].dev == dev && file_marks[i].ino == ino) return &file_marks[i];
  return NULL;
}

/* Caller holds lock. A report of pid's refused open that was dropped: a retry by the same process
 * is reported again (only a report that reached JS makes its retries repeats). */
static void unremember_report(uint64_t dev, uint64_t ino, pid_t pid) {
  file_mark_t *f = file_mark_find(dev, ino);
  if (f != NULL && f->last_pid == pid) f->last_pid = 0;
}

static void respond_raw(int fd, int allow) {
  struct fanotify_response r = {.fd = fd, .response = allow ? FAN_ALLOW : FAN_DENY};
  ssize_t w = write(fan_fd, &r, sizeof(r));
  (void)w;
}

/* An open of a file with an open mark: decided here, never waiting on JS. Counted before it is
 * answered, so whoever sees the opener's result sees the counters that include it. */
static void handle_open(const struct fanotify_event_metadata *m) {
  int fd = m->fd;
  pid_t pid = (pid_t)m->pid;
  struct stat st;
  int have = fstat(fd, &st) == 0;
  pthread_mutex_lock(&lock);
  int marked = have && file_mark_find(st.st_dev, st.st_ino) != NULL;
  pthread_mutex_unlock(&lock);
  /* guardd reads the files it decides on; its owner-fs child copies a package into quarantine. */
  int self = marked && (pid == self_pid || (pid > 0 && ppid_of(pid) == self_pid));
  int deny = 0, report = 0;
  pthread_mutex_lock(&lock);
  counters.open_events++;
  if (self) {
    counters.open_self_allowed++;
  } else if (marked) {
    file_mark_t *f = file_mark_find(st.st_dev, st.st_ino);
    if (f != NULL) {
      deny = 1;
      counters.open_denied++;
      report = f->last_pid != pid;
      f->last_pid = pid;
    }
  }
  pthread_mutex_unlock(&lock);
  /* Admitted before the answer, while the opener waits for it: its /proc/<pid> is there for
   * uid_of (report_admit). */
  uint32_t uid = 0;
  if (report) {
    pthread_mutex_lock(&lock);
    if (!report_admit(pid, &uid)) {
      counters.open_reports_dropped++;
      unremember_report(st.st_dev, st.st_ino, pid);
      report = 0;
    }
    pthread_mutex_unlock(&lock);
  }
  respond_raw(fd, !deny);
  if (report) {
    post_t *p = calloc(1, sizeof(post_t));
    if (p != NULL) {
      p->kind = 3;
      p->pid = pid;
      p->uid = uid;
      p->fd = -1;
      p->ident.dev = st.st_dev;
      p->ident.ino = st.st_ino;
      p->ident.size = st.st_size;
      char link[64];
      snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
      ssize_t n = readlink(link, p->path, sizeof(p->path) - 1);
      p->path[n > 0 ? n : 0] = 0;
    }
    pthread_mutex_lock(&lock);
    if (p == NULL || tsfn == NULL || napi_call_threadsafe_function(tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
      free(p);
      counters.open_reports_dropped++;
      unremember_report(st.st_dev, st.st_ino, pid);
      report_undo(uid);
    }
    pthread_mutex_unlock(&lock);
  }
  close(fd);
}

/* Whether a directory or file's stat says only root can change it (owner root, no write bit for
 * group or others; a POSIX ACL granting anyone write shows as the group write bit). */
static int root_only(const struct stat *st) { return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH)); }

/* Whether pid is in guardd's own user namespace: then it could not have made its own mount
 * namespace (that takes CAP_SYS_ADMIN there, root's), nor could any of its threads. */
static int same_userns(pid_t pid) {
  char p[64];
  struct stat a, b;
  snprintf(p, sizeof(p), "/proc/%d/ns/user", (int)pid);
  return pid > 0 && stat(p, &a) == 0 && stat("/proc/self/ns/user", &b) == 0 && a.st_ino == b.st_ino &&
         a.st_dev == b.st_dev;
}

/* Whether mount mnt_id is one of pid's mount namespace (a line of /proc/<pid>/mountinfo starts
 * with it): not so for a file exec'd through a descriptor another namespace opened. */
static int mount_of(pid_t pid, uint64_t mnt_id) {
  char p[64];
  snprintf(p, sizeof(p), "/proc/%d/mountinfo", (int)pid);
  FILE *f = fopen(p, "re");
  if (f == NULL) return 0;
  char *line = NULL;
  size_t cap = 0;
  int found = 0;
  while (!found && getline(&line, &cap, f) > 0) {
    char *end;
    unsigned long long id = strtoull(line, &end, 10);
    found = end != line && *end == ' ' && id == mnt_id;
  }
  free(line);
  fclose(f);
  return found;
}

/* Whether a file system type is one the walk never enters (skip_fstypes). */
static int skipped_fstype(const char *type) {
  for (int i = 0; i < skip_fstype_count; i++) {
    size_t n = strlen(skip_fstypes[i]);
    if (n > 0 && skip_fstypes[i][n - 1] == '.' ? strncmp(type, skip_fstypes[i], n) == 0
                                               : strcmp(type, skip_fstypes[i]) == 0)
      return 1;
  }
  return 0;
}

/* Whether the O_PATH descriptor fd is on a mount the walk may stat: its mount id read from
 * /proc/self/fdinfo and its type from /proc/self/mountinfo (neither asks the file system), not a
 * skipped type. A mount not found (detached meanwhile) is not. */
static int on_walkable_mount(int fd) {
  char p[64], buf[512];
  snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
  if (!read_text(p, buf, sizeof(buf))) return 0;
  char *m = strstr(buf, "mnt_id:");
  if (m == NULL) return 0;
  unsigned long long want = strtoull(m + 7, NULL, 10);
  FILE *f = fopen("/proc/self/mountinfo", "re");
  if (f == NULL) return 0;
  char *line = NULL;
  size_t cap = 0;
  int walkable = 0;
  while (getline(&line, &cap, f) > 0) {
    char *end;
    if (strtoull(line, &end, 10) != want || end == line || *end != ' ') continue;
    char *dash = strstr(line, " - ");
    if (dash != NULL) {
      char type[64];
      if (sscanf(dash + 3, "%63s", type) == 1) walkable = !skipped_fstype(type);
    }
    break;
  }
  free(line);
  fclose(f);
  return walkable;
}

/* The entry name of directory dfd, opened O_PATH without following a symlink (magic or not); when
 * it is a mount point, only onto a mount the walk may stat (on_walkable_mount). -1 otherwise. */
static int open_component(int dfd, const char *name) {
  struct open_how how = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                         .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
  int fd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
  if (fd >= 0 || errno != EXDEV || skip_fstype_count == 0) return fd; /* no list: no crossing */
  /* A mount point: crossing onto a mount's root asks nothing of its file system; stat'ing it may. */
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  fd = (int)syscall(SYS_openat2, dfd, name, &how, sizeof(how));
  if (fd >= 0 && !on_walkable_mount(fd)) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Whether the exec'd file (fd, st: the event's descriptor and its fstat; path: its name from
 * /proc/self/fd; pid: who execs it) may be left to the kernel: see "Kernel-cached allows" above. */
static int kernel_cacheable(int fd, const struct stat *st, const char *path, pid_t pid) {
  if (!hardlinks_protected || !S_ISREG(st->st_mode) || st->st_nlink != 1 || !root_only(st)) return 0;
  size_t len = strlen(path);
  if (len < 2 || path[0] != '/' || (len > 10 && strcmp(path + len - 10, " (deleted)") == 0)) return 0;
  /* The path of a file reached through a user's own mount namespace is that namespace's: a name
   * the user made up. Such a path is never walked here (it could lead into the user's FUSE daemon):
   * the file was exec'd by a process of guardd's user namespace, through a mount of its own. */
  struct statx fx;
  if (!same_userns(pid) || statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &fx) != 0 ||
      !(fx.stx_mask & STATX_MNT_ID) || !mount_of(pid, fx.stx_mnt_id))
    return 0;
  /* Component by component from /, each opened O_PATH below the directory already checked (no
   * symlink), and stat'ed only once it is known not to be on a FUSE or network mount: the path
   * may lead through a mount the user made over a directory of theirs (the program run through a
   * descriptor of the covered directory), and a stat or lookup there waits on their daemon. */
  struct stat d;
  int dfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return 0;
  int ok = fstat(dfd, &d) == 0 && S_ISDIR(d.st_mode) && root_only(&d);
  const char *name = path + 1;
  while (ok) {
    const char *slash = strchr(name, '/');
    size_t n = slash ? (size_t)(slash - name) : strlen(name);
    char comp[NAME_MAX + 1];
    if (n == 0 || n > NAME_MAX) {
      ok = 0;
      break;
    }
    memcpy(comp, name, n);
    comp[n] = 0;
    int nfd = open_component(dfd, comp);
    close(dfd);
    dfd = nfd;
    if (dfd < 0 || fstat(dfd, &d) != 0) {
      ok = 0;
      break;
    }
    if (slash == NULL) {
      /* ...and the name leads, here, to this very file (guardd's own namespace, a service's copy
       * of the machine's, has the same files at the same names, behind other mount ids). */
      ok = d.st_dev == st->st_dev && d.st_ino == st->st_ino;
      break;
    }
    ok = S_ISDIR(d.st_mode) && root_only(&d);
    name = slash + 1;
  }
  if (dfd >= 0) close(dfd);
  return ok;
}

/* Caller holds lock: the file of this event was allowed from the cache again; let the kernel
 * answer its next execs when kernel_cacheable said so (eligible). The same mark reports the close
 * of any writer of the file (FAN_CLOSE_WRITE), added first so no writer goes unreported. */
static void ignore_mark(int fd, int eligible) {
  if (!eligible || ignore_marks >= MAX_IGNORE_MARKS) return;
  if (fanotify_mark(fan_fd, FAN_MARK_ADD, FAN_CLOSE_WRITE, fd, NULL) != 0) {
    counters.ignore_mark_errors++;
  } else if (fanotify_mark(fan_fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, fd, NULL) != 0) {
    (void)fanotify_mark(fan_fd, FAN_MARK_REMOVE, FAN_CLOSE_WRITE, fd, NULL);
    counters.ignore_mark_errors++;
  } else {
    ignore_marks++;
    counters.ignore_marks_added++;
  }
}

/* A writer of a kernel-cached file closed it. The kernel drops the ignored mask on write(), but a
 * write through a shared mapping or by AIO raises no modify event and leaves it; the file cannot
 * be exec'd while a writer has it open (ETXTBSY), so taking it back here, at the close, makes its
 * next exec asked again (a cache miss: its mtime changed). Whether the ignored mask is still there
 * or not (a write, a flush), removing what is left of the mark is right. */
static void drop_ignore_mark(const struct fanotify_event_metadata *m) {
  pthread_mutex_lock(&lock);
  int ours = fanotify_mark(fan_fd, FAN_MARK_REMOVE, FAN_CLOSE_WRITE, m->fd, NULL) == 0;
  (void)fanotify_mark(fan_fd, FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, m->fd, NULL);
  if (ours) {
    if (ignore_marks > 0) ignore_marks--;
    counters.ignore_marks_dropped++;
  }
  pthread_mutex_unlock(&lock);
  close(m->fd);
}

static void handle_event(const struct fanotify_event_metadata *m) {
  if (m->mask & FAN_Q_OVERFLOW) {
    pthread_mutex_lock(&lock);
    counters.overflow++;
    pthread_mutex_unlock(&lock);
    return;
  }
  if (m->fd < 0) return;
  /* The kernel raises an exec's FAN_OPEN_EXEC_PERM and its FAN_OPEN_PERM as two events. */
  if ((m->mask & FAN_OPEN_PERM) && !(m->mask & FAN_OPEN_EXEC_PERM)) {
    handle_open(m);
    return;
  }
  if (m->mask & FAN_CLOSE_WRITE) {
    drop_ignore_mark(m);
    return;
  }
  if (!(m->mask & FAN_OPEN_EXEC_PERM)) {
    close(m->fd);
    return;
  }
  int fd = m->fd;
  pid_t pid = (pid_t)m->pid;
  pthread_mutex_lock(&lock);
  counters.events++;
  pthread_mutex_unlock(&lock);

  struct stat st;
  if (fstat(fd, &st) != 0) {
    pthread_mutex_lock(&lock);
    counters.unreadable++;
    answer(fd, 1);
    pthread_mutex_unlock(&lock);
    close(fd);
    return;
  }
  ident_t k;
  memset(&k, 0, sizeof(k));
  k.dev = st.st_dev;
  k.ino = st.st_ino;
  k.size = st.st_size;
  k.mtime_s = st.st_mtim.tv_sec;
  k.mtime_ns = st.st_mtim.tv_nsec;
  k.ctime_s = st.st_ctim.tv_sec;
  k.ctime_ns = st.st_ctim.tv_nsec;
  k.mount = (uint64_t)mount_of_fd(fd, 1);
  static char path[PATH_MAX]; /* only the reader thread runs handle_event */
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof(path) - 1);
  path[n > 0 ? n : 0] = 0;
  k.path_hash = siphash(path, strlen(path));

  /* The hot path: a file decided before under this policy costs one fstat and one lookup (and,
   * the first time, the checks that hand its next execs to the kernel). */
  pthread_mutex_lock(&lock);
  int cached = cache_get(&k), room = ignore_marks < MAX_IGNORE_MARKS;
  pthread_mutex_unlock(&lock);
  int eligible = cached == 1 && room && kernel_cacheable(fd, &st, path, pid);
  pthread_mutex_lock(&lock);
  cached = cache_get(&k);
  if (cached == 1) {
    counters.cache_hits++;
    answer(fd, 1);
    ignore_mark(fd, eligible);
    pthread_mutex_unlock(&lock);
    close(fd);
    return;
  }
  pthread_mutex_unlock(&lock);

  if (cached < 0 && (pid == self_pid || (pid > 0 && ppid_of(pid) == self_pid && same_uids(pid)))) {
    pthread_mutex_lock(&lock);
    counters.self_allowed++;
    answer(fd, 1);
    pthread_mutex_unlock(&lock);
    close(fd);
    return;
  }

  post_t *p = calloc(1, sizeof(post_t));
  if (p == NULL) {
    pthread_mutex_lock(&lock);
    answer(fd, 1);
    pthread_mutex_unlock(&lock);
    close(fd);
    return;
  }
  p->pid = pid;
  p->fd = fd;
  p->ident = k;
  p->mount_id = mount_of_fd(fd, 0);
  memcpy(p->path, path, sizeof(p->path));

  pthread_mutex_lock(&lock);
  cached = cache_get(&k);
  if (cached >= 0) {
    counters.cache_hits++;
    /* Admitted before the answer, while the process waits for it (report_admit). */
    int admitted = !cached && report_admit(pid, &p->uid);
    answer(fd, cached);
    if (!cached && !admitted) {
      /* Refused and counted, not reported: the queue and the loop are kept for decisions. */
      counters.deny_reports_dropped++;
      free(p);
    } else if (!cached) {
      /* Already denied; JS records the attempt. The fd number is not valid for JS any more. */
      p->kind = 1;
      p->fd = -1;
      if (tsfn == NULL || napi_call_threadsafe_function(tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
        report_undo(p->uid);
        free(p);
        counters.deny_reports_dropped++;
      }
    } else {
      free(p);
    }
    pthread_mutex_unlock(&lock);
    close(fd);
    return;
  }
  slot_t *s = slot_take();
  if (s == NULL) {
    counters.overflow++;
    answer(fd, 1);
    pthread_mutex_unlock(&lock);
    close(fd);
    free(p);
    return;
  }
  s->state = SLOT_WAITING;
  s->fd = fd;
  s->id = next_id++;
  s->generation = generation;
  s->ident = k;
  s->settled = settled_ctime(&st.st_ctim);
  s->lease = take_lease(fd);
  clock_gettime(CLOCK_MONOTONIC, &s->deadline);
  ts_add_ms(&s->deadline, deadline_ms);
  p->kind = 0;
  p->id = s->id;
  counters.posted++;
  if (tsfn == NULL || napi_call_threadsafe_function(tsfn, p, napi_tsfn_nonblocking) != napi_ok) {
    free(p);
    counters.overflow++;
    answer(fd, 1);
    slot_free(s);
  }
  pthread_mutex_unlock(&lock);
}

/* Caller holds lock. Answers every waiting event past its deadline; returns ms to the next one. */
static long expire(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long next = IDLE_POLL_MS;
  for (int i = 0; i < MAX_PENDING; i++) {
    slot_t *s = &slots[i];
    if (s->state != SLOT_WAITING) continue;
    long left = ts_diff_ms(&s->deadline, &now);
    if (left <= 0) {
      int changed = slot_changed(s, 1);
      answer(s->fd, !changed);
      counters.deadline_misses++;
      s->state = SLOT_EXPIRED; /* fd kept until JS responds or the slot is reclaimed */
      /* answered: writers need not wait for JS (what was seen stays for its late verdict) */
      if (s->lease > 0) (void)fcntl(s->fd, F_SETLEASE, F_UNLCK);
      if (s->lease > 0) s->lease = changed ? -1 : 0;
    } else if (left < next) {
      next = left;
    }
  }
  return next;
}

static void *run(void *arg) {
  (void)arg;
  /* Named so `top -H` / /proc/<pid>/task/<tid>/comm tell guardd's threads apart. */
  (void)pthread_setname_np(pthread_self(), "tg-execperm");
  char *buf = malloc(READ_BUF_BYTES);
  if (buf == NULL) return NULL;
  long timeout = IDLE_POLL_MS;
  while (!stopping) {
    struct pollfd fds[3] = {
        {.fd = fan_fd, .events = POLLIN},
        {.fd = wake_pipe[0], .events = POLLIN},
        {.fd = mountinfo_fd, .events = POLLPRI},
    };
    int r = poll(fds, mountinfo_fd >= 0 ? 3 : 2, (int)(timeout < 1 ? 1 : timeout));
    if (stopping) break;
    if (r > 0 && (fds[0].revents & POLLIN)) {
      for (;;) {
        ssize_t len = read(fan_fd, buf, READ_BUF_BYTES);
        if (len <= 0) break;
        const struct fanotify_event_metadata *m = (const struct fanotify_event_metadata *)buf;
        while (FAN_EVENT_OK(m, len)) {
          if (m->vers == FANOTIFY_METADATA_VERSION) handle_event(m);
          else if (m->fd >= 0) close(m->fd);
          m = FAN_EVENT_NEXT(m, len);
        }
      }
    }
    if (r > 0 && mountinfo_fd >= 0 && (fds[2].revents & (POLLPRI | POLLERR))) {
      pthread_mutex_lock(&lock);
      counters.mount_changes++;
      if (mount_notice_waiting) {
        /* JS has not taken the last notice yet: it reads the whole table when it does. */
        counters.mount_notices_folded++;
      } else {
        post_t *p = calloc(1, sizeof(post_t));
        if (p) {
          p->kind = 2;
          if (tsfn != NULL && napi_call_threadsafe_function(tsfn, p, napi_tsfn_nonblocking) == napi_ok)
            mount_notice_waiting = 1;
          else {
            free(p);
            counters.overflow++;
          }
        }
      }
      pthread_mutex_unlock(&lock);
      /* Re-arm: mountinfo signals POLLPRI until it is read again from the start. */
      char tmp[4096];
      lseek(mountinfo_fd, 0, SEEK_SET);
      while (read(mountinfo_fd, tmp, sizeof(tmp)) > 0) {
      }
    }
    if (r > 0 && (fds[1].revents & POLLIN)) {
      char tmp[64];
      ssize_t w = read(wake_pipe[0], tmp, sizeof(tmp));
      (void)w;
    }
    pthread_mutex_lock(&lock);
    timeout = expire();
    clock_gettime(CLOCK_MONOTONIC, &last_loop);
    pthread_mutex_unlock(&lock);
  }
  free(buf);
  return NULL;
}

static napi_value throw_code(napi_env env, const char *what) {
  char msg[PATH_MAX + 256];
  snprintf(msg, sizeof(msg), "%s: %s", what, strerror(errno));
  napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", msg);
  return NULL;
}

static void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

static void call_js(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  post_t *p = data;
  if (p->kind == 1 || p->kind == 3) {
    pthread_mutex_lock(&lock);
    report_undo(p->uid);
    pthread_mutex_unlock(&lock);
  }
  if (p->kind == 2) {
    /* Taken before JS reads the table: a change from now on posts a notice of its own. */
    pthread_mutex_lock(&lock);
    mount_notice_waiting = 0;
    pthread_mutex_unlock(&lock);
  }
  if (env == NULL || cb == NULL) {
    free(p);
    return;
  }
  napi_value ev, s, undef;
  napi_create_object(env, &ev);
  const char *kind = p->kind == 0   ? "decide"
                     : p->kind == 1 ? "denied_cached"
                     : p->kind == 2 ? "mounts_changed"
                                    : "open_denied";
  napi_create_string_utf8(env, kind, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, ev, "kind", s);
  if (p->kind != 2) {
    set_num(env, ev, "id", (double)p->id);
    set_num(env, ev, "pid", p->pid);
    set_num(env, ev, "fd", p->fd);
    napi_create_string_utf8(env, p->path, NAPI_AUTO_LENGTH, &s);
    napi_set_named_property(env, ev, "path", s);
    napi_value id;
    napi_create_object(env, &id);
    set_num(env, id, "dev", (double)p->ident.dev);
    set_num(env, id, "ino", (double)p->ident.ino);
    set_num(env, id, "size", (double)p->ident.size);
    set_num(env, id, "mtimeMs", (double)p->ident.mtime_s * 1000.0 + (double)p->ident.mtime_ns / 1e6);
    set_num(env, id, "ctimeMs", (double)p->ident.ctime_s * 1000.0 + (double)p->ident.ctime_ns / 1e6);
    set_num(env, id, "mount", (double)p->ident.mount);
    if (p->kind == 0) set_num(env, ev, "mountId", (double)p->mount_id);
    char key[220];
    snprintf(key, sizeof(key), "%llu:%llu:%lld:%lld.%09lld:%lld.%09lld:%llu:%016llx", (unsigned long long)p->ident.dev,
             (unsigned long long)p->ident.ino, (long long)p->ident.size, (long long)p->ident.mtime_s,
             (long long)p->ident.mtime_ns, (long long)p->ident.ctime_s, (long long)p->ident.ctime_ns,
             (unsigned long long)p->ident.mount, (unsigned long long)p->ident.path_hash);
    napi_create_string_utf8(env, key, NAPI_AUTO_LENGTH, &s);
    napi_set_named_property(env, id, "key", s);
    napi_set_named_property(env, ev, "identity", id);
  }
  free(p);
  napi_get_undefined(env, &undef);
  napi_call_function(env, undef, cb, 1, &ev, NULL);
}

/* What a start that failed half-way had opened, closed again (a later start opens them anew). */
static void undo_start(void) {
  if (fan_fd >= 0) close(fan_fd);
  fan_fd = -1;
  for (int i = 0; i < 2; i++) {
    if (wake_pipe[i] >= 0) close(wake_pipe[i]);
    wake_pipe[i] = -1;
  }
  if (mountinfo_fd >= 0) close(mountinfo_fd);
  mountinfo_fd = -1;
}

static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 2) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "start(options, onEvent) needs two arguments");
    return NULL;
  }
  if (running) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "already started");
    return NULL;
  }
  uint64_t key[2];
  if (getrandom(key, sizeof(key), 0) != (ssize_t)sizeof(key)) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "getrandom failed: no key for the verdict cache");
    return NULL;
  }
  sip_k0 = key[0];
  sip_k1 = key[1];
  napi_value v;
  int32_t ms = 200;
  if (napi_get_named_property(env, argv[0], "deadlineMs", &v) == napi_ok) napi_get_value_int32(env, v, &ms);
  if (ms < 1 || ms > 10000) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "deadlineMs must be 1..10000");
    return NULL;
  }
  deadline_ms = ms;
  skip_fstype_count = 0;
  napi_value list;
  uint32_t list_len = 0;
  if (napi_get_named_property(env, argv[0], "skipFstypes", &list) == napi_ok &&
      napi_get_array_length(env, list, &list_len) == napi_ok) {
    for (uint32_t i = 0; i < list_len && skip_fstype_count < MAX_SKIP_FSTYPES; i++) {
      napi_value e;
      size_t l;
      if (napi_get_element(env, list, i, &e) == napi_ok &&
          napi_get_value_string_utf8(env, e, skip_fstypes[skip_fstype_count], sizeof(skip_fstypes[0]), &l) ==
              napi_ok &&
          l > 0)
        skip_fstype_count++;
    }
  }
  self_pid = getpid();
  memset(slots, 0, sizeof(slots));
  for (int i = 0; i < MAX_PENDING; i++) slots[i].fd = -1;
  memset(cache, 0, sizeof(cache));
  memset(file_marks, 0, sizeof(file_marks));
  reports_queued = 0;
  mount_notice_waiting = 0;
  report_tokens = MAX_REPORTS;
  memset(user_buckets, 0, sizeof(user_buckets));
  clock_gettime(CLOCK_MONOTONIC, &report_refill);
  ignore_marks = 0;
  memset(&counters, 0, sizeof(counters));
  int ph = open("/proc/sys/fs/protected_hardlinks", O_RDONLY | O_CLOEXEC);
  char phv[4] = {0};
  hardlinks_protected = ph >= 0 && read(ph, phv, sizeof(phv) - 1) > 0 && phv[0] == '1';
  if (ph >= 0) close(ph);
  clock_gettime(CLOCK_MONOTONIC, &last_loop);
  stopping = 0;

  fan_fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (fan_fd < 0) return throw_code(env, "fanotify_init");
  if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
    wake_pipe[0] = wake_pipe[1] = -1;
    undo_start();
    return throw_code(env, "pipe2");
  }
  mountinfo_fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (mountinfo_fd >= 0) {
    char tmp[4096];
    while (read(mountinfo_fd, tmp, sizeof(tmp)) > 0) {
    }
  }
  napi_value name;
  napi_create_string_utf8(env, "execperm", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[1], NULL, name, TSFN_QUEUE, 1, NULL, NULL, NULL, call_js, &tsfn) !=
      napi_ok) {
    undo_start();
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "napi_create_threadsafe_function failed");
    return NULL;
  }
  napi_unref_threadsafe_function(env, tsfn);
  if (pthread_create(&thread, NULL, run, NULL) != 0) {
    napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
    tsfn = NULL;
    undo_start();
    return throw_code(env, "pthread_create");
  }
  running = 1;
  return NULL;
}

static napi_value do_mark(napi_env env, napi_callback_info info, unsigned int op) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (!running) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "not started");
    return NULL;
  }
  char path[PATH_MAX], kind[32];
  size_t len;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], kind, sizeof(kind), &len) != napi_ok) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "mark(path, kind): two strings");
    return NULL;
  }
  unsigned int type = strcmp(kind, "filesystem") == 0 ? FAN_MARK_FILESYSTEM : FAN_MARK_MOUNT;
  if (fanotify_mark(fan_fd, op | type, FAN_OPEN_EXEC_PERM, AT_FDCWD, path) != 0) {
    char what[PATH_MAX + 32];
    snprintf(what, sizeof(what), "fanotify_mark %s", path);
    return throw_code(env, what);
  }
  return NULL;
}

static napi_value mark(napi_env env, napi_callback_info info) { return do_mark(env, info, FAN_MARK_ADD); }
static napi_value unmark(napi_env env, napi_callback_info info) { return do_mark(env, info, FAN_MARK_REMOVE); }

static napi_value str_result(napi_env env, const char *what) {
  napi_value r;
  napi_create_string_utf8(env, what, NAPI_AUTO_LENGTH, &r);
  return r;
}

/* "error:<ERRNO NAME>" for the errnos a path can answer with; "error:<n>" otherwise. */
static napi_value errno_result(napi_env env, int e) {
  const char *name = e == ENOENT ? "ENOENT"
                     : e == ELOOP ? "ELOOP"
                     : e == EXDEV ? "EXDEV"
                     : e == ENOTDIR ? "ENOTDIR"
                     : e == EACCES ? "EACCES"
                     : e == EPERM ? "EPERM"
                     : e == EAGAIN ? "EAGAIN"
                     : e == ENOSYS ? "ENOSYS"
                     : e == ENOSPC ? "ENOSPC"
                     : e == EINVAL ? "EINVAL"
                     : NULL;
  char buf[64];
  if (name) snprintf(buf, sizeof(buf), "error:%s", name);
  else snprintf(buf, sizeof(buf), "error:%d", e);
  return str_result(env, buf);
}

/* The file at mount/rel opened for reading, checked to be the regular file (dev, ino), with one
 * link when one_link. Returns the fd, or -1 with *why set to a static reason or NULL with errno. */
static int open_marked_target(const char *mount, const char *rel, uint64_t dev, uint64_t ino, int one_link,
                              const char **why) {
  *why = NULL;
  struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
                         .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS};
  int mfd = (int)syscall(SYS_openat2, AT_FDCWD, mount, &how, sizeof(how));
  if (mfd < 0) return -1;
  struct open_how below = {.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                           .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV |
                                      RESOLVE_BENEATH};
  int pfd = (int)syscall(SYS_openat2, mfd, rel, &below, sizeof(below));
  int saved = errno;
  close(mfd);
  errno = saved;
  if (pfd < 0) return -1;
  struct stat st;
  if (fstat(pfd, &st) != 0) {
    saved = errno;
    close(pfd);
    errno = saved;
    return -1;
  }
  if (!S_ISREG(st.st_mode)) *why = "not_file";
  else if ((uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) *why = "changed";
  else if (one_link && st.st_nlink != 1) *why = "linked";
  if (*why) {
    close(pfd);
    return -1;
  }
  /* fanotify_mark takes no O_PATH descriptor: reopen this very file (not its name) for reading.
   * O_NONBLOCK: a lease its owner holds answers EWOULDBLOCK instead of holding guardd. */
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", pfd);
  int rfd = open(link, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  saved = errno;
  close(pfd);
  errno = saved;
  if (rfd < 0) return -1;
  if (fstat(rfd, &st) != 0 || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
    close(rfd);
    *why = "changed";
    return -1;
  }
  return rfd;
}

static int file_args(napi_env env, napi_callback_info info, char *mount, char *rel, uint64_t *dev, uint64_t *ino) {
  size_t argc = 4, len;
  napi_value argv[4];
  double d = 0, i = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      napi_get_value_string_utf8(env, argv[0], mount, PATH_MAX, &len) != napi_ok || len == 0 ||
      len >= PATH_MAX - 1 || napi_get_value_string_utf8(env, argv[1], rel, PATH_MAX, &len) != napi_ok ||
      len == 0 || len >= PATH_MAX - 1 || napi_get_value_double(env, argv[2], &d) != napi_ok ||
      napi_get_value_double(env, argv[3], &i) != napi_ok || d < 0 || i < 0) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "markFile(mountPoint, relPath, dev, ino)");
    return 0;
  }
  if (!running) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "not started");
    return 0;
  }
  *dev = (uint64_t)d;
  *ino = (uint64_t)i;
  return 1;
}

/* markFile(mountPoint, relPath, dev, ino) → 'marked' | 'already' | 'full' | 'not_file' | 'changed'
 * | 'linked' | 'error:<ERRNO>'. */
static napi_value mark_file(napi_env env, napi_callback_info info) {
  static char mount[PATH_MAX], rel[PATH_MAX];
  uint64_t dev, ino;
  if (!file_args(env, info, mount, rel, &dev, &ino)) return NULL;
  const char *why;
  /* Opened before taking the lock: an open of a file already marked is answered by the thread. */
  int fd = open_marked_target(mount, rel, dev, ino, 1, &why);
  if (fd < 0) return why ? str_result(env, why) : errno_result(env, errno);
  pthread_mutex_lock(&lock);
  if (file_mark_find(dev, ino) != NULL) {
    pthread_mutex_unlock(&lock);
    close(fd);
    return str_result(env, "already");
  }
  file_mark_t *slot = NULL;
  for (int i = 0; i < MAX_FILE_MARKS && slot == NULL; i++)
    if (!file_marks[i].used) slot = &file_marks[i];
  if (slot == NULL) {
    pthread_mutex_unlock(&lock);
    close(fd);
    return str_result(env, "full");
  }
  /* In the table before the mark exists, so no open is ever let through as "not in the table". */
  slot->used = 1;
  slot->dev = dev;
  slot->ino = ino;
  slot->last_pid = 0;
  int r = fanotify_mark(fan_fd, FAN_MARK_ADD, FAN_OPEN_PERM, fd, NULL);
  int e = errno;
  if (r != 0) slot->used = 0;
  pthread_mutex_unlock(&lock);
  close(fd);
  return r == 0 ? str_result(env, "marked") : errno_result(env, e);
}

/* unmarkFile(mountPoint, relPath, dev, ino) → 'removed' | 'changed' | 'not_file' | 'error:<ERRNO>'. The table forgets (dev, ino) whatever the path leads to now (a mark it could not
 * reach any more allows, since the thread denies only what the table holds). */
static napi_value unmark_file(napi_env env, napi_callback_info info) {
  static char mount[PATH_MAX], rel[PATH_MAX];
  uint64_t dev, ino;
  if (!file_args(env, info, mount, rel, &dev, &ino)) return NULL;
  pthread_mutex_lock(&lock);
  file_mark_t *f = file_mark_find(dev, ino);
  if (f != NULL) f->used = 0;
  pthread_mutex_unlock(&lock);
  const char *why;
  int fd = open_marked_target(mount, rel, dev, ino, 0, &why);
  if (fd < 0) return why ? str_result(env, why) : errno_result(env, errno);
  int r = fanotify_mark(fan_fd, FAN_MARK_REMOVE, FAN_OPEN_PERM, fd, NULL);
  int e = errno;
  close(fd);
  return r == 0 ? str_result(env, "removed") : errno_result(env, e);
}

/* Caller holds lock. Removes every inode mark of the group (open marks and kernel-cached allows)
 * and empties their tables; the mount and filesystem marks stay. 0, or -1 with errno. */
static int flush_inode_marks(void) {
  memset(file_marks, 0, sizeof(file_marks));
  ignore_marks = 0;
  return fanotify_mark(fan_fd, FAN_MARK_FLUSH, 0, AT_FDCWD, "/");
}

/* flushFileMarks(): removes every inode mark of the group and empties the table. */
static napi_value flush_file_marks(napi_env env, napi_callback_info info) {
  (void)info;
  if (!running) return NULL;
  pthread_mutex_lock(&lock);
  int r = flush_inode_marks();
  pthread_mutex_unlock(&lock);
  if (r != 0) return throw_code(env, "fanotify_mark FLUSH");
  return NULL;
}

static napi_value respond(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  double idd = 0;
  bool allow = true, cacheable = false;
  if (argc < 3 || napi_get_value_double(env, argv[0], &idd) != napi_ok ||
      napi_get_value_bool(env, argv[1], &allow) != napi_ok ||
      napi_get_value_bool(env, argv[2], &cacheable) != napi_ok) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "respond(id, allow, cacheable)");
    return NULL;
  }
  uint64_t id = (uint64_t)idd;
  const char *outcome = "unknown";
  pthread_mutex_lock(&lock);
  if (running) {
    for (int i = 0; i < MAX_PENDING; i++) {
      slot_t *s = &slots[i];
      if (s->state == SLOT_FREE || s->id != id) continue;
      /* Written while its exec waited: what JS read is of no version the exec will run. */
      int changed = allow && slot_changed(s, s->state == SLOT_WAITING);
      if (s->state == SLOT_WAITING) {
        answer(s->fd, allow && !changed);
        outcome = "answered";
      } else {
        counters.late_responses++;
        outcome = "late";
      }
      /* A late verdict still serves the next exec of the same file; an allow only once the file's
       * identity has settled (IDENTITY_SETTLE_MS). */
      if (cacheable && !changed && (!allow || s->settled)) cache_put(&s->ident, s->generation, allow);
      slot_free(s);
      break;
    }
  }
  pthread_mutex_unlock(&lock);
  napi_value r;
  napi_create_string_utf8(env, outcome, NAPI_AUTO_LENGTH, &r);
  return r;
}

static napi_value set_generation(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double g = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_get_value_double(env, argv[0], &g) != napi_ok) {
    napi_throw_error(env, "GUARD_EXEC_DENY_FAILED", "setGeneration(n)");
    return NULL;
  }
  pthread_mutex_lock(&lock);
  generation = (uint64_t)g;
  /* Under the lock the thread adds kernel-cached allows with: none of the old policy survives. */
  int r = running ? flush_inode_marks() : 0;
  pthread_mutex_unlock(&lock);
  if (r != 0) return throw_code(env, "fanotify_mark FLUSH");
  return NULL;
}

static napi_value get_counters(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value o;
  napi_create_object(env, &o);
  pthread_mutex_lock(&lock);
  counters_t c = counters;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  long loop_age = running ? ts_diff_ms(&now, &last_loop) : 0;
  int waiting = 0, file_mark_count = 0;
  for (int i = 0; i < MAX_PENDING; i++)
    if (slots[i].state == SLOT_WAITING) waiting++;
  for (int i = 0; i < MAX_FILE_MARKS; i++)
    if (file_marks[i].used) file_mark_count++;
  int ignores = ignore_marks;
  pthread_mutex_unlock(&lock);
  set_num(env, o, "events", (double)c.events);
  set_num(env, o, "cache_hits", (double)c.cache_hits);
  set_num(env, o, "allowed", (double)c.allowed);
  set_num(env, o, "denied", (double)c.denied);
  set_num(env, o, "deadline_misses", (double)c.deadline_misses);
  set_num(env, o, "overflow", (double)c.overflow);
  set_num(env, o, "self_allowed", (double)c.self_allowed);
  set_num(env, o, "posted", (double)c.posted);
  set_num(env, o, "late_responses", (double)c.late_responses);
  set_num(env, o, "unreadable", (double)c.unreadable);
  set_num(env, o, "mount_changes", (double)c.mount_changes);
  set_num(env, o, "mount_notices_folded", (double)c.mount_notices_folded);
  set_num(env, o, "open_events", (double)c.open_events);
  set_num(env, o, "open_denied", (double)c.open_denied);
  set_num(env, o, "open_self_allowed", (double)c.open_self_allowed);
  set_num(env, o, "open_reports_dropped", (double)c.open_reports_dropped);
  set_num(env, o, "deny_reports_dropped", (double)c.deny_reports_dropped);
  set_num(env, o, "changed_denied", (double)c.changed_denied);
  set_num(env, o, "file_marks", file_mark_count);
  set_num(env, o, "ignore_marks", ignores);
  set_num(env, o, "ignore_marks_added", (double)c.ignore_marks_added);
  set_num(env, o, "ignore_mark_errors", (double)c.ignore_mark_errors);
  set_num(env, o, "ignore_marks_dropped", (double)c.ignore_marks_dropped);
  set_num(env, o, "waiting", waiting);
  set_num(env, o, "loop_age_ms", (double)loop_age);
  return o;
}

static napi_value stop(napi_env env, napi_callback_info info) {
  (void)env;
  (void)info;
  if (!running) return NULL;
  stopping = 1;
  ssize_t w = write(wake_pipe[1], "x", 1);
  (void)w;
  pthread_join(thread, NULL);
  pthread_mutex_lock(&lock);
  for (int i = 0; i < MAX_PENDING; i++) {
    if (slots[i].state == SLOT_WAITING) answer(slots[i].fd, 1);
    if (slots[i].state != SLOT_FREE) slot_free(&slots[i]);
  }
  /* Closing the group allows whatever the kernel still queues for it. */
  close(fan_fd);
  fan_fd = -1;
  running = 0;
  pthread_mutex_unlock(&lock);
  close(wake_pipe[0]);
  close(wake_pipe[1]);
  wake_pipe[0] = wake_pipe[1] = -1;
  if (mountinfo_fd >= 0) close(mountinfo_fd);
  mountinfo_fd = -1;
  if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
  tsfn = NULL;
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"start", NULL, start, NULL, NULL, NULL, napi_default, NULL},
      {"mark", NULL, mark, NULL, NULL, NULL, napi_default, NULL},
      {"unmark", NULL, unmark, NULL, NULL, NULL, napi_default, NULL},
      {"markFile", NULL, mark_file, NULL, NULL, NULL, napi_default, NULL},
      {"unmarkFile", NULL, unmark_file, NULL, NULL, NULL, napi_default, NULL},
      {"flushFileMarks", NULL, flush_file_marks, NULL, NULL, NULL, napi_default, NULL},
      {"respond", NULL, respond, NULL, NULL, NULL, napi_default, NULL},
      {"setGeneration", NULL, set_generation, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, get_counters, NULL, NULL, NULL, napi_default, NULL},
      {"stop", NULL, stop, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
