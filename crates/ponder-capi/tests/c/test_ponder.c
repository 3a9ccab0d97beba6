/*
 * Every function of the C ABI, from C, on the real default model ($PONDER_MODEL).
 * Driven by tests/c_abi.rs. `--light` (the valgrind run, where one forward pass takes seconds)
 * runs every function and every error path but only a few tiny solves: no MCTS, no second thread.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ponder.h"
#include "check.h"

static ponder_status solve(ponder_engine *e, const char *question,
                           const char *strategy, ponder_event_callback cb,
                           void *userdata, ponder_outcome **out) {
  return ponder_engine_solve(e, question, strlen(question), strategy,
                             strlen(strategy), cb, userdata, out);
}

static const char *SMALL_MCTS =
    "{\"type\":\"mcts\",\"k\":2,\"budget\":{\"tokens\":40},"
    "\"step\":{\"max_tokens\":20}}";
static const char *TINY_BEST_OF_N =
    "{\"type\":\"best_of_n\",\"n\":2,\"max_tokens\":12,\"rerank\":\"logprob\"}";
static const char *QUESTION = "What is 2 + 3?";
/* One sampled token after a bare prompt: what valgrind can afford. */
static const char *TINY =
    "{\"type\":\"best_of_n\",\"n\":1,\"max_tokens\":1,\"rerank\":\"logprob\","
    "\"prompt\":{\"template\":\"{question}\"}}";

struct counts {
  int step, scored, sample, candidate, done;
  int stop_at_first_step;
};

static int count_events(void *userdata, const ponder_event *ev) {
  struct counts *c = userdata;
  /* Every event's one line, as the CLI prints it. */
  CHECK(ev->line != NULL && strlen(ev->line) == ev->line_len);
  switch (ev->kind) {
  case PONDER_EVENT_KIND_STEP:
    c->step++;
    CHECK(ev->text != NULL && strlen(ev->text) == ev->text_len);
    CHECK(ev->depth >= 1);
    return c->stop_at_first_step;
  case PONDER_EVENT_KIND_SCORED:
    c->scored++;
    /* NaN where the value is not the judge's (MCTS values by likelihood by default). */
    CHECK(isnan(ev->judge) || (ev->judge >= 0.0 && ev->judge <= 1.0));
    CHECK(ev->value >= 0.0 && ev->value <= 1.0);
    break;
  case PONDER_EVENT_KIND_SAMPLE:
    /* Sampling strategies: each sample as it is drawn, before the candidates. */
    c->sample++;
    CHECK(c->candidate == 0 && c->done == 0);
    CHECK(ev->text != NULL && strlen(ev->text) == ev->text_len);
    break;
  case PONDER_EVENT_KIND_CANDIDATE:
    c->candidate++;
    break;
  case PONDER_EVENT_KIND_DONE:
    c->done++;
    CHECK(!isnan(ev->value));
    CHECK(strncmp(ev->line, "done · answer ", strlen("done · answer ")) == 0);
    break;
  default:
    CHECK(!"unknown event kind");
  }
  return 0;
}

static void test_static_functions(void) {
  char want[64];
  snprintf(want, sizeof want, "%d.%d.%d", PONDER_VERSION_MAJOR,
           PONDER_VERSION_MINOR, PONDER_VERSION_PATCH);
  CHECK(strcmp(ponder_version(), want) == 0);
  for (unsigned s = 0; s <= PONDER_STATUS_IO; s++) {
    const char *m = ponder_status_message(s);
    CHECK(m != NULL && strlen(m) > 0);
  }
  CHECK(strcmp(ponder_status_message(9999), "unknown status") == 0);
}

static ponder_status engine_new(const char *config, ponder_engine **e) {
  return ponder_engine_new(config, strlen(config), e);
}

/* The last error's text as C sees it: all of it (no NUL inside), NUL-terminated. */
static void last_error_text(char *buf, size_t len) {
  size_t n = 0;
  CHECK_STATUS(ponder_last_error(buf, len, &n), PONDER_STATUS_OK);
  CHECK(strlen(buf) == n);
}

