/*
 * A program that touches only the remote backend (no model is loaded), run by tests/c_abi.rs
 * under valgrind with every leak kind counted (definite and possible) against
 * tests/c/valgrind.supp: the HTTP client's one-time process state (TLS roots and the crypto
 * provider, set up on first use and kept for the life of the process) is the only thing
 * suppressed there.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <string.h>

#include "ponder.h"
#include "check.h"

static ponder_status engine_new(const char *config, ponder_engine **e) {
  return ponder_engine_new(config, strlen(config), e);
}

int main(void) {
  ponder_engine *e = NULL;
  /* Nobody listens on port 1: a typed failure after the one attempt allowed. */
  CHECK_STATUS(engine_new("{\"backend\":\"remote\",\"remote\":{\"urls\":"
                          "[\"http://127.0.0.1:1\"],\"attempts\":1}}",
                          &e),
               PONDER_STATUS_REMOTE_FAILED);
  /* The same through https (the TLS client is set up, then the connection is refused). */
  CHECK_STATUS(engine_new("{\"backend\":\"remote\",\"remote\":{\"urls\":"
                          "[\"https://127.0.0.1:1\"],\"attempts\":1}}",
                          &e),
               PONDER_STATUS_REMOTE_FAILED);
  CHECK_STATUS(engine_new("{\"backend\":\"remote\",\"remote\":{\"urls\":[\"http://\"]}}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK(e == NULL);
  if (failures) {
    fprintf(stderr, "%d C checks failed\n", failures);
    return 1;
  }
  printf("remote C tests passed\n");
  return 0;
}
