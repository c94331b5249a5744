/*
 * A user's own FUSE file system for test/sensors/process/fuse-owner*.test.ts: a read-only view of
 * the files directly in <src>, mounted on <mnt> with fusermount3 as the user runs it (no
 * allow_other: only that user may enter it, root included is refused by the kernel), speaking the
 * kernel's protocol on /dev/fuse (linux/fuse.h; no libfuse). Prints "mounted" once it serves.
 *
 * --stall-opens-after N: opens of files after the first N are never answered (the request stays
 * with the daemon; everything else is still served): a daemon that lets the exec through and
 * stalls whoever opens the program next — guardd's reader.
 *
 * --direct: mounts with mount(2) itself (`user_id=`/`group_id=` its own ids), as the user may in a
 * user and mount namespace of their own (`unshare -Urm`, where they are root and fusermount3's
 * setuid bit counts for nothing); then runs <mnt>/<prog> <args…> there and prints "pid N".
 * --as ID (with --direct): the mount's `user_id=`/`group_id=` are ID, and the program runs as ID
 * (uid and gid) — another id of the namespace, e.g. one of the user's subordinate uids.
 *
 * --for-user UID GID (run as root): mounts with mount(2) for that user with `allow_other` —
 * what fusermount3 -o allow_other makes for them where /etc/fuse.conf has user_allow_other, so
 * root sees the files — then serves as that user.
 * --claim-uid N: every file's owner (uid and gid) is reported as N: a daemon says what it likes.
 * --claim-gid N: every file's group is reported as N (after --claim-uid, which it overrides).
 * --detach-at-open N: at the Nth open of a file, the mount is lazily unmounted as its user may
 * (`fusermount3 -u -z`) before the open is answered: whoever opened it still reads it, and the
 * mount table no longer names the mount. Prints "detached".
 * --detach-at-getattr N: the same at the Nth getattr (the mount's root is asked first, by the
 * first stat of it): whoever asked gets the answer, from a mount the table no longer names.
 * --mount-on-signal: prints "waiting" and mounts only once sent SIGUSR1 (then prints "mounted"):
 * a mount made at the moment the test chooses, by a daemon already running.
 *
 * Usage: fuse-passthrough [--claim-uid N] [--claim-gid N] [--for-user UID GID] [--stall-opens-after N]
 *          [--detach-at-open N] [--detach-at-getattr N] [--mount-on-signal] [--direct [--as ID]]
 *          <src> <mnt> [<prog> <args…>]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <linux/fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_NODES 64
#define BUF_SIZE (1024 * 1024 + 4096)

static char src[4096];
static long claim_uid = -1;
static long claim_gid = -1;
static char names[MAX_NODES][256];
static int nnodes;
static int fusefd;

static void reply(uint64_t unique, int error, const void *data, size_t len) {
  struct fuse_out_header out = {sizeof out + (error ? 0 : len), error, unique};
  struct iovec iov[2] = {{&out, sizeof out}, {(void *)data, error ? 0 : len}};
  if (writev(fusefd, iov, error || len == 0 ? 1 : 2) < 0 && errno != ENOENT) perror("writev");
}

static int path_of(uint64_t node, char *out, size_t n) {
  if (node < 2 || node >= 2 + (uint64_t)nnodes) return -1;
  snprintf(out, n, "%s/%s", src, names[node - 2]);
  return 0;
}

static void fill_attr(struct fuse_attr *a, const struct stat *st, uint64_t node) {
  memset(a, 0, sizeof *a);
  a->ino = node;
  a->size = st->st_size;
  a->blocks = st->st_blocks;
  a->atime = st->st_atim.tv_sec;
  a->mtime = st->st_mtim.tv_sec;
  a->ctime = st->st_ctim.tv_sec;
  a->atimensec = st->st_atim.tv_nsec;
  a->mtimensec = st->st_mtim.tv_nsec;
  a->ctimensec = st->st_ctim.tv_nsec;
  a->mode = st->st_mode;
  a->nlink = 1;
  a->uid = claim_uid >= 0 ? (uint32_t)claim_uid : st->st_uid;
  a->gid = claim_gid >= 0 ? (uint32_t)claim_gid : claim_uid >= 0 ? (uint32_t)claim_uid : st->st_gid;
  a->blksize = 4096;
}

static int node_stat(uint64_t node, struct stat *st) {
  if (node == FUSE_ROOT_ID) {
    if (stat(src, st) != 0) return -errno;
    st->st_mode = S_IFDIR | 0755;
    return 0;
  }
  char p[4400];
  if (path_of(node, p, sizeof p) != 0) return -ENOENT;
  return lstat(p, st) == 0 ? 0 : -errno;
}

static int mount_with_fusermount(const char *mnt) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -1;
  pid_t p = fork();
  if (p == 0) {
    char fdnum[16];
    snprintf(fdnum, sizeof fdnum, "%d", sv[0]);
    setenv("_FUSE_COMMFD", fdnum, 1);
    close(sv[1]);
    execl("/usr/bin/fusermount3", "fusermount3", "-o", "ro,nosuid,nodev,fsname=tgfp,subtype=tgfp", "--", mnt,
          (char *)NULL);
    _exit(127);
  }
  close(sv[0]);
  char buf[1];
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {buf, 1};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  int st = 0;
  ssize_t got = recvmsg(sv[1], &msg, 0);
  waitpid(p, &st, 0);
  close(sv[1]);
  if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (c == NULL) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

static long as_id = -1;

/* fusermount3 -u -z <mnt>, as the user (setuid helper), waited for. */
static void detach(const char *mnt) {
  pid_t p = fork();
  if (p == 0) {
    close(fusefd);
    execl("/usr/bin/fusermount3", "fusermount3", "-u", "-z", "--", mnt, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  waitpid(p, &st, 0);
  printf(WIFEXITED(st) && WEXITSTATUS(st) == 0 ? "detached\n" : "detach failed\n");
  fflush(stdout);
}

static int mount_direct(const char *mnt) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  char opts[256];
  unsigned uid = as_id >= 0 ? (unsigned)as_id : getuid(), gid = as_id >= 0 ? (unsigned)as_id : getgid();
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=%u,group_id=%u", fd, uid, gid);
  if (mount("tgfp", mnt, "fuse.tgfp", MS_NOSUID | MS_NODEV | MS_RDONLY, opts) != 0) return -1;
  return fd;
}

static int mount_for_user(const char *mnt, long uid, long gid) {
  int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  char opts[256];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=%ld,group_id=%ld,allow_other", fd, uid, gid);
  if (mount("tgfp", mnt, "fuse.tgfp", MS_NOSUID | MS_NODEV | MS_RDONLY, opts) != 0) return -1;
  if (setgroups(0, NULL) != 0 || setgid((gid_t)gid) != 0 || setuid((uid_t)uid) != 0) return -1;
  return fd;
}

int main(int argc, char **argv) {
  long stall_after = -1;
  long detach_at = -1;
  long detach_at_getattr = -1;
  int on_signal = 0;
  long for_uid = -1, for_gid = -1;
  int direct = 0;
  int i = 1;
  if (argc > i + 1 && strcmp(argv[i], "--claim-uid") == 0) {
    claim_uid = atol(argv[i + 1]);
    i += 2;
  }
  if (argc > i + 1 && strcmp(argv[i], "--claim-gid") == 0) {
    claim_gid = atol(argv[i + 1]);
    i += 2;
  }
  if (argc > i + 2 && strcmp(argv[i], "--for-user") == 0) {
    for_uid = atol(argv[i + 1]);
    for_gid = atol(argv[i + 2]);
    i += 3;
  }
  if (argc > i + 1 && strcmp(argv[i], "--stall-opens-after") == 0) {
    stall_after = atol(argv[i + 1]);
    i += 2;
  }
  if (argc > i + 1 && strcmp(argv[i], "--detach-at-open") == 0) {
    detach_at = atol(argv[i + 1]);
    i += 2;
  }
  if (argc > i + 1 && strcmp(argv[i], "--detach-at-getattr") == 0) {
    detach_at_getattr = atol(argv[i + 1]);
    i += 2;
  }
  if (argc > i && strcmp(argv[i], "--mount-on-signal") == 0) {
    on_signal = 1;
    i++;
  }
  if (argc > i && strcmp(argv[i], "--direct") == 0) {
    direct = 1;
    i++;
  }
  if (direct && argc > i + 1 && strcmp(argv[i], "--as") == 0) {
    as_id = atol(argv[i + 1]);
    i += 2;
  }
  if (argc - i < 2 || (!direct && argc - i != 2) || (direct && for_uid >= 0)) return 2;
  if (realpath(argv[i], src) == NULL) return 3;
  if (on_signal) {
    sigset_t usr1;
    int sig;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, NULL) != 0) return 5;
    printf("waiting\n");
    fflush(stdout);
    if (sigwait(&usr1, &sig) != 0) return 5;
  }
  fusefd = direct        ? mount_direct(argv[i + 1])
           : for_uid >= 0 ? mount_for_user(argv[i + 1], for_uid, for_gid)
                          : mount_with_fusermount(argv[i + 1]);
  if (fusefd < 0) {
    perror("mount");
    return 4;
  }
  printf("mounted\n");
  fflush(stdout);
  if (argc - i > 2) {
    char prog[4400];
    snprintf(prog, sizeof prog, "%s/%s", argv[i + 1], argv[i + 2]);
    pid_t p = fork();
    if (p == 0) {
      close(fusefd);
      if (as_id >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)as_id) != 0 || setuid((uid_t)as_id) != 0))
        _exit(126);
      argv[i + 2] = prog;
      execv(prog, argv + i + 2);
      _exit(127);
    }
    printf("pid %d\n", (int)p);
    fflush(stdout);
  }
  char *buf = malloc(BUF_SIZE);
  char *data = malloc(BUF_SIZE);
  long opens = 0, opened = 0, getattrs = 0;
  const char *mnt = argv[i + 1];
  for (;;) {
    ssize_t n = read(fusefd, buf, BUF_SIZE);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
      return 0; /* ENODEV: unmounted */
    }
    if ((size_t)n < sizeof(struct fuse_in_header)) continue;
    struct fuse_in_header *in = (struct fuse_in_header *)buf;
    void *arg = buf + sizeof *in;
    struct stat st;
    switch (in->opcode) {
      case FUSE_INIT: {
        struct fuse_init_in *ii = arg;
        struct fuse_init_out o = {0};
        o.major = FUSE_KERNEL_VERSION;
        o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
        o.max_readahead = ii->max_readahead;
        o.max_write = 128 * 1024;
        o.max_background = 16;
        o.congestion_threshold = 12;
        o.time_gran = 1;
        reply(in->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_LOOKUP: {
        const char *name = arg;
        if (in->nodeid != FUSE_ROOT_ID || strchr(name, '/') || strlen(name) >= 256) {
          reply(in->unique, -ENOENT, NULL, 0);
          break;
        }
        int k = 0;
        while (k < nnodes && strcmp(names[k], name) != 0) k++;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", src, name);
        if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode) || (k == nnodes && nnodes == MAX_NODES)) {
          reply(in->unique, -ENOENT, NULL, 0);
          break;
        }
        if (k == nnodes) strcpy(names[nnodes++], name);
        struct fuse_entry_out e = {0};
        e.nodeid = k + 2;
        e.entry_valid = 1;
        e.attr_valid = 1;
        fill_attr(&e.attr, &st, e.nodeid);
        reply(in->unique, 0, &e, sizeof e);
        break;
      }
      case FUSE_GETATTR: {
        if (detach_at_getattr >= 0 && ++getattrs == detach_at_getattr) detach(mnt);
        int r = node_stat(in->nodeid, &st);
        if (r != 0) {
          reply(in->unique, r, NULL, 0);
          break;
        }
        struct fuse_attr_out a = {0};
        a.attr_valid = 1;
        fill_attr(&a.attr, &st, in->nodeid);
        reply(in->unique, 0, &a, sizeof a);
        break;
      }
      case FUSE_OPEN: {
        struct fuse_open_in *oi = arg;
        char p[4400];
        if ((oi->flags & O_ACCMODE) != O_RDONLY) {
          reply(in->unique, -EROFS, NULL, 0);
          break;
        }
        if (path_of(in->nodeid, p, sizeof p) != 0) {
          reply(in->unique, -ENOENT, NULL, 0);
          break;
        }
        if (stall_after >= 0 && ++opens > stall_after) break; /* never answered */
        if (detach_at >= 0 && ++opened == detach_at) detach(mnt);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          reply(in->unique, -errno, NULL, 0);
          break;
        }
        struct fuse_open_out o = {0};
        o.fh = fd;
        reply(in->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_READ: {
        struct fuse_read_in *ri = arg;
        size_t want = ri->size < BUF_SIZE ? ri->size : BUF_SIZE;
        ssize_t got = pread((int)ri->fh, data, want, ri->offset);
        if (got < 0) reply(in->unique, -errno, NULL, 0);
        else reply(in->unique, 0, data, got);
        break;
      }
      case FUSE_RELEASE: {
        struct fuse_release_in *ri = arg;
        close((int)ri->fh);
        reply(in->unique, 0, NULL, 0);
        break;
      }
      case FUSE_OPENDIR: {
        struct fuse_open_out o = {0};
        reply(in->unique, 0, &o, sizeof o);
        break;
      }
      case FUSE_READDIR: /* an empty listing: files are reached by name */
      case FUSE_FLUSH:
      case FUSE_RELEASEDIR:
        reply(in->unique, 0, NULL, 0);
        break;
      case FUSE_STATFS: {
        struct fuse_statfs_out s = {0};
        s.st.bsize = 4096;
        s.st.namelen = 255;
        s.st.frsize = 4096;
        reply(in->unique, 0, &s, sizeof s);
        break;
      }
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        break; /* no answer */
      default:
        reply(in->unique, -ENOSYS, NULL, 0);
    }
  }
}
