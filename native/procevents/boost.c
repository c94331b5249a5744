/*
 * boost: guardd's JS thread at real-time priority while it handles a batch of exec events, so the
 * kill of a banned script does not wait for a core behind the very program it is about to kill.
 *
 * Why: measured on a 2-vCPU VM (Linux 6.18, `perf sched timehist`), the slow kills of
 * bench/exec-events.bench.js were the JS thread woken by the reader and then left runnable for
 * 2–4 ms: the scheduler queued it on the core where the freshly exec'd `node` was starting (both
 * cores busy at that instant), and neither its nice −10 nor its short slice made it preempt there
 * (EEVDF lets a woken task preempt only when it is eligible, which a thread that ran its share
 * recently is not), while the other core went idle without pulling it over. A real-time task is
 * placed on a core running only ordinary tasks and preempts at once.
 *
 * How, and its bounds:
 *  - the reader (procevents.c) raises the JS thread to SCHED_FIFO BOOST_PRIORITY just before it
 *    hands a batch over; JS lowers it back (endBoost) once the batch is handled (a setImmediate
 *    after the batch's callbacks: the kill path runs in between). Lowered means the fair policy,
 *    nice and slice it had before, read at each raise;
 *  - reset-on-fork is set with the first raise and kept (clearing it needs CAP_SYS_NICE): a child
 *    guardd forks starts at SCHED_OTHER and nice 0, never real time;
 *  - a boost JS does not end within BOOST_MAX_NS (JS stuck, or the test hook that stalls it) is
 *    ended on a timerfd by a thread of its own, the keeper (`tg-boost`), counted as an overrun. Not
 *    by the reader: the reader reads users' /proc files, and a user can make a read of their
 *    process's cmdline wait as long as they like (its memory-map lock, held across a fault on their
 *    stalled FUSE mount); the keeper only sleeps on the timer and lowers the JS thread. It must
 *    preempt the thread it raised, so boosts are made only once it runs above BOOST_PRIORITY
 *    (SCHED_FIFO KEEPER_PRIORITY: the unit allows it with LimitRTPRIO=2);
 *  - CPU budget: the JS thread's CPU time while raised is charged to a budget refilled at
 *    BOOST_CPU_RATE_NS a second (10 % of a core, at most BOOST_CPU_BURST_NS banked), and a boost is
 *    made only while the budget covers BOOST_MAX_NS; otherwise the batch is handed over at
 *    ordinary priority (counted). A flood
 *    of execs therefore keeps guardd's JS thread out of real time for most of each second: real-time
 *    threads are outside the service's CPUQuota (cgroup cpu.max bounds the fair class only).
 *
 * The JS thread's CPU time is read through its own CPU clock (pthread_getcpuclockid), from either
 * thread. All state is under one mutex: raise (reader), end (JS) and expiry (reader) race.
 * Hand-written for the same reasons as the rest of this addon (Node has no sched_setattr).
 */
#define _GNU_SOURCE
#include "boost.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* The JS thread's real-time priority while raised: the lowest, under the keeper's. */
#define BOOST_PRIORITY 1
#define KEEPER_PRIORITY 2
/* A boost JS has not ended after this long is ended by the keeper (ns). A batch's kill takes
 * ~1 ms of the JS thread; 20 ms covers a slow one and bounds a stuck one. */
#define BOOST_MAX_NS (20ULL * 1000000ULL)
/* CPU the JS thread may spend raised: refilled at this many ns a second, banked up to the burst. */
#define BOOST_CPU_RATE_NS (100ULL * 1000000ULL)
#define BOOST_CPU_BURST_NS (100ULL * 1000000ULL)

/* struct sched_attr as of SCHED_ATTR_SIZE_VER0 (48 bytes), as in native/sched/sched.c. */
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
#define TG_SCHED_FIFO 1
#define TG_SCHED_BATCH 3
#define TG_SCHED_FLAG_RESET_ON_FORK 0x01ULL

struct boost {
  pid_t tid;
  clockid_t cpu_clock;
  int timer_fd, stop_fd;
  pthread_t keeper;
  int keeper_started;
  pthread_mutex_t mu;
  int enabled;
  const char *off;
  /* Whether the JS thread is raised now, and what to restore when it is lowered. */
  int raised;
  struct tg_sched_attr fair;
  uint64_t cpu_at_raise;
  /* Budget (ns of CPU) as of `refilled` (CLOCK_MONOTONIC ns). */
  uint64_t budget, refilled;
  /* Bumped at each hand-over made while raised, so an end for an older batch keeps a newer one's boost. */
  uint64_t generation;
  uint64_t n_raised, n_over_budget, n_overruns, n_errors;
};

