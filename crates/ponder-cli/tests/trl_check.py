"""TRL's own trainers on ponder synth's files, one optimizer step each (crates/ponder-cli/tests/trl.rs
runs it; scripts/setup-trl.sh makes the Python environment).

    python trl_check.py SYNTH_DIR MODEL.gguf

- SFTTrainer on sft.jsonl and on correction.jsonl, DPOTrainer on preference.jsonl, PRMTrainer (TRL's
  stepwise-supervision trainer, trl.experimental.prm) on prm.jsonl;
- each file is read with `datasets` as a user would, and every record must survive TRL's
  preprocessing (the count before and after);
- each trainer runs one step on the CPU and its loss must be finite;
- what TRL only warns about is checked here as a failure: a preference prompt whose chat-templated
  tokens are not the start of prompt + chosen (a prompt repeated inside `chosen`, or a conversation
  the template renders differently), PRM labels that are not booleans (TRL casts each with int(),
  so 0.9 would train as a bad step), and a PRM record whose tokenised labels are not one per step.

The model is the GGUF file itself, dequantised by transformers. The last line of stdout is a JSON
report: records and loss per file.
"""

import copy
import json
import math
import os
import sys
import tempfile

import torch

torch.set_num_threads(int(os.environ.get("PONDER_TRL_THREADS", "2")))
torch.manual_seed(0)

from datasets import load_dataset  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForTokenClassification,
    AutoTokenizer,
    GgufConfig,
)
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer  # noqa: E402
from trl.experimental.prm import PRMConfig, PRMTrainer  # noqa: E402

hf_logging.set_verbosity_error()

# Long enough that nothing is truncated: a record cut short would hide a step's label.
MAX_LENGTH = 1024
STEP_SEPARATOR = "\n\n"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def special_token(path, key):
    """A token id the GGUF file names (transformers' GGUF tokenizer loses the eos and pad ids)."""
    field = GGUFReader(path).fields.get(key)
    return None if field is None else int(field.parts[field.data[0]][0])


def dense():
    """Every weight unpacked into an ordinary dense model: left in GGUF blocks, transformers
    refuses to train it."""
    return GgufConfig(dequantize=True)


def load(path):
    directory, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    eos = special_token(path, "tokenizer.ggml.eos_token_id")
    pad = special_token(path, "tokenizer.ggml.padding_token_id")
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad if pad is not None else eos)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, quantization_config=dense(), dtype=torch.float32
    )
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return directory, name, tokenizer, model


def records(path):
    with open(path) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines:
        fail(f"{path} is empty: the test's synth run must give every format a record")
    return lines


def common_args(out, name):
    return dict(
        output_dir=os.path.join(out, name),
        max_steps=1,
        per_device_train_batch_size=2,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        dataset_num_proc=None,
        seed=0,
    )


def train(trainer, label, n):
    kept = len(trainer.train_dataset)
    if kept != n:
        fail(f"{label}: TRL's preprocessing kept {kept} of {n} records")
    result = trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    loss = losses[0] if losses else result.training_loss
    if trainer.state.global_step < 1:
        fail(f"{label}: no optimizer step was taken")
    if not math.isfinite(loss):
        fail(f"{label}: loss {loss} is not finite")
    print(f"{label}: {n} records, loss {loss:.4f}", flush=True)
    return {"records": n, "loss": loss, "steps": trainer.state.global_step}


def sft(synth, out, tokenizer, model, stem):
    path = os.path.join(synth, f"{stem}.jsonl")
    rows = records(path)
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        if roles[-1] != "assistant" or "user" not in roles:
            fail(f"{stem}: a conversation must end with the assistant's answer after a user turn: {roles}")
    dataset = load_dataset("json", data_files=path, split="train")
    args = SFTConfig(max_length=MAX_LENGTH, **common_args(out, stem))
    trainer = SFTTrainer(
        model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=tokenizer
    )
    # Every record's assistant text is in what the trainer will learn, whole (nothing truncated).
    for r, row in zip(rows, trainer.train_dataset, strict=True):
        text = tokenizer.decode(row["input_ids"])
        if r["messages"][-1]["content"] not in text:
            fail(f"{stem}: record {r['id']}: the assistant message is not in the tokenised text")
    return train(trainer, f"SFTTrainer on {stem}.jsonl", len(rows))


def dpo(synth, out, tokenizer, model):
    path = os.path.join(synth, "preference.jsonl")
    rows = records(path)
    for r in rows:
        prompt = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True)["input_ids"]
        for side in ("chosen", "rejected"):
            if [m["role"] for m in r[side]] != ["assistant"]:
                fail(f"preference: {side} must be one assistant message: {r[side]}")
            whole = tokenizer.apply_chat_template(r["prompt"] + r[side])["input_ids"]
            if whole[: len(prompt)] != prompt:
                fail(f"preference: record {r['id']}: the templated prompt is not the start of prompt + {side}")
            last_user = [m["content"] for m in r["prompt"] if m["role"] == "user"][-1]
            if last_user in r[side][0]["content"]:
                fail(f"preference: record {r['id']}: {side} repeats the prompt")
    dataset = load_dataset("json", data_files=path, split="train")
    args = DPOConfig(max_length=MAX_LENGTH, **common_args(out, "preference"))
    # The reference model given, as TRL would otherwise load it again from a path.
    trainer = DPOTrainer(
        model=copy.deepcopy(model),
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    return train(trainer, "DPOTrainer on preference.jsonl", len(rows))


def prm(synth, out, directory, name, tokenizer, model):
    path = os.path.join(synth, "prm.jsonl")
    rows = records(path)
    for r in rows:
        if not isinstance(r["prompt"], str) or not all(isinstance(c, str) for c in r["completions"]):
            fail(f"prm: record {r['id']}: prompt and completions must be strings")
        if len(r["labels"]) != len(r["completions"]):
            fail(f"prm: record {r['id']}: {len(r['labels'])} labels for {len(r['completions'])} steps")
        if not all(isinstance(label, bool) for label in r["labels"]):
            fail(f"prm: record {r['id']}: labels must be booleans (TRL's int() would cut {r['labels']})")
    dataset = load_dataset("json", data_files=path, split="train")
    # A token classifier (good / bad step) on the same weights.
    classifier = AutoModelForTokenClassification.from_pretrained(
        directory, gguf_file=name, quantization_config=dense(), num_labels=2, dtype=torch.float32
    )
    classifier.config.pad_token_id = tokenizer.pad_token_id
    args = PRMConfig(
        max_length=MAX_LENGTH, step_separator=STEP_SEPARATOR, **common_args(out, "prm")
    )
    trainer = PRMTrainer(
        model=classifier, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    for r, row in zip(rows, trainer.train_dataset, strict=True):
        got = [label for label in row["labels"] if label != -100]
        if got != [int(label) for label in r["labels"]]:
            fail(f"prm: record {r['id']}: tokenised labels {got}, the file's {r['labels']}")
    return train(trainer, "PRMTrainer on prm.jsonl", len(rows))


def main():
    synth, gguf = sys.argv[1], sys.argv[2]
    directory, name, tokenizer, model = load(gguf)
    report = {}
    with tempfile.TemporaryDirectory(prefix="ponder-trl-") as out:
        report["sft"] = sft(synth, out, tokenizer, model, "sft")
        report["correction"] = sft(synth, out, tokenizer, model, "correction")
        report["preference"] = dpo(synth, out, tokenizer, model)
        report["prm"] = prm(synth, out, directory, name, tokenizer, model)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