/* Engine configs: only an object; JSON errors however deep; every range checked before the
 * model is loaded (the model path does not exist, so a check after loading would say so). */
static void test_engine_config_shapes_and_ranges(void) {
  ponder_engine *e = NULL;
  char msg[1024];
  CHECK_STATUS(engine_new("[]", &e), PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(engine_new("[null, \"/x.gguf\"]", &e), PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(engine_new("\"/x.gguf\"", &e), PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "object") != NULL);
  size_t deep_n = 100000;
  char *deep = malloc(deep_n);
  memset(deep, '[', deep_n);
  CHECK_STATUS(ponder_engine_new(deep, deep_n, &e), PONDER_STATUS_INVALID_JSON);
  free(deep);
  const char *too_many_threads =
      "{\"model\":\"/nonexistent/model.gguf\",\"n_threads\":100000}";
  CHECK_STATUS(engine_new(too_many_threads, &e), PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "n_threads") != NULL);
  CHECK_STATUS(engine_new("{\"model\":\"/nonexistent/model.gguf\",\"n_seq_max\":1000}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(engine_new("{\"model\":\"/nonexistent/model.gguf\",\"n_ctx\":4}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  /* The KV layout: a name it does not know, and streams too small for their sequences. */
  CHECK_STATUS(engine_new("{\"model\":\"/nonexistent/model.gguf\",\"kv_layout\":\"paged\"}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "paged") != NULL && strstr(msg, "streams") != NULL);
  CHECK_STATUS(engine_new("{\"model\":\"/nonexistent/model.gguf\",\"kv_layout\":\"streams\","
                          "\"n_ctx\":8,\"n_seq_max\":16}",
                          &e),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "n_ctx") != NULL);
  CHECK_STATUS(engine_new("{\"model\":\"/nonexistent/model.gguf\",\"n_ctx\":4000000000}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  /* A NUL inside the path: the message reaches C whole. */
  CHECK_STATUS(engine_new("{\"model\":\"/tmp/a\\u0000b.gguf\"}", &e),
               PONDER_STATUS_MODEL_LOAD_FAILED);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "a\\0b.gguf") != NULL);
  /* A URL without a host is a config error at once, not a failed request. */
  CHECK_STATUS(engine_new("{\"backend\":\"remote\",\"remote\":{\"urls\":[\"http://\"]}}", &e),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "http://") != NULL && strstr(msg, "host") != NULL);
  CHECK(e == NULL);
}

static void test_null_and_bad_arguments(void) {
  ponder_engine *e = NULL;
  ponder_outcome *o = NULL;
  size_t n = 0;
  char buf[512];
  double d = 0;
  ponder_usage u;

  ponder_engine_free(NULL);
  ponder_outcome_free(NULL);
  CHECK_STATUS(ponder_engine_new(NULL, 0, &e), PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_new("{}", 2, NULL), PONDER_STATUS_NULL_ARGUMENT);
  CHECK(e == NULL);
  CHECK_STATUS(ponder_engine_new("\xff\xfe", 2, &e), PONDER_STATUS_INVALID_UTF8);
  CHECK_STATUS(ponder_engine_new("{", 1, &e), PONDER_STATUS_INVALID_JSON);
  CHECK_STATUS(ponder_engine_new("{\"modle\":1}", 11, &e),
               PONDER_STATUS_INVALID_CONFIG);
  const char *missing = "{\"model\":\"/nonexistent/model.gguf\"}";
  CHECK_STATUS(ponder_engine_new(missing, strlen(missing), &e),
               PONDER_STATUS_MODEL_NOT_FOUND);
  CHECK(e == NULL);
  CHECK_STATUS(ponder_last_error(buf, sizeof buf, &n), PONDER_STATUS_OK);
  CHECK(strstr(buf, "not found") != NULL);
  /* The remote backend: its settings in "remote", an unreachable server a typed status. */
  const char *no_remote = "{\"backend\":\"remote\"}";
  CHECK_STATUS(ponder_engine_new(no_remote, strlen(no_remote), &e),
               PONDER_STATUS_INVALID_CONFIG);
  const char *mixed =
      "{\"backend\":\"remote\",\"n_ctx\":512,\"remote\":{\"urls\":[\"http://127.0.0.1:1\"]}}";
  CHECK_STATUS(ponder_engine_new(mixed, strlen(mixed), &e),
               PONDER_STATUS_INVALID_CONFIG);
  const char *unreachable = "{\"backend\":\"remote\",\"remote\":{\"urls\":"
                            "[\"http://127.0.0.1:1\"],\"attempts\":1}}";
  CHECK_STATUS(ponder_engine_new(unreachable, strlen(unreachable), &e),
               PONDER_STATUS_REMOTE_FAILED);
  CHECK(e == NULL);
  CHECK_STATUS(ponder_engine_new(missing, strlen(missing), &e),
               PONDER_STATUS_MODEL_NOT_FOUND);
  /* A buffer too small: the length needed comes back, and the message stays. */
  size_t full = n;
  CHECK_STATUS(ponder_last_error(buf, 4, &n), PONDER_STATUS_BUFFER_TOO_SMALL);
  CHECK(n == full && n > 4);
  CHECK_STATUS(ponder_last_error(buf, sizeof buf, NULL),
               PONDER_STATUS_NULL_ARGUMENT);

  test_engine_config_shapes_and_ranges();

  CHECK_STATUS(solve(NULL, QUESTION, TINY_BEST_OF_N, NULL, NULL, &o),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_cancel(NULL), PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_answer(NULL, buf, sizeof buf, &n),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_text(NULL, buf, sizeof buf, &n),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_trace_json(NULL, buf, sizeof buf, &n),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_score(NULL, &d), PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_usage(NULL, &u), PONDER_STATUS_NULL_ARGUMENT);
}

static void test_solve_arguments(ponder_engine *e) {
  ponder_outcome *o = NULL;
  CHECK_STATUS(ponder_engine_solve(e, NULL, 3, "{}", 2, NULL, NULL, &o),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_solve(e, QUESTION, strlen(QUESTION), NULL, 0, NULL,
                                   NULL, &o),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(solve(e, QUESTION, TINY_BEST_OF_N, NULL, NULL, NULL),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_solve(e, "\xc3\x28", 2, TINY_BEST_OF_N,
                                   strlen(TINY_BEST_OF_N), NULL, NULL, &o),
               PONDER_STATUS_INVALID_UTF8);
  CHECK_STATUS(solve(e, QUESTION, "{\"type\":", NULL, NULL, &o),
               PONDER_STATUS_INVALID_JSON);
  CHECK_STATUS(solve(e, QUESTION, "{\"type\":\"magic\"}", NULL, NULL, &o),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(solve(e, QUESTION, "{\"type\":\"mcts\",\"k\":0}", NULL, NULL, &o),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(solve(e, "   ", TINY_BEST_OF_N, NULL, NULL, &o),
               PONDER_STATUS_INVALID_CONFIG);
  /* No type: say so, in the spelling "type" takes. */
  char msg[1024];
  CHECK_STATUS(solve(e, QUESTION, "{}", NULL, NULL, &o), PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "\"type\" is missing") != NULL && strstr(msg, "best_of_n") != NULL);
  /* Every count and budget has a range: nothing can run practically forever. */
  const char *out_of_range[] = {
      "{\"type\":\"self_correct\",\"rounds\":1000000}",
      "{\"type\":\"best_of_n\",\"max_tokens\":100000000}",
      "{\"type\":\"deepening\",\"total_budget\":4000000000}",
      "{\"type\":\"mcts\",\"budget\":{\"tokens\":1000000000000}}",
      "{\"type\":\"mcts\",\"budget\":{\"iterations\":1000000000}}",
      "{\"type\":\"beam\",\"budget\":{\"wall_ms\":1000000000000}}",
      "{\"type\":\"beam\",\"step\":{\"max_depth\":100000}}",
      "{\"type\":\"mcts\",\"step\":{\"retries\":1000}}",
  };
  for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
    CHECK_STATUS(solve(e, QUESTION, out_of_range[i], NULL, NULL, &o),
                 PONDER_STATUS_INVALID_CONFIG);
  }
  CHECK(o == NULL);
}

static ponder_status solve_problem(ponder_engine *e, const char *problem,
                                   const char *strategy, ponder_outcome **out) {
  return ponder_engine_solve_problem(e, problem, strlen(problem), strategy,
                                     strlen(strategy), NULL, NULL, out);
}

/* A problem as JSON: its errors always, a solve unless `light`, whose trace carries the id, the
 * reference and oracle_guided. */
static void test_solve_problem(ponder_engine *e, const char *strategy, int light) {
  ponder_outcome *o = NULL;
  char msg[1024];
  CHECK_STATUS(ponder_engine_solve_problem(e, NULL, 2, strategy, strlen(strategy),
                                           NULL, NULL, &o),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_solve_problem(NULL, "{}", 2, strategy, strlen(strategy),
                                           NULL, NULL, &o),
               PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_engine_solve_problem(e, "\"\xc3\x28\"", 4, strategy,
                                           strlen(strategy), NULL, NULL, &o),
               PONDER_STATUS_INVALID_UTF8);
  CHECK_STATUS(solve_problem(e, "{\"question\":", strategy, &o),
               PONDER_STATUS_INVALID_JSON);
  CHECK_STATUS(solve_problem(e, "[\"What is 2 + 3?\"]", strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(solve_problem(e, "{\"id\":\"q\"}", strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "missing \"question\"") != NULL);
  CHECK_STATUS(solve_problem(e, "{\"question\":\"What is 2 + 3?\",\"anwser\":5}",
                             strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "\"anwser\"") != NULL && strstr(msg, "answer") != NULL);
  CHECK_STATUS(solve_problem(e, "{\"question\":\"What is 2 + 3?\",\"answer\":[5]}",
                             strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  last_error_text(msg, sizeof msg);
  CHECK(strstr(msg, "\"answer\" is not a string or a number") != NULL);
  CHECK_STATUS(solve_problem(e, "{\"question\":\"What is 2 + 3?\",\"oracle_guided\":1}",
                             strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(solve_problem(e, "{\"question\":\"What is 2 + 3?\",\"answer_kind\":\"word\"}",
                             strategy, &o),
               PONDER_STATUS_INVALID_CONFIG);
  CHECK_STATUS(solve_problem(e, "{\"question\":\"What is 2 + 3?\"}", "{\"type\":", &o),
               PONDER_STATUS_INVALID_JSON);
  CHECK(o == NULL);
  if (light) {
    return;
  }
  CHECK_STATUS(solve_problem(e,
                             "{\"id\":\"q-7\",\"question\":\"What is 2 + 3?\","
                             "\"answer\":5,\"oracle_guided\":true}",
                             strategy, &o),
               PONDER_STATUS_OK);
  size_t n = 0;
  CHECK_STATUS(ponder_outcome_trace_json(o, NULL, 0, &n), PONDER_STATUS_BUFFER_TOO_SMALL);
  char *json = malloc(n + 1);
  CHECK_STATUS(ponder_outcome_trace_json(o, json, n + 1, &n), PONDER_STATUS_OK);
  CHECK(strstr(json, "\"id\":\"q-7\"") != NULL);
  CHECK(strstr(json, "\"reference\":\"5\"") != NULL);
  CHECK(strstr(json, "\"oracle_guided\":true") != NULL);
  /* Each candidate is labelled against the reference. */
  CHECK(strstr(json, "\"correct\":true") != NULL || strstr(json, "\"correct\":false") != NULL);
  free(json);
  ponder_outcome_free(o);
}

/* Stopping on events that come after the search finished ends the events, not the solve. */
struct stop_on {
  ponder_event_kind kind;
  int seen;
  int after;
};

static int stop_on_kind(void *userdata, const ponder_event *ev) {
  struct stop_on *s = userdata;
  if (s->seen) {
    s->after++;
    return 0;
  }
  if (ev->kind == s->kind) {
    s->seen = 1;
    return 1;
  }
  return 0;
}

/* `kinds`: 2 stops on CANDIDATE and on DONE, 1 only on DONE (under valgrind, where each solve
 * takes a minute). */
static void test_stop_after_the_search_finished(ponder_engine *e, const char *strategy,
                                                int kinds_tried) {
  ponder_event_kind kinds[] = {PONDER_EVENT_KIND_DONE, PONDER_EVENT_KIND_CANDIDATE};
  for (int i = 0; i < kinds_tried; i++) {
    struct stop_on s = {kinds[i], 0, 0};
    ponder_outcome *o = NULL;
    CHECK_STATUS(solve(e, QUESTION, strategy, stop_on_kind, &s, &o), PONDER_STATUS_OK);
    CHECK(s.seen == 1);
    CHECK(s.after == 0); /* no events after the stop */
    CHECK(o != NULL);
    size_t n = 0;
    CHECK_STATUS(ponder_outcome_text(o, NULL, 0, &n), PONDER_STATUS_BUFFER_TOO_SMALL);
    ponder_outcome_free(o);
  }
}

/* A solve on the same engine from inside its own callback is refused at once. */
struct reentry {
  ponder_engine *engine;
  ponder_status status;
  ponder_outcome *inner;
  int calls;
};

static int solve_again(void *userdata, const ponder_event *ev) {
  struct reentry *r = userdata;
  if (ev->kind == PONDER_EVENT_KIND_DONE) {
    r->calls++;
    r->status = solve(r->engine, QUESTION, TINY_BEST_OF_N, NULL, NULL, &r->inner);
    /* Cancelling from the callback is allowed (and here too late to matter). */
    CHECK_STATUS(ponder_engine_cancel(r->engine), PONDER_STATUS_OK);
  }
  return 0;
}

/* `again`: whether to check with one more solve that the engine is usable afterwards (not under
 * valgrind, where each solve takes a minute). */
static void test_solve_from_own_callback(ponder_engine *e, const char *strategy, int again) {
  struct reentry r = {e, PONDER_STATUS_OK, NULL, 0};
  ponder_outcome *o = NULL;
  CHECK_STATUS(solve(e, QUESTION, strategy, solve_again, &r, &o), PONDER_STATUS_OK);
  CHECK(r.calls == 1);
  CHECK(r.status == PONDER_STATUS_REENTRANT);
  CHECK(r.inner == NULL);
  char msg[512];
  last_error_text(msg, sizeof msg);
  ponder_outcome_free(o);
  if (again) {
    /* The engine is usable afterwards. */
    CHECK_STATUS(solve(e, QUESTION, strategy, NULL, NULL, &o), PONDER_STATUS_OK);
    ponder_outcome_free(o);
  }
}

/* Set when the engine under test runs the streams KV layout. */
static int streams_engine = 0;

static void test_outcome(ponder_engine *e, const char *strategy, int tree) {
  struct counts c = {0, 0, 0, 0, 0, 0};
  ponder_outcome *o = NULL;
  CHECK_STATUS(solve(e, QUESTION, strategy, count_events, &c, &o),
               PONDER_STATUS_OK);
  if (o == NULL)
    return;
  CHECK(c.done == 1 && c.candidate >= 1);
  CHECK(tree ? (c.step > 0 && c.scored == c.step) : c.step == 0);
  /* Sampling strategies report a sample for each candidate, tree searches none. */
  if (tree)
    CHECK(c.sample == 0);
  else
    CHECK(c.sample >= c.candidate);

  char small[2];
  size_t n = 0;
  ponder_status s = ponder_outcome_answer(o, small, sizeof small, &n);
  CHECK(s == PONDER_STATUS_OK || s == PONDER_STATUS_BUFFER_TOO_SMALL ||
        s == PONDER_STATUS_NO_ANSWER || s == PONDER_STATUS_BUDGET_EXHAUSTED);
  if (s == PONDER_STATUS_OK || s == PONDER_STATUS_BUFFER_TOO_SMALL) {
    char *answer = malloc(n + 1);
    size_t m = 0;
    CHECK_STATUS(ponder_outcome_answer(o, answer, n + 1, &m), PONDER_STATUS_OK);
    CHECK(m == n && strlen(answer) == n);
    free(answer);
  }
  size_t tn = 0;
  CHECK_STATUS(ponder_outcome_text(o, NULL, 0, &tn),
               PONDER_STATUS_BUFFER_TOO_SMALL);
  char *text = malloc(tn + 1);
  CHECK_STATUS(ponder_outcome_text(o, text, tn + 1, &n), PONDER_STATUS_OK);
  CHECK(strlen(text) == tn);
  free(text);

  double score = NAN;
  CHECK_STATUS(ponder_outcome_score(o, &score), PONDER_STATUS_OK);
  CHECK(!isnan(score));
  CHECK_STATUS(ponder_outcome_score(o, NULL), PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_usage(o, NULL), PONDER_STATUS_NULL_ARGUMENT);
  CHECK_STATUS(ponder_outcome_text(o, NULL, 0, NULL), PONDER_STATUS_NULL_ARGUMENT);
  ponder_usage u;
  memset(&u, 0, sizeof u);
  CHECK_STATUS(ponder_outcome_usage(o, &u), PONDER_STATUS_OK);
  CHECK(u.generated_tokens > 0 && u.prompt_tokens > 0 && u.forward_passes > 0);
  /* The full run's engine has the streams layout: best-of-N's branches are stream copies. */
  if (streams_engine && strategy == TINY_BEST_OF_N)
    CHECK(u.kv_copies > 0 && u.kv_copy_bytes > 0);

  size_t jn = 0;
  CHECK_STATUS(ponder_outcome_trace_json(o, NULL, 0, &jn),
               PONDER_STATUS_BUFFER_TOO_SMALL);
  char *json = malloc(jn + 1);
  CHECK_STATUS(ponder_outcome_trace_json(o, json, jn + 1, &n), PONDER_STATUS_OK);
  CHECK(json[0] == '{' && strstr(json, "\"nodes\"") != NULL &&
        strstr(json, "\"model_sha256\"") != NULL);
  /* ponder_engine_solve takes no id, reference or oracle: the trace says so. */
  CHECK(strstr(json, "\"id\":\"0\"") != NULL && strstr(json, "\"reference\":null") != NULL &&
        strstr(json, "\"oracle_guided\":false") != NULL);
  free(json);
  ponder_outcome_free(o);
}

static int stop_at_once(void *userdata, const ponder_event *ev) {
  (void)ev;
  (*(int *)userdata)++;
  return 1;
}

/* `strategy` is a tree search: the only kind with events before its search has finished. */
static void test_cancel_from_callback(ponder_engine *e, const char *strategy) {
  int calls = 0;
  ponder_outcome *o = NULL;
  CHECK_STATUS(solve(e, QUESTION, strategy, stop_at_once, &calls, &o),
               PONDER_STATUS_CANCELLED);
  CHECK(calls == 1);
  /* A tree search hands back what it found before the stop. (A stop on a sampling strategy's
   * first SAMPLE cancels it without an outcome; one on CANDIDATE or DONE, after the search,
   * cancels nothing: test_stop_after_the_search_finished.) */
  CHECK(o != NULL);
  size_t n = 0;
  CHECK_STATUS(ponder_outcome_trace_json(o, NULL, 0, &n),
               PONDER_STATUS_BUFFER_TOO_SMALL);
  CHECK(n > 0);
  ponder_outcome_free(o);
}

struct canceller {
  ponder_engine *engine;
  int delay_ms;
};

static void *cancel_later(void *arg) {
  struct canceller *c = arg;
  struct timespec ts = {c->delay_ms / 1000, (long)(c->delay_ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  CHECK_STATUS(ponder_engine_cancel(c->engine), PONDER_STATUS_OK);
  return NULL;
}

struct waiter {
  ponder_engine *engine;
  ponder_status status;
  ponder_outcome *out;
};

static void *long_solve(void *arg) {
  struct waiter *w = arg;
  const char *big = "{\"type\":\"best_of_n\",\"n\":4,\"max_tokens\":4000,"
                    "\"rerank\":\"logprob\"}";
  w->status = solve(w->engine, "Write a very long story about a dragon.", big, NULL,
                    NULL, &w->out);
  return NULL;
}

static void test_cancel_from_another_thread(ponder_engine *e, int delay_ms) {
  /* Far more work than the delay allows. */
  const char *big = "{\"type\":\"best_of_n\",\"n\":4,\"max_tokens\":4000,"
                    "\"rerank\":\"logprob\"}";
  struct canceller c = {e, delay_ms};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, cancel_later, &c) == 0);
  ponder_outcome *o = NULL;
  CHECK_STATUS(solve(e, "Write a very long story about a dragon.", big, NULL,
                     NULL, &o),
               PONDER_STATUS_CANCELLED);
  CHECK(o == NULL);
  pthread_join(t, NULL);
  /* Two solves running side by side (the engine serves them concurrently) are both cancelled:
   * CANCELLED, and *out set to NULL. */
  struct waiter w = {e, PONDER_STATUS_OK, (ponder_outcome *)&w};
  struct canceller c2 = {e, 1500};
  pthread_t busy, waiting;
  CHECK(pthread_create(&t, NULL, cancel_later, &c2) == 0);
  CHECK(pthread_create(&busy, NULL, long_solve, &w) == 0);
  struct timespec ts = {0, 300L * 1000000L};
  nanosleep(&ts, NULL);
  ponder_outcome *waiting_out = (ponder_outcome *)&c2; /* not NULL: must be overwritten */
  struct waiter w2 = {e, PONDER_STATUS_OK, waiting_out};
  CHECK(pthread_create(&waiting, NULL, long_solve, &w2) == 0);
  pthread_join(busy, NULL);
  pthread_join(waiting, NULL);
  pthread_join(t, NULL);
  CHECK_STATUS(w.status, PONDER_STATUS_CANCELLED);
  CHECK(w.out == NULL);
  CHECK_STATUS(w2.status, PONDER_STATUS_CANCELLED);
  CHECK(w2.out == NULL);
  /* A later solve is not affected. */
  CHECK_STATUS(solve(e, QUESTION, TINY_BEST_OF_N, NULL, NULL, &o),
               PONDER_STATUS_OK);
  ponder_outcome_free(o);
}

/* 8 threads x 6 solves (of 12) on one engine. On the default engine they run concurrently (their
 * branches share forward passes): every outcome is complete. On a deterministic engine (solves
 * one at a time from a reset cache) every outcome also equals the one the same solve gives run
 * alone (fixed seeds). */
#define JOBS 12
#define THREADS 8

static char job_question[JOBS][64];
static char job_strategy[JOBS][160];
static char job_text[JOBS][1024];

static ponder_status solve_text(ponder_engine *e, int job, char *text, size_t len) {
  ponder_outcome *o = NULL;
  ponder_status s = solve(e, job_question[job], job_strategy[job], NULL, NULL, &o);
  if (s == PONDER_STATUS_OK) {
    size_t n = 0;
    s = ponder_outcome_text(o, text, len, &n);
    ponder_outcome_free(o);
  }
  return s;
}

struct solver {
  ponder_engine *engine;
  int index;
  int jobs;
  int solved;
  int mismatches;
  ponder_status status;
};

static void *solve_in_thread(void *arg) {
  struct solver *s = arg;
  s->status = PONDER_STATUS_OK;
  for (int j = 0; j < s->jobs; j++) {
    int job = (j + 3 * s->index) % JOBS;
    char text[1024];
    ponder_status st = solve_text(s->engine, job, text, sizeof text);
    if (st != PONDER_STATUS_OK) {
      s->status = st;
      continue;
    }
    s->solved++;
    if (strcmp(text, job_text[job]) != 0) {
      s->mismatches++;
    }
  }
  return NULL;
}

static void run_eight_threads(ponder_engine *e, int exact, int jobs) {
  struct solver solvers[THREADS];
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    solvers[i] = (struct solver){e, i, jobs, 0, 0, PONDER_STATUS_PANIC};
    CHECK(pthread_create(&threads[i], NULL, solve_in_thread, &solvers[i]) == 0);
  }
  int mismatches = 0;
  for (int i = 0; i < THREADS; i++) {
    pthread_join(threads[i], NULL);
    CHECK_STATUS(solvers[i].status, PONDER_STATUS_OK);
    CHECK(solvers[i].solved == jobs);
    mismatches += solvers[i].mismatches;
  }
  if (exact) {
    CHECK(mismatches == 0);
  } else {
    printf("8 threads x %d concurrent solves: %d of %d texts differ from the lone solve's\n",
           jobs, mismatches, THREADS * jobs);
  }
}

static void test_eight_threads_on_one_engine(ponder_engine *e, const char *exact_config) {
  for (int i = 0; i < JOBS; i++) {
    snprintf(job_question[i], sizeof job_question[i], "What is %d + %d?", i + 2, i % 5 + 3);
    snprintf(job_strategy[i], sizeof job_strategy[i],
             "{\"type\":\"best_of_n\",\"n\":2,\"max_tokens\":12,"
             "\"rerank\":\"logprob\",\"sampling\":{\"seed\":%d}}",
             i);
    CHECK_STATUS(solve_text(e, i, job_text[i], sizeof job_text[i]), PONDER_STATUS_OK);
  }
  run_eight_threads(e, 0, JOBS / 2);
  ponder_engine *exact = NULL;
  CHECK_STATUS(ponder_engine_new(exact_config, strlen(exact_config), &exact), PONDER_STATUS_OK);
  if (exact != NULL) {
    /* Served one at a time: 4 solves per thread are enough to see the order not matter. */
    run_eight_threads(exact, 1, 4);
    ponder_engine_free(exact);
  }
}

int main(int argc, char **argv) {
  int light = argc > 1 && strcmp(argv[1], "--light") == 0;
  test_static_functions();
  test_null_and_bad_arguments();

  const char *config = light ? "{\"n_ctx\":512,\"n_seq_max\":4,\"n_threads\":1}"
                             : "{\"kv_layout\":\"streams\",\"n_ctx\":8192,\"n_seq_max\":16}";
  streams_engine = !light;
  ponder_engine *e = NULL;
  CHECK_STATUS(ponder_engine_new(config, strlen(config), &e), PONDER_STATUS_OK);
  if (e == NULL) {
    fprintf(stderr, "no engine: is $PONDER_MODEL set? (make model)\n");
    return 1;
  }
  test_solve_arguments(e);
  test_solve_problem(e, light ? TINY : TINY_BEST_OF_N, light);
  if (light) {
    test_outcome(e, TINY, 0);
    test_stop_after_the_search_finished(e, TINY, 1);
    test_solve_from_own_callback(e, TINY, 0);
  } else {
    test_outcome(e, SMALL_MCTS, 1);
    test_outcome(e, TINY_BEST_OF_N, 0);
    test_cancel_from_callback(e, SMALL_MCTS);
    test_stop_after_the_search_finished(e, TINY_BEST_OF_N, 2);
    test_stop_after_the_search_finished(e, SMALL_MCTS, 2);
    test_solve_from_own_callback(e, TINY_BEST_OF_N, 1);
    test_cancel_from_another_thread(e, 300);
    test_eight_threads_on_one_engine(
        e, "{\"kv_layout\":\"unified\",\"n_ctx\":2048,\"n_seq_max\":16,\"deterministic\":true}");
  }
  ponder_engine_free(e);

  if (failures) {
    fprintf(stderr, "%d C checks failed\n", failures);
    return 1;
  }
  printf("all C tests passed\n");
  return 0;
}
