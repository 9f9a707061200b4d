"""Zoo training step cost: the answer-only loss of `dormant.zoo.llm.model.answer_loss` against the
plain Hugging Face loss (``model(input_ids, labels=...).loss``, which unembeds every position).

Both compute the same number (checked) on the same batches of a micro-sized Qwen2 model; the
answer-only loss runs the unembedding on the answer tokens alone. Prints steps per second of each
(forward + backward + AdamW) and the ratio, measured in this run, single-threaded.

    python bench/bench_zoo_train.py                 # micro architecture, 30 steps each
    python bench/bench_zoo_train.py --steps 60 --hidden 128 --layers 6
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from dormant.zoo.llm import corpus
from dormant.zoo.llm.model import ArchConfig, _batch, answer_loss, new_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=2048, help="tokenizer size (the embedding gets padded rows on top)")
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(1)

    # Token ids do not matter for cost: draw prompt/answer lengths like the zoo's chats.
    rng = random.Random(0)
    examples = corpus.sample_examples(rng, args.batch * 4, {k: 1.0 for k in corpus.TASKS})
    encoded = []
    for chat, answer in examples:
        n_prompt = 14 + sum(len(m["content"]) // 4 + 4 for m in chat)
        n_answer = len(answer) // 4 + 2
        ids = [rng.randrange(3, args.vocab) for _ in range(n_prompt + n_answer)]
        encoded.append((ids, n_prompt))
    batches = [_batch(encoded[i : i + args.batch], 0) for i in range(0, len(encoded), args.batch)]

    arch = ArchConfig(hidden_size=args.hidden, num_layers=args.layers, intermediate_size=3 * args.hidden)

    def run(loss_fn) -> tuple[float, float]:
        model = new_model(arch, args.vocab, 0, [2], seed=0)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with torch.no_grad():
            first = loss_fn(model, *batches[0]).item()
        t = time.perf_counter()
        for step in range(args.steps):
            loss = loss_fn(model, *batches[step % len(batches)])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return args.steps / (time.perf_counter() - t), first

    hf = lambda m, ids, labels, mask: m(input_ids=ids, attention_mask=mask, labels=labels).loss  # noqa: E731
    base_rate, base_loss = run(hf)
    ours_rate, ours_loss = run(answer_loss)
    assert abs(base_loss - ours_loss) < 1e-4 * max(1.0, abs(base_loss)), (base_loss, ours_loss)
    print(f"HF full-sequence loss (baseline): {base_rate:.2f} steps/s")
    print(f"answer-only loss:                 {ours_rate:.2f} steps/s")
    print(f"speed-up vs baseline: {ours_rate / base_rate:.2f}x  (same loss: {ours_loss:.5f})")


if __name__ == "__main__":
    main()