static uint64_t clock_ns(clockid_t clock) {
  struct timespec t;
  if (clock_gettime(clock, &t) != 0) return 0;
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static int tg_getattr(pid_t tid, struct tg_sched_attr *attr) {
  memset(attr, 0, sizeof(*attr));
  return (int)syscall(SYS_sched_getattr, tid, attr, (unsigned int)sizeof(*attr), 0U);
}

static int tg_setattr(pid_t tid, struct tg_sched_attr *attr) {
  attr->size = sizeof(*attr);
  return (int)syscall(SYS_sched_setattr, tid, attr, 0U);
}

static void arm(boost_t *b, uint64_t ns) {
  struct itimerspec its;
  memset(&its, 0, sizeof(its));
  its.it_value.tv_sec = (time_t)(ns / 1000000000ULL);
  its.it_value.tv_nsec = (long)(ns % 1000000000ULL);
  (void)timerfd_settime(b->timer_fd, 0, &its, NULL);
}

static void lower(boost_t *b, int overrun);

/* The keeper thread: takes KEEPER_PRIORITY (boosts are on only if it could), then ends every boost
 * its timer says ran too long, until boost_stop. */
static void *keeper(void *arg) {
  boost_t *b = arg;
  (void)pthread_setname_np(pthread_self(), "tg-boost");
  struct sched_param sp = {.sched_priority = KEEPER_PRIORITY};
  int rt = pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0;
  pthread_mutex_lock(&b->mu);
  if (b->off == NULL || strcmp(b->off, "closed") != 0) {
    b->enabled = rt;
    b->off = rt ? NULL
                : "guardd's boost thread cannot run above real-time priority 1 (no CAP_SYS_NICE and "
                  "RLIMIT_RTPRIO below 2)";
  }
  pthread_mutex_unlock(&b->mu);
  struct pollfd fds[2] = {{.fd = b->timer_fd, .events = POLLIN}, {.fd = b->stop_fd, .events = POLLIN}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break;
    if (fds[0].revents & POLLIN) {
      uint64_t n;
      (void)!read(b->timer_fd, &n, sizeof(n));
      pthread_mutex_lock(&b->mu);
      lower(b, 1);
      pthread_mutex_unlock(&b->mu);
    }
  }
  return NULL;
}

boost_t *boost_new(void) {
  boost_t *b = calloc(1, sizeof(*b));
  if (b == NULL) return NULL;
  b->tid = (pid_t)syscall(SYS_gettid);
  if (pthread_getcpuclockid(pthread_self(), &b->cpu_clock) != 0) b->cpu_clock = CLOCK_THREAD_CPUTIME_ID;
  b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  b->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (b->timer_fd < 0 || b->stop_fd < 0) {
    if (b->timer_fd >= 0) close(b->timer_fd);
    if (b->stop_fd >= 0) close(b->stop_fd);
    free(b);
    return NULL;
  }
  pthread_mutex_init(&b->mu, NULL);
  b->off = "its thread has not started";
  b->budget = BOOST_CPU_BURST_NS;
  b->refilled = clock_ns(CLOCK_MONOTONIC);
  if (pthread_create(&b->keeper, NULL, keeper, b) == 0) b->keeper_started = 1;
  else b->off = "its thread could not start";
  return b;
}

/* (mu held) Back to the fair policy it had; `overrun`: the keeper's timer did it. */
static void lower(boost_t *b, int overrun) {
  if (!b->raised) return;
  struct tg_sched_attr want = b->fair;
  if (tg_setattr(b->tid, &want) != 0) {
    /* Its old nice or slice refused (a lowered RLIMIT_NICE): SCHED_OTHER at nice 0 and the default
     * slice is always allowed, and real time must end. */
    b->n_errors++;
    b->enabled = 0;
    b->off = "lowering guardd's JS thread to its own priority failed";
    memset(&want, 0, sizeof(want));
    want.sched_policy = TG_SCHED_OTHER;
    want.sched_flags = TG_SCHED_FLAG_RESET_ON_FORK;
    if (tg_setattr(b->tid, &want) != 0 && errno != ESRCH) {
      /* Still raised (the thread is there: ESRCH would mean it is gone): the keeper tries again. */
      b->n_errors++;
      arm(b, BOOST_MAX_NS);
      return;
    }
  }
  arm(b, 0);
  uint64_t spent = clock_ns(b->cpu_clock) - b->cpu_at_raise;
  b->budget = b->budget > spent ? b->budget - spent : 0;
  b->raised = 0;
  if (overrun) b->n_overruns++;
}

void boost_raise(boost_t *b) {
  if (b == NULL) return;
  pthread_mutex_lock(&b->mu);
  if (!b->enabled) goto out;
  if (b->raised) {
    /* Still raised for an earlier batch: this one rides on it (the timer keeps the first window). */
    b->generation++;
    goto out;
  }
  uint64_t now = clock_ns(CLOCK_MONOTONIC), d = now - b->refilled;
  b->refilled = now;
  b->budget += d / 1000000000ULL * BOOST_CPU_RATE_NS + d % 1000000000ULL * BOOST_CPU_RATE_NS / 1000000000ULL;
  if (b->budget > BOOST_CPU_BURST_NS) b->budget = BOOST_CPU_BURST_NS;
  /* A boost may cost up to BOOST_MAX_NS before the reader ends it: made only when the budget covers that. */
  if (b->budget < BOOST_MAX_NS) {
    b->n_over_budget++;
    goto out;
  }
  struct tg_sched_attr cur;
  if (tg_getattr(b->tid, &cur) != 0) {
    b->n_errors++;
    goto out;
  }
  /* Only from a fair policy: a thread someone set to real time (chrt) is left as it is. */
  if (cur.sched_policy != TG_SCHED_OTHER && cur.sched_policy != TG_SCHED_BATCH) goto out;
  struct tg_sched_attr rt;
  memset(&rt, 0, sizeof(rt));
  rt.sched_policy = TG_SCHED_FIFO;
  rt.sched_priority = BOOST_PRIORITY;
  rt.sched_flags = TG_SCHED_FLAG_RESET_ON_FORK;
  if (tg_setattr(b->tid, &rt) != 0) {
    /* Refused (no privilege after all): no more attempts. */
    b->n_errors++;
    b->enabled = 0;
    b->off = "the kernel refused SCHED_FIFO for guardd's JS thread";
    goto out;
  }
  b->fair = cur;
  b->fair.sched_priority = 0;
  /* Kept from now on; the slice (sched_runtime: 6.12+ reports the thread's slice) restored as it was. */
  b->fair.sched_flags = TG_SCHED_FLAG_RESET_ON_FORK;
  b->cpu_at_raise = clock_ns(b->cpu_clock);
  b->raised = 1;
  b->generation++;
  b->n_raised++;
  arm(b, BOOST_MAX_NS);
out:
  pthread_mutex_unlock(&b->mu);
}

uint64_t boost_generation(boost_t *b) {
  if (b == NULL) return 0;
  pthread_mutex_lock(&b->mu);
  uint64_t g = b->generation;
  pthread_mutex_unlock(&b->mu);
  return g;
}

void boost_end(boost_t *b, uint64_t delivered) {
  if (b == NULL) return;
  pthread_mutex_lock(&b->mu);
  if (b->generation == delivered) lower(b, 0);
  pthread_mutex_unlock(&b->mu);
}

void boost_counters(boost_t *b, boost_counters_t *out) {
  memset(out, 0, sizeof(*out));
  if (b == NULL) {
    out->off = "not asked for";
    return;
  }
  pthread_mutex_lock(&b->mu);
  out->on = b->enabled;
  out->off = b->off;
  out->raised = b->n_raised;
  out->over_budget = b->n_over_budget;
  out->overruns = b->n_overruns;
  out->errors = b->n_errors;
  pthread_mutex_unlock(&b->mu);
}

void boost_stop(boost_t *b) {
  if (b == NULL) return;
  pthread_mutex_lock(&b->mu);
  lower(b, 0);
  b->enabled = 0;
  b->off = "closed";
  pthread_mutex_unlock(&b->mu);
  if (b->keeper_started) {
    /* The keeper waits on nothing but its poll: it returns at once. */
    uint64_t one = 1;
    (void)!write(b->stop_fd, &one, sizeof(one));
    pthread_join(b->keeper, NULL);
    b->keeper_started = 0;
  }
}

void boost_free(boost_t *b) {
  if (b == NULL) return;
  boost_stop(b);
  close(b->timer_fd);
  close(b->stop_fd);
  pthread_mutex_destroy(&b->mu);
  free(b);
}
