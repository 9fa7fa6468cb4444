"""Sequence to sequence: an LSTM encoder reads "123+89", an LSTM-cell decoder writes "212".

    python examples/seq2seq.py --quick            # CPU, well under a minute (2-digit numbers)
    python examples/seq2seq.py                    # full setting (3-digit numbers), with the timing demo
    python examples/seq2seq.py --torch            # the same script on plain nn.LSTM / nn.LSTMCell

The encoder (nn.LSTM over a PackedSequence of the variable-length question) hands its final (h, c) of every layer to
a decoder made of a stack of nn.LSTMCell that is stepped in Python, one output character at a time: teacher forcing
in training (the true previous character goes in), greedy decoding at test (its own previous guess goes in).
Metric: exact-match accuracy of the whole answer on held-out questions never seen in training.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

import rnnfused

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# One vocabulary for both sides: digits, '+', and the decoder's start / end / padding marks.
TOKENS = ["<pad>", "<s>", "</s>"] + list("0123456789+")
PAD, SOS, EOS = 0, 1, 2
INDEX = {t: i for i, t in enumerate(TOKENS)}
QUICK = dict(epochs=12, digits=2, train_size=7000, test_size=500, embed=16, hidden=128, layers=1, batch=64, lr=1e-2)
FULL = dict(epochs=24, digits=3, train_size=30000, test_size=2000, embed=32, hidden=128, layers=1, batch=64,
            lr=1e-2)


class Seq2Seq(nn.Module):
    def __init__(self, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embed = nn.Embedding(len(TOKENS), embed, padding_idx=PAD)
        self.encoder = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.decoder = nn.ModuleList([nn.LSTMCell(embed if l == 0 else hidden, hidden) for l in range(layers)])
        self.head = nn.Linear(hidden, len(TOKENS))

    def encode(self, src: torch.Tensor, src_len: torch.Tensor) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """src [B, S] padded, src_len [B] -> per layer (h, c), each [B, H]: the state after each question's end."""
        packed = pack_padded_sequence(self.embed(src), src_len, batch_first=True, enforce_sorted=False)
        _, (h_n, c_n) = self.encoder(packed)            # [layers, B, H] each
        return [(h_n[l], c_n[l]) for l in range(len(self.decoder))]

    def step(self, token: torch.Tensor, state):
        """One decoder step: token [B] -> logits [B, V], new per-layer state."""
        x = self.embed(token)
        new_state = []
        for cell, (h, c) in zip(self.decoder, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        return self.head(x), new_state

    def forward(self, src, src_len, tgt_in):
        """Teacher forcing: tgt_in [B, U] starts with <s>; returns logits [B, U, V]."""
        state = self.encode(src, src_len)
        logits = []
        for t in range(tgt_in.size(1)):
            out, state = self.step(tgt_in[:, t], state)
            logits.append(out)
        return torch.stack(logits, dim=1)

    @torch.no_grad()
    def greedy(self, src, src_len, max_len: int) -> torch.Tensor:
        """[B, max_len] predicted tokens, each step fed the previous argmax."""
        state = self.encode(src, src_len)
        token = torch.full((src.size(0),), SOS, dtype=torch.long, device=src.device)
        out = []
        for _ in range(max_len):
            logits, state = self.step(token, state)
            token = logits.argmax(1)
            out.append(token)
        return torch.stack(out, dim=1)


# ------------------------------------------------------------------------------------------------------- data
def make_split(digits: int, train_size: int, test_size: int, seed: int):
    """Disjoint train / test lists of (question, answer) strings, e.g. ("123+89", "212"). The test questions are
    the same for every --seed (drawn from a fixed stream), so runs with different seeds are comparable."""
    hi = 10 ** digits
    capacity = hi * hi
    if train_size + test_size > capacity:
        raise ValueError(f"--train-size + --test-size ({train_size + test_size}) exceed the {capacity} distinct "
                         f"questions with {digits} digits")

    def draw(rng, count, exclude):
        seen, pairs = set(exclude), []
        while len(pairs) < count:
            pair = (rng.randrange(hi), rng.randrange(hi))
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
        return pairs

    test = draw(random.Random(10_000 + digits), test_size, set())
    train = draw(random.Random(seed), train_size, set(test))
    as_text = lambda pairs: [(f"{a}+{b}", str(a + b)) for a, b in pairs]  # noqa: E731
    return as_text(train), as_text(test)


def tensors(pairs, device):
    """(src [N, S] padded, src_len [N] CPU, tgt_in [N, U] '<s>'+answer, tgt_out [N, U] answer+'</s>', padded)."""
    src = [torch.tensor([INDEX[ch] for ch in q]) for q, _ in pairs]
    ans = [[INDEX[ch] for ch in a] for _, a in pairs]
    tgt_in = [torch.tensor([SOS] + a) for a in ans]
    tgt_out = [torch.tensor(a + [EOS]) for a in ans]
    pad = lambda seqs: pad_sequence(seqs, batch_first=True, padding_value=PAD).to(device)  # noqa: E731
    return pad(src), torch.tensor([len(s) for s in src]), pad(tgt_in), pad(tgt_out)


# ------------------------------------------------------------------------------------------------------- train
def train_epoch(model, optimizer, data, args, generator, limit: Optional[int] = None) -> float:
    """One pass over the training questions (or its first ``limit`` batches); returns the mean loss."""
    src, src_len, tgt_in, tgt_out = data
    model.train()
    total, count = 0.0, 0
    for idx in torch.randperm(src.size(0), generator=generator).split(args.batch)[:limit]:
        logits = model(src[idx], src_len[idx], tgt_in[idx])
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out[idx].flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total, count = total + loss.item() * len(idx), count + len(idx)
    return total / count


def exact_match(model, data, batch: int = 500) -> float:
    """Fraction of questions whose greedy answer (up to </s>) equals the true answer exactly."""
    src, src_len, _, tgt_out = data
    model.eval()
    correct = 0
    for i in range(0, src.size(0), batch):
        pred = model.greedy(src[i:i + batch], src_len[i:i + batch], tgt_out.size(1))
        want = tgt_out[i:i + batch]
        mask = want != PAD                                   # the answer and its </s>
        correct += ((pred == want) | ~mask).all(dim=1).sum().item()
    return correct / src.size(0)


def build_parser():
    p = common.parser(__doc__.split("\n\n")[0])
    for name in ("digits", "train_size", "test_size", "embed", "hidden", "layers", "batch"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = common.setting(common.parse(build_parser(), argv), QUICK, FULL)
    progress = common.Progress(args.quiet)
    common.seed_everything(args.seed)
    train_pairs, test_pairs = make_split(args.digits, args.train_size, args.test_size, args.seed)
    train, test = tensors(train_pairs, args.device), tensors(test_pairs, args.device)
    model = Seq2Seq(args.embed, args.hidden, args.layers).to(args.device, common.dtype_of(args))
    if args.impl == "fused":  # nn.LSTM/GRU/RNN/*Cell -> rnnfused's fused twins, in place
        rnnfused.convert(model, backend=args.backend)
    common.header(progress, f"seq2seq: {args.digits}-digit addition, LSTM encoder -> LSTM-cell decoder", args, model)
    progress.say(f"   {len(train_pairs)} train / {len(test_pairs)} held-out questions, e.g. "
                 f"{test_pairs[0][0]} = {test_pairs[0][1]}")
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    history = []
    for epoch in range(1, args.epochs + 1):
        loss = train_epoch(model, optimizer, train, args, generator)
        acc = exact_match(model, test)
        history.append({"loss": loss, "test_exact_match": acc})
        progress.log(epoch, args.epochs, train_loss=loss, test_exact_match=acc)
    src, src_len, _, _ = test
    pred = model.greedy(src[:5], src_len[:5], test[3].size(1))
    for (q, a), p in zip(test_pairs[:5], pred.tolist()):
        guess = "".join(TOKENS[t] for t in p).split("</s>")[0]
        progress.say(f"   {q:>9s} = {a:<5s} model: {guess:<5s} {'ok' if guess == a else 'WRONG'}")
    result = {"history": history, "test_exact_match": history[-1]["test_exact_match"]}
    progress.say(f"exact match on held-out questions: {result['test_exact_match']:.2%}")
    if args.timing:
        fresh = Seq2Seq(args.embed, args.hidden, args.layers).to(args.device, common.dtype_of(args))
        fresh.load_state_dict(initial)
        run = common.adam_runner(args.lr, train_epoch, train, args, seed=args.seed)
        result["seconds_per_epoch"] = common.timing_demo(fresh, run, args.backend, progress)
    return result


if __name__ == "__main__":
    main()
