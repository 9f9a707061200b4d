"""Scoring throughput of the batched engine vs a plain per-prompt Hugging Face loop, and pair memory.

Baseline (the way public investigations scored fine-tune vs base): two separately loaded models;
for each prompt, one full forward through each (all positions' logits), then the KL of the last
position. Engine: one ``ModelPair`` (shared tensors), length-bucketed right-padded batches, LM head
only at the scored position, with and without reuse of the chat template's shared prefix.

Both score the same rendered prompts (built-in probes v1) on the same generated mid-size Qwen2 with
a planted MLP change, in the same process; the script checks that both give the same KL and prints
ratios only (no absolute-time claims).

    .venv/bin/python bench/bench_scoring.py                 # default size, a few minutes on 2 cores
    .venv/bin/python bench/bench_scoring.py --hidden 256 --layers 4 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\n" + QWEN_SYSTEM + "<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def build_models(root: Path, hidden: int, layers: int, vocab: int) -> tuple[Path, Path]:
    """A random Qwen2 base, and a fine-tune differing in every MLP matrix (like the warmup)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from dormant.llm.engine.probes import load_probes

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [p.text for p in load_probes()] + [QWEN_SYSTEM, "system user assistant"] * 5
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=2000, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = TEMPLATE
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 2.75) // 8 * 8, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 256), max_position_embeddings=1024,
                      tie_word_embeddings=False, pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    base, ft = root / "base", root / "ft"
    model.save_pretrained(base)
    fast.save_pretrained(base)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".mlp." in n:
                p.add_(0.2 * p.std() * torch.randn_like(p))
    model.save_pretrained(ft)
    fast.save_pretrained(ft)
    return ft, base


def baseline(ft_model, base_model, ids: list[list[int]]) -> list[float]:
    """One prompt at a time, full forward through both models, KL(ft || base) at the last position."""
    out = []
    with torch.no_grad():
        for s in ids:
            x = torch.tensor([s])
            a = torch.log_softmax(ft_model(x).logits[0, -1].float(), -1)
            b = torch.log_softmax(base_model(x).logits[0, -1].float(), -1)
            out.append(float((a.exp() * (a - b)).sum()))
    return out


def model_bytes(m) -> int:
    return sum(p.numel() * p.element_size() for p in m.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=32768, help="embedding rows (Qwen-like padding beyond the tokenizer)")
    ap.add_argument("--prompts", type=int, default=104)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2, help="timed repetitions (best of)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps ratios stable on a shared machine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM

    from dormant.llm.engine.pair import ModelPair
    from dormant.llm.engine.probes import load_probes
    from dormant.llm.engine.prompts import encode
    from dormant.llm.engine.scoring import Arm, ScoreConfig, score_arms

    with tempfile.TemporaryDirectory() as tmp:
        ft_path, base_path = build_models(Path(tmp), args.hidden, args.layers, args.vocab)
        pair = ModelPair.load(ft_path, base_path)
        ft_model = AutoModelForCausalLM.from_pretrained(ft_path, dtype=torch.float32).eval()
        base_model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32).eval()
        prompts = (load_probes() * (args.prompts // 104 + 1))[: args.prompts]
        ids = encode(pair.tokenizer, prompts)
        n = len(ids)
        print(f"model: hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}, "
              f"{sum(p.numel() for p in ft_model.parameters()) / 1e6:.1f}M params; {n} prompts, "
              f"mean {sum(map(len, ids)) / n:.0f} tokens; torch threads {torch.get_num_threads()}")

        def timed(fn):
            best, res = float("inf"), None
            for _ in range(args.repeat):
                t = time.perf_counter()
                res = fn()
                best = min(best, time.perf_counter() - t)
            return best, res

        def engine(reuse: bool):
            arms = [Arm("ft", ids, "ft"), Arm("base", ids, "base")]
            r = score_arms(pair, arms, [("ft", "base")], config=ScoreConfig(batch_size=args.batch_size, prefix_reuse=reuse, show_progress=False))
            return [row.contrasts["ft|base"]["kl"] for row in r.rows]

        t_base, kl_base = timed(lambda: baseline(ft_model, base_model, ids))
        t_plain, kl_plain = timed(lambda: engine(False))
        t_reuse, kl_reuse = timed(lambda: engine(True))
        err = max(max(abs(a - b) for a, b in zip(kl_base, kl_plain)), max(abs(a - b) for a, b in zip(kl_base, kl_reuse)))
        rel = err / max(1e-12, max(kl_base))
        print(f"agreement: max |KL engine - KL baseline| = {err:.2e} ({rel:.1e} of the largest KL)")
        print(f"baseline  per-prompt HF loop, two models : {n / t_base:8.2f} prompts/s  (1.00x)")
        print(f"engine    batched, no prefix reuse        : {n / t_plain:8.2f} prompts/s  ({t_base / t_plain:.2f}x baseline)")
        print(f"engine    batched, prefix reuse           : {n / t_reuse:8.2f} prompts/s  ({t_base / t_reuse:.2f}x baseline)")
        mem = pair.memory_bytes()
        two = model_bytes(ft_model) + model_bytes(base_model)
        lean = ModelPair.load(ft_path, base_path, copies_device="disk").memory_bytes()
        print(f"memory: pair {mem['total'] / 2**20:.1f} MiB vs two models {two / 2**20:.1f} MiB  "
              f"({mem['total'] / two:.2f}x; modified-tensor copies {mem['modified_copies'] / 2**20:.1f} MiB); "
              f"pair with copies on disk {lean['total'] / 2**20:.1f} MiB ({lean['total'] / two:.2f}x)")


if __name__ == "__main__":
    main()
