/*
 * boost: guardd's JS thread raised to real-time priority while it handles a batch of exec events
 * (see boost.c). Used by procevents.c: the reader raises it before each hand-over (boost_raise),
 * JS lowers it once the batch is handled (boost_end, through endBoost), and the reader lowers it
 * itself when JS has not within BOOST_MAX_NS (boost_expired, on its timer).
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

/* JS thread (open): for the calling thread. NULL when it cannot (no memory, no timerfd). */
boost_t *boost_new(void);

/* The timer the reader polls: readable when a boost ran past BOOST_MAX_NS. */
int boost_timer_fd(const boost_t *b);

/* Reader thread, once at its start: boosts are made only when the reader itself runs at a
 * real-time priority above BOOST_PRIORITY (it must be able to preempt the thread it raised). */
void boost_enable(boost_t *b, int reader_rt_priority);

/* Reader thread: raises the JS thread (within the budget) before a batch is handed over. */
void boost_raise(boost_t *b);

/* Reader thread: the timer fired: lowers the JS thread if its boost is still on (counted). */
void boost_expired(boost_t *b);

/* JS thread: the batches delivered so far are handled: lowers it unless a newer batch is on its
 * way (`delivered`: the boost generation call_js saw with the last batch). */
void boost_end(boost_t *b, uint64_t delivered);

/* JS thread (call_js): the generation of the boost the batch being delivered came with. */
uint64_t boost_generation(boost_t *b);

void boost_counters(boost_t *b, boost_counters_t *out);

/* JS thread (close): no more boosts; lowers the JS thread if raised. */
void boost_stop(boost_t *b);

/* Frees (once nothing can call the others: the reader joined, the state being freed). */
void boost_free(boost_t *b);

#endif
