/*
 * walker: the script walks of interpreter execs, read ahead of the JS thread (see walker.c).
 * Used by procevents.c: the reader thread asks (walker_request, never blocks), the JS thread takes
 * the answers when it resolves the process's script (walker_take, never waits).
 */
#ifndef TOOLGUARD_WALKER_H
#define TOOLGUARD_WALKER_H

#include <stdint.h>
#include <time.h>

#define NAPI_VERSION 8
#include <node_api.h>

typedef struct walker walker_t;

/* Starts the walker thread; NULL when it cannot (no read-ahead then: JS walks as before). */
walker_t *walker_start(void);

/* Whether an executable basename or comm names an interpreter whose script guardd resolves. */
int walker_is_interpreter(const char *name, int len);

/* Reader thread: asks for the walks of the exec (pid, ts) with argv `cmd` (NUL-separated, cmd_len
 * bytes; none when cmd_len is 0) and, with `stat` (the process's stat line as the reader read it
 * after the exec, stat_len bytes; none when 0), for the identity of its executable. Copies what it
 * needs; drops the request (counted) when the walker is behind. */
void walker_request(walker_t *w, int32_t pid, uint64_t ts, const char *cmd, int cmd_len, const char *stat,
                    int stat_len);

/* JS thread: the answers of (pid, ts) as a JS array (taken: a second call gives null), or null
 * when there are none (not asked, not done yet, or overwritten). `ts` as JS got it (a double:
 * compared as one, so an uptime past 2^53 ns still matches). */
napi_value walker_take(napi_env env, walker_t *w, int32_t pid, double ts);

/* JS thread: the identity of the executable of exec (pid, ts) as [dev, ino, size, mtimeMs, ctimeMs, mount]
 * (what Node's fs.Stats says for the same file), taken once; null when there is none (not asked,
 * not done yet, overwritten, not a regular file, or the process exec'd again before it was read). */
napi_value walker_take_identity(napi_env env, walker_t *w, int32_t pid, double ts);

/* Walks done, requests dropped (queue full), identities read, since start. */
void walker_counters(walker_t *w, uint64_t *done, uint64_t *dropped, uint64_t *identities);

/* Stops and joins the thread by `until` (CLOCK_REALTIME; NULL: waits, for a walker never asked
 * anything) and frees everything: 0. -1 when the thread is still inside a walk then (a stalled
 * mount): it is left behind with its memory. */
int walker_stop(walker_t *w, const struct timespec *until);

#endif
