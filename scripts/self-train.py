"""One SFT pass of the self-improvement round (scripts/self-train.sh runs it in target/trlenv):
TRL's SFTTrainer on ponder synth's sft.jsonl, from the GGUF model dequantised by transformers,
saved as a Hugging Face checkpoint that llama.cpp's convert_hf_to_gguf.py turns back into GGUF.

    python self-train.py SFT_JSONL MODEL.gguf OUT_DIR [--steps N] [--lr LR] [--batch B]
    python self-train.py --no-train MODEL.gguf OUT_DIR   # the same checkpoint, untrained
    python self-train.py --graft MODEL.gguf CONVERTED.gguf OUT.gguf

Each record's conversation is split into prompt (every message before the last) and completion
(the assistant's answer), TRL's conversational prompt-completion format, so that the loss falls on
the answer only.
"""

import argparse
import json
import os
import sys

import torch

torch.set_num_threads(int(os.environ.get("PONDER_TRL_THREADS", "2")))
torch.manual_seed(0)

from datasets import Dataset  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402


def special_token(path, key):
    field = GGUFReader(path).fields.get(key)
    return None if field is None else int(field.parts[field.data[0]][0])


def load(path):
    directory, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    # transformers' GGUF tokenizer loses the eos and pad ids: the file names them.
    eos = special_token(path, "tokenizer.ggml.eos_token_id")
    pad = special_token(path, "tokenizer.ggml.padding_token_id")
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad if pad is not None else eos)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, quantization_config=GgufConfig(dequantize=True), dtype=torch.float32
    )
    model.config.eos_token_id = eos
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, model


def graft(original, converted, out):
    """CONVERTED's tensors under ORIGINAL's metadata. convert_hf_to_gguf.py rebuilds the tokenizer
    from the checkpoint, and the one transformers reconstructs from a GGUF file is not the model's
    (byte fallback, a sentencepiece decoder): it would be written as another vocabulary type. The
    tensors are the same names and shapes; the tokenizer, chat template and special tokens stay
    the original file's."""
    import gguf

    meta, weights = gguf.GGUFReader(original), gguf.GGUFReader(converted)
    theirs = {t.name: t for t in weights.tensors}
    ours = [t.name for t in meta.tensors]
    if sorted(ours) != sorted(theirs):
        sys.exit(f"{converted} and {original} hold different tensors")
    arch = meta.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(out, arch=arch)
    own = {gguf.Keys.General.FILE_TYPE, gguf.Keys.General.QUANTIZATION_VERSION}
    for field in meta.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        source = weights.get_field(field.name) if field.name in own else field
        if source is None:
            continue
        kind = source.types[0]
        sub = source.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, source.contents(), kind, sub_type=sub)
    tensors = [theirs[name] for name in ours]
    for t in tensors:
        writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in tensors:
        writer.write_tensor_data(t.data, tensor_endianess=weights.endianess)
    writer.close()


def main():
    if sys.argv[1:2] == ["--graft"]:
        graft(*sys.argv[2:5])
        return
    p = argparse.ArgumentParser()
    p.add_argument("paths", nargs="+")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--batch", type=int, default=4)
    a = p.parse_args()
    if a.no_train:
        gguf, out = a.paths
    else:
        sft, gguf, out = a.paths
    tokenizer, model = load(gguf)
    report = {}
    if not a.no_train:
        with open(sft) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if not rows:
            sys.exit(f"{sft} has no records: nothing to train on")
        data = Dataset.from_list(
            [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
        )
        args = SFTConfig(
            output_dir=os.path.join(out, "run"),
            max_steps=a.steps,
            per_device_train_batch_size=a.batch,
            learning_rate=a.lr,
            lr_scheduler_type="cosine",
            warmup_steps=max(1, a.steps // 20),
            max_length=512,
            logging_steps=max(1, a.steps // 10),
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
        if len(trainer.train_dataset) != len(rows):
            sys.exit(f"TRL kept {len(trainer.train_dataset)} of {len(rows)} records")
        result = trainer.train()
        losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
        report = {
            "records": len(rows),
            "steps": trainer.state.global_step,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "train_loss": result.training_loss,
        }
        model = trainer.model
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
