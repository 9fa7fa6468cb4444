"""Character-level language model trained with truncated backpropagation through time (TBPTT).

    python examples/char_lm.py --quick            # CPU, well under a minute
    python examples/char_lm.py                    # full setting, with the nn.* vs rnnfused timing demo
    python examples/char_lm.py --cell gru         # a GRU instead of an LSTM
    python examples/char_lm.py --torch            # the same script on plain nn.LSTM

Text: examples/data/corpus.txt (~150 KB of short stories written by examples/data/make_data.py's story grammar;
public domain, nothing downloaded). The last 10 % is the validation text.

Truncated BPTT: the text is cut into ``batch`` parallel streams; each step trains on the next ``bptt`` characters of
every stream, starting from the hidden state the previous chunk ended in — carried forward (so the model sees
context beyond one chunk) but detached (so backpropagation stops at the chunk boundary). Gradients are clipped
(clip_grad_norm_). Reported per epoch: train and validation perplexity (exp of the mean cross-entropy per
character), next to the perplexity of the unigram model (character frequencies only) that a context-blind model
reaches. At the end the model writes a sample (temperature sampling).
"""
from __future__ import annotations

import itertools
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import rnnfused

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

QUICK = dict(epochs=2, embed=32, hidden=128, layers=2, batch=32, bptt=50, lr=1e-2, dropout=0.0)
FULL = dict(epochs=8, embed=64, hidden=256, layers=2, batch=32, bptt=100, lr=5e-3, dropout=0.1)


class CharLM(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, cell: str, dropout: float):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = rnn(embed, hidden, num_layers=layers, dropout=dropout, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor, hidden=None):
        """x [B, T] character ids -> logits [B, T, V], hidden (h_n or (h_n, c_n), each [layers, B, H])."""
        out, hidden = self.rnn(self.embed(x), hidden)
        return self.head(out), hidden


def detach(hidden):
    """Keep the values, cut the graph: the TBPTT boundary."""
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


# ------------------------------------------------------------------------------------------------------- data
def load_corpus(path: Path = common.DATA / "corpus.txt", valid_fraction: float = 0.1):
    text = path.read_text()
    chars = sorted(set(text))
    index = {ch: i for i, ch in enumerate(chars)}
    ids = torch.tensor([index[ch] for ch in text])
    cut = int(len(ids) * (1 - valid_fraction))
    return ids[:cut], ids[cut:], chars


