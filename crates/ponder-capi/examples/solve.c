/*
 * Solve one question with MCTS on the default model, streaming the search as it runs.
 *
 *   cc solve.c $(pkg-config --cflags --libs ponder) -o solve
 *   ./solve [--budget TOKENS] "A farmer has 15 sheep and buys 2 more. How many?"
 *
 * The model: $PONDER_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ponder.h"

static int on_event(void *userdata, const ponder_event *ev) {
  (void)userdata;
  if (ev->kind == PONDER_EVENT_KIND_STEP) {
    char line[61];
    size_t i = 0;
    for (; i + 1 < sizeof line && i < ev->text_len; i++)
      line[i] = ev->text[i] == '\n' ? ' ' : ev->text[i];
    line[i] = '\0';
    printf("step %llu (parent %llu, depth %u, %u tokens): %s\n",
           (unsigned long long)ev->node, (unsigned long long)ev->parent,
           ev->depth, ev->tokens, line);
  } else if (ev->kind == PONDER_EVENT_KIND_SCORED) {
    printf("  judged %llu: %.2f\n", (unsigned long long)ev->node, ev->judge);
  }
  return 0; /* non-zero would cancel the search */
}

static int fail(const char *what, ponder_status s) {
  char detail[1024];
  size_t n = 0;
  ponder_last_error(detail, sizeof detail, &n);
  fprintf(stderr, "%s: %s (%s)\n", what, ponder_status_message(s), detail);
  return 1;
}

int main(int argc, char **argv) {
  int budget = 400;
  int arg = 1;
  if (argc > 2 && strcmp(argv[1], "--budget") == 0) {
    budget = atoi(argv[2]);
    arg = 3;
  }
  const char *question =
      arg < argc ? argv[arg] : "A farmer has 15 sheep and buys 2 more. How many sheep does he have?";

  ponder_engine *engine = NULL;
  const char *config = "{\"n_ctx\":4096}";
  ponder_status s = ponder_engine_new(config, strlen(config), &engine);
  if (s != PONDER_STATUS_OK)
    return fail("loading the model", s);

  char strategy[256];
  snprintf(strategy, sizeof strategy,
           "{\"type\":\"mcts\",\"k\":3,\"budget\":{\"tokens\":%d}}", budget);
  ponder_outcome *outcome = NULL;
  s = ponder_engine_solve(engine, question, strlen(question), strategy,
                          strlen(strategy), on_event, NULL, &outcome);
  if (s != PONDER_STATUS_OK) {
    ponder_engine_free(engine);
    return fail("solving", s);
  }

  char answer[256];
  size_t n = 0;
  s = ponder_outcome_answer(outcome, answer, sizeof answer, &n);
  printf("answer: %s\n", s == PONDER_STATUS_OK ? answer : ponder_status_message(s));
  double score = 0;
  ponder_outcome_score(outcome, &score);
  ponder_usage u;
  ponder_outcome_usage(outcome, &u);
  printf("score %.3f · prompt %llu · prefill %llu · generated %llu · %llu forward passes · %.2f s\n",
         score, (unsigned long long)u.prompt_tokens,
         (unsigned long long)u.prefill_tokens,
         (unsigned long long)u.generated_tokens,
         (unsigned long long)u.forward_passes, (double)u.wall_ms / 1000.0);

  ponder_outcome_free(outcome);
  ponder_engine_free(engine);
  return 0;
}
