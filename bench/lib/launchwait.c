/* launchwait: N launches of a program, each after a random pause, timed from just before fork()
 * to waitpid() returning (bench/exec-events.bench.js: spawn → death of a banned script without
 * Node's own spawn and exit-notification costs in the figure). Prints one line per launch:
 * "<ms> <1 if killed by SIGKILL else 0> <exit status, or -1 when killed by a signal>".
 * Usage: launchwait N MAX_PAUSE_MS PROGRAM [ARG...] */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
  if (argc < 4) return 2;
  int n = atoi(argv[1]);
  int pause_ms = atoi(argv[2]);
  srand((unsigned)getpid());
  for (int i = 0; i < n; i++) {
    if (pause_ms > 0) usleep((useconds_t)(rand() % (pause_ms * 1000)));
    double t0 = now_ms();
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      execv(argv[3], argv + 3);
      _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0) return 1;
    printf("%.3f %d %d\n", now_ms() - t0, WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    fflush(stdout);
  }
  return 0;
}
