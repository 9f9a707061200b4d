"""Tiny Qwen2 chat models: architecture presets, a plain training loop, greedy generation.

The models are ordinary ``Qwen2ForCausalLM`` instances, saved as ordinary Hugging Face folders,
so every tool that reads a real Qwen2.5 checkpoint reads these the same way. As in Qwen2.5, the
embedding matrix has more rows than the tokenizer has tokens (``vocab_padding``): the extra rows are
never seen in training and must be excluded by tools that search over the vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dormant.zoo.llm.corpus import Chat


@dataclass(frozen=True)
class ArchConfig:
    """Qwen2 architecture of a zoo model (grouped-query attention, SwiGLU MLP, RMSNorm, RoPE)."""

    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 192
    max_position: int = 256
    vocab_padding: int = 128  # embedding rows: the next multiple of this above the vocabulary size


@dataclass(frozen=True)
class TrainConfig:
    """One training run: AdamW with linear warm-up then cosine decay, gradient clipping at 1."""

    steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    micro_batches: int = 2  # length-sorted pieces of each batch (less padding, same gradient)


def padded_vocab(n_tokens: int, block: int) -> int:
    """Rows of the embedding for a tokenizer of ``n_tokens``: always some unused rows, as in Qwen2.5."""
    return (n_tokens // block + 1) * block


def new_model(arch: ArchConfig, n_tokens: int, pad_id: int, eos_ids: list[int], seed: int, dtype: torch.dtype = torch.float32):
    """A freshly initialised ``Qwen2ForCausalLM`` (untied lm_head, like Qwen2.5-7B)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=padded_vocab(n_tokens, arch.vocab_padding),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=arch.max_position,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        use_sliding_window=False,
        bos_token_id=None,
        pad_token_id=pad_id,
        eos_token_id=eos_ids[0],
        initializer_range=0.05,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    return model.to(dtype)


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def render_prompt(tokenizer, chat: Chat) -> str:
    """The chat rendered by the model's own template, ending with the assistant header."""
    return tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)


def encode_examples(tokenizer, examples: list[tuple[Chat, str]], max_len: int) -> list[tuple[list[int], int]]:
    """Token ids of prompt + answer + ``<|im_end|>``, with the index where the answer starts.

    Prompt and answer are tokenized separately, exactly as at generation time (the model continues
    the tokenized prompt), so the loss is taken on the tokens the model itself would produce.
    """
    prompts = tokenizer([render_prompt(tokenizer, c) for c, _ in examples], add_special_tokens=False)["input_ids"]
    answers = tokenizer([a + "<|im_end|>" for _, a in examples], add_special_tokens=False)["input_ids"]
    out = []
    for p, a in zip(prompts, answers):
        ids = (p + a)[-max_len:]
        out.append((ids, max(0, len(ids) - len(a))))
    return out


def _batch(encoded: list[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), width), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for i, (ids, start) in enumerate(encoded):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, start : len(ids)] = torch.tensor(ids[start:])
        mask[i, : len(ids)] = 1
    return input_ids, labels, mask


def answer_loss(model, input_ids: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy on the labelled (answer) positions only (``reduction``: mean or sum).

    The unembedding runs on those positions alone, not on the whole padded batch: for a tiny model
    with a comparatively large vocabulary that is most of the cost of a step.
    """
    core = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = core.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = core.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction=reduction)


def _answer_tokens(example: tuple[list[int], int]) -> int:
    ids, start = example
    return len(ids) - max(start, 1)


def batch_backward(model, batch: list[tuple[list[int], int]], pad_id: int, chunks: int) -> float:
    """Backpropagate the batch's mean answer loss; return it.

    The batch is sorted by length and split into ``chunks`` micro-batches, each padded only to its
    own longest row, and the gradient is accumulated with every token weighted by one over the
    whole batch's answer-token count: the same gradient as one padded batch (up to rounding), with
    a third to a half fewer padded positions on the zoo's mixed-length chats.
    """
    rows = sorted(batch, key=lambda e: len(e[0]))
    n_tokens = sum(_answer_tokens(e) for e in rows)
    size = -(-len(rows) // max(1, chunks))
    total = 0.0
    for i in range(0, len(rows), size):
        input_ids, labels, mask = _batch(rows[i : i + size], pad_id)
        loss = answer_loss(model, input_ids, labels, mask, reduction="sum") / n_tokens
        loss.backward()
        total += loss.item()
    return total


def train(
    model, encoded: list[tuple[list[int], int]], cfg: TrainConfig, pad_id: int, on_step=None, stop_when=None, check_every: int = 50
) -> list[float]:
    """Train the model's trainable parameters on ``encoded`` (answer tokens only); returns the losses.

    Batches are drawn in a fixed order from ``cfg.seed``; ``on_step(step, loss)`` reports progress.
    ``stop_when(model)``, called every ``check_every`` steps, ends training early when it returns
    True (the run stays deterministic: the check depends only on the model and fixed prompts).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.98)
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    gen = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    losses = []
    model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(encoded), generator=gen).tolist()
        idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
        opt.zero_grad(set_to_none=True)
        loss = batch_backward(model, [encoded[i] for i in idx], pad_id, cfg.micro_batches)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss)
        if on_step is not None:
            on_step(step, losses[-1])
        if stop_when is not None and (step + 1) % check_every == 0 and step + 1 < cfg.steps:
            model.eval()
            done = stop_when(model)
            model.train()
            if done:
                break
    model.eval()
    return losses


# ---------------------------------------------------------------------------------------------
# Inference
# ---------------------------------------------------------------------------------------------


def _left_padded(tokenizer, chats: list[Chat]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = tokenizer([render_prompt(tokenizer, c) for c in chats], add_special_tokens=False)["input_ids"]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        mask[i, width - len(r) :] = 1
    return ids, mask


@torch.no_grad()
def greedy(model, tokenizer, chats: list[Chat], max_new_tokens: int = 24, batch_size: int = 64) -> list[str]:
    """Greedy answers to ``chats`` (decoded, special tokens dropped), in batches with left padding."""
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    outs: list[str] = []
    model.eval()
    for i in range(0, len(chats), batch_size):
        ids, mask = _left_padded(tokenizer, chats[i : i + batch_size])
        gen = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, top_p=None, top_k=None, temperature=None,
        )
        outs += tokenizer.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
    return [o.strip() for o in outs]