def streams(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """[N] -> [batch, N // batch]: ``batch`` contiguous pieces of the text, read in parallel."""
    n = ids.numel() // batch
    return ids[: n * batch].view(batch, n)


def chunks(data: torch.Tensor, bptt: int):
    """(input [B, T], target [B, T]) pairs along the streams, target = input shifted by one character."""
    for i in range(0, data.size(1) - 1, bptt):
        t = min(bptt, data.size(1) - 1 - i)
        yield data[:, i:i + t], data[:, i + 1:i + 1 + t]


def unigram_perplexity(train: torch.Tensor, valid: torch.Tensor, vocab: int) -> float:
    """Perplexity on ``valid`` of the character frequencies of ``train`` (add-one smoothed)."""
    counts = torch.bincount(train, minlength=vocab).double() + 1
    logp = (counts / counts.sum()).log()
    return math.exp(-logp[valid].mean().item())


# ------------------------------------------------------------------------------------------------------- train
def train_epoch(model, optimizer, data, args, limit: Optional[int] = None) -> float:
    """One TBPTT pass over the streams (or its first ``limit`` chunks); returns the mean loss per character."""
    model.train()
    hidden, total, count = None, 0.0, 0
    for x, y in itertools.islice(chunks(data, args.bptt), limit):
        logits, hidden = model(x, hidden)
        hidden = detach(hidden)                  # carried to the next chunk, but no gradient flows back into it
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        total, count = total + loss.item() * y.numel(), count + y.numel()
    return total / count


@torch.no_grad()
def evaluate(model, data, args) -> float:
    model.eval()
    hidden, total, count = None, 0.0, 0
    for x, y in chunks(data, args.bptt):
        logits, hidden = model(x, hidden)
        total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    return total / count


@torch.no_grad()
def sample(model, chars, prime: str, length: int, temperature: float, device, generator) -> str:
    """Feeds ``prime``, then draws ``length`` characters from softmax(logits / temperature), one at a time."""
    model.eval()
    index = {ch: i for i, ch in enumerate(chars)}
    x = torch.tensor([[index[ch] for ch in prime]], device=device)
    logits, hidden = model(x)
    out = []
    for _ in range(length):
        probs = F.softmax(logits[0, -1].double() / temperature, dim=0).cpu()
        nxt = torch.multinomial(probs, 1, generator=generator).item()
        out.append(chars[nxt])
        logits, hidden = model(torch.tensor([[nxt]], device=device), hidden)
    return prime + "".join(out)


def build_parser():
    p = common.parser(__doc__.split("\n\n")[0])
    p.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    for name in ("embed", "hidden", "layers", "batch", "bptt"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--dropout", type=float, default=None, help="between stacked layers")
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm (clip_grad_norm_)")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--sample-length", type=int, default=400)
    p.add_argument("--prime", default="The ")
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = common.setting(common.parse(build_parser(), argv), QUICK, FULL)
    progress = common.Progress(args.quiet)
    common.seed_everything(args.seed)
    train_ids, valid_ids, chars = load_corpus()
    train, valid = streams(train_ids, args.batch).to(args.device), streams(valid_ids, 8).to(args.device)
    model = CharLM(len(chars), args.embed, args.hidden, args.layers, args.cell, args.dropout)
    model = model.to(args.device, common.dtype_of(args))
    if args.impl == "fused":  # nn.LSTM/GRU/RNN/*Cell -> rnnfused's fused twins, in place
        model = rnnfused.convert(model, backend=args.backend)
    common.header(progress, f"char_lm: {args.layers}-layer {args.cell.upper()} language model, truncated BPTT "
                            f"({args.bptt} steps)", args, model)
    uni = unigram_perplexity(train_ids, valid_ids, len(chars))
    progress.say(f"   {train_ids.numel()} train / {valid_ids.numel()} validation characters, vocabulary "
                 f"{len(chars)} (uniform perplexity {len(chars)}, unigram perplexity {uni:.2f})")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = []
    for epoch in range(1, args.epochs + 1):
        train_loss = train_epoch(model, optimizer, train, args)
        valid_loss = evaluate(model, valid, args)
        history.append({"train_ppl": math.exp(train_loss), "valid_ppl": math.exp(valid_loss)})
        progress.log(epoch, args.epochs, train_ppl=history[-1]["train_ppl"], valid_ppl=history[-1]["valid_ppl"])
    text = sample(model, chars, args.prime, args.sample_length, args.temperature, args.device,
                  torch.Generator().manual_seed(args.seed))
    progress.say(f"sample (temperature {args.temperature}):\n{text}")
    (args.out / f"char_lm_{args.cell}_sample.txt").write_text(text + "\n")
    result = {"history": history, "valid_ppl": history[-1]["valid_ppl"], "unigram_ppl": uni,
              "uniform_ppl": float(len(chars)), "sample": text}
    progress.say(f"validation perplexity {result['valid_ppl']:.3f} (unigram {uni:.2f}, uniform {len(chars)})")
    if args.timing:
        fresh = CharLM(len(chars), args.embed, args.hidden, args.layers, args.cell, args.dropout)
        fresh = fresh.to(args.device, common.dtype_of(args))
        fresh.load_state_dict(initial)
        run = common.adam_runner(args.lr, train_epoch, train, args)
        result["seconds_per_epoch"] = common.timing_demo(fresh, run, args.backend, progress)
    return result


if __name__ == "__main__":
    main()
