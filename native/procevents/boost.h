/*
 * boost: guardd's JS thread raised to real-time priority while it handles a batch of exec events
 * (see boost.c). Used by procevents.c: the reader raises it before each hand-over (boost_raise),
 * JS lowers it once the batch is handled (boost_end, through endBoost), and boost.c's own thread
 * lowers it when JS has not within BOOST_MAX_NS.
 */
#ifndef TOOLGUARD_BOOST_H
#define TOOLGUARD_BOOST_H

#include <stdint.h>

typedef struct boost boost_t;

typedef struct {
  /* 1 while boosts are made; 0 when off (then `off` says why: a static string). */
  int on;
  const char *off;
  /* Hand-overs made at real-time priority; skipped because the CPU budget was spent; boosts JS
   * did not end within BOOST_MAX_NS (the reader lowered them); sched_setattr refusals. */
  uint64_t raised, over_budget, overruns, errors;
} boost_counters_t;

/* JS thread (open): for the calling thread; starts the keeper thread, which turns boosts on once
 * it runs at a real-time priority above the boost's. NULL when it cannot (no memory, no fds). */
boost_t *boost_new(void);

/* Reader thread: raises the JS thread (within the budget) before a batch is handed over. */
void boost_raise(boost_t *b);

/* JS thread: the batches delivered so far are handled: lowers it unless a newer batch is on its
 * way (`delivered`: the boost generation call_js saw with the last batch). */
void boost_end(boost_t *b, uint64_t delivered);

/* JS thread (call_js): the generation of the boost the batch being delivered came with. */
uint64_t boost_generation(boost_t *b);

void boost_counters(boost_t *b, boost_counters_t *out);

/* JS thread (close): no more boosts; lowers the JS thread if raised; stops the keeper. */
void boost_stop(boost_t *b);

/* Stops it if not stopped yet, and frees (once nothing can call the others: the reader joined,
 * the state being freed). */
void boost_free(boost_t *b);

#endif
