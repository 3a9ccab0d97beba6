/* CHECK and CHECK_STATUS for the C tests: a failed check is printed (with ponder_last_error
 * for a status) and counted in `failures`; main returns non-zero when any failed. */
#ifndef PONDER_TEST_CHECK_H
#define PONDER_TEST_CHECK_H

#include <stdio.h>

#include "ponder.h"

static int failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#define CHECK_STATUS(expr, want)                                               \
  do {                                                                         \
    ponder_status got_ = (expr);                                               \
    if (got_ != (want)) {                                                      \
      char msg_[512];                                                          \
      size_t n_ = 0;                                                           \
      ponder_last_error(msg_, sizeof msg_, &n_);                               \
      fprintf(stderr, "%s:%d: %s gave %u (%s: %s), wanted %u\n", __FILE__,     \
              __LINE__, #expr, (unsigned)got_, ponder_status_message(got_),    \
              msg_, (unsigned)(want));                                         \
      failures++;                                                              \
    }                                                                          \
  } while (0)

#endif
