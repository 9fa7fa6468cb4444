"""Sentiment classification with a bidirectional LSTM: many-to-one over variable-length sentences.

    python examples/sentiment.py --quick          # CPU, well under a minute
    python examples/sentiment.py                  # full setting, with the nn.* vs rnnfused timing demo
    python examples/sentiment.py --torch          # the same script on plain nn.LSTM

Data: examples/data/sentiment.tsv (written by examples/data/make_data.py), one-sentence movie reviews whose label
depends on word order — "the plot was good but the acting was dull" is negative, "the plot was dull but the
acting was good" positive, "not" flips an adjective. Held-out split: the last 20 % of the file.

Model: Embedding -> nn.LSTM(bidirectional=True) over a PackedSequence (pack_padded_sequence, so padding never
enters the recurrence) -> [h_n forward ; h_n backward] -> Linear. A bag-of-words model (the same embedding,
averaged, no order) is trained alongside as the baseline that order-blind models reach.
"""
from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

import rnnfused

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

PAD, UNK = 0, 1
QUICK = dict(epochs=3, embed=32, hidden=48, layers=1, batch=32, lr=1e-2)
FULL = dict(epochs=15, embed=64, hidden=128, layers=2, batch=32, lr=3e-3)


class SentimentClassifier(nn.Module):
    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int, classes: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed, padding_idx=PAD)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] (padded with PAD), lengths [B] (CPU int64) -> logits [B, classes]."""
        packed = pack_padded_sequence(self.embed(tokens), lengths, batch_first=True, enforce_sorted=False)
        _, (h_n, _) = self.lstm(packed)                 # h_n [layers * 2, B, H], in the batch's original order
        final = torch.cat([h_n[-2], h_n[-1]], dim=1)    # last layer: forward at each sentence's end, backward at 0
        return self.head(final)


class BagOfWords(nn.Module):
    """Order-blind baseline: mean of word embeddings -> Linear."""

    def __init__(self, vocab_size: int, embed: int, classes: int = 2):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, embed, mode="mean", padding_idx=PAD)
        self.head = nn.Linear(embed, classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


# ------------------------------------------------------------------------------------------------------- data
def load_dataset(path: Path = common.DATA / "sentiment.tsv", test_fraction: float = 0.2):
    """(train, test, vocab): lists of (token ids, label); vocab maps word -> id, built from the train split."""
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    sentences = [(text.split(), int(label)) for label, text in rows]
    cut = int(len(sentences) * (1 - test_fraction))
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for words, _ in sentences[:cut]:
        for w in words:
            vocab.setdefault(w, len(vocab))
    encode = lambda split: [([vocab.get(w, UNK) for w in words], y) for words, y in split]  # noqa: E731
    return encode(sentences[:cut]), encode(sentences[cut:]), vocab


def batches(data, batch: int, device, generator: Optional[torch.Generator] = None):
    """Yields (tokens [B, T] padded, lengths [B] on the CPU, labels [B]); shuffled when a generator is given."""
    order = torch.randperm(len(data), generator=generator).tolist() if generator is not None else range(len(data))
    order = list(order)
    for i in range(0, len(order), batch):
        chunk = [data[j] for j in order[i:i + batch]]
        tokens = pad_sequence([torch.tensor(ids) for ids, _ in chunk], batch_first=True, padding_value=PAD)
        lengths = torch.tensor([len(ids) for ids, _ in chunk])
        labels = torch.tensor([y for _, y in chunk])
        yield tokens.to(device), lengths, labels.to(device)


# ------------------------------------------------------------------------------------------------------- train
def train_epoch(model, optimizer, data, args, generator, limit: Optional[int] = None) -> List[float]:
    """One pass over ``data`` (or its first ``limit`` batches); returns the loss of every step."""
    model.train()
    losses = []
    for tokens, lengths, labels in itertools.islice(batches(data, args.batch, args.device, generator), limit):
        loss = F.cross_entropy(model(tokens, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def accuracy(model, data, args) -> float:
    model.eval()
    correct = 0
    for tokens, lengths, labels in batches(data, 256, args.device):
        correct += (model(tokens, lengths).argmax(1) == labels).sum().item()
    return correct / len(data)


def fit(model, train, test, args, progress: common.Progress, name: str) -> dict:
    generator = torch.Generator().manual_seed(args.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    step_losses = []
    for epoch in range(1, args.epochs + 1):
        losses = train_epoch(model, optimizer, train, args, generator)
        step_losses += losses
        progress.log(epoch, args.epochs, model=name, train_loss=sum(losses) / len(losses),
                     train_acc=accuracy(model, train, args), test_acc=accuracy(model, test, args))
    return {"step_losses": step_losses, "test_accuracy": accuracy(model, test, args),
            "train_accuracy": accuracy(model, train, args)}


def build_parser():
    p = common.parser(__doc__.split("\n\n")[0])
    for name in ("embed", "hidden", "layers", "batch"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--baseline", action="store_true", default=None,
                   help="also train the bag-of-words baseline (default: in the full setting)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = common.setting(common.parse(build_parser(), argv), QUICK, FULL)
    if args.baseline is None:
        args.baseline = not args.quick
    progress = common.Progress(args.quiet)
    common.seed_everything(args.seed)
    train, test, vocab = load_dataset()
    dtype = common.dtype_of(args)
    model = SentimentClassifier(len(vocab), args.embed, args.hidden, args.layers).to(args.device, dtype)
    if args.impl == "fused":  # nn.LSTM/GRU/RNN/*Cell -> rnnfused's fused twins, in place
        rnnfused.convert(model, backend=args.backend)
    common.header(progress, "sentiment: bidirectional LSTM over packed sentences", args, model)
    progress.say(f"   {len(train)} train / {len(test)} test sentences, vocabulary {len(vocab)}, chance 50 %")
    initial = model.state_dict()
    initial = {k: v.clone() for k, v in initial.items()}
    result = fit(model, train, test, args, progress, "bilstm")
    progress.say(f"bidirectional LSTM: test accuracy {result['test_accuracy']:.2%} "
                 f"(train {result['train_accuracy']:.2%})")
    if args.baseline:
        common.seed_everything(args.seed)
        bow = BagOfWords(len(vocab), args.embed).to(args.device, dtype)
        result["baseline_test_accuracy"] = fit(bow, train, test, args, progress, "bag-of-words")["test_accuracy"]
        progress.say(f"bag-of-words baseline (no word order): test accuracy {result['baseline_test_accuracy']:.2%}")
    if args.timing:
        fresh = SentimentClassifier(len(vocab), args.embed, args.hidden, args.layers).to(args.device, dtype)
        fresh.load_state_dict(initial)  # weights keep nn.* names, so the state dict fits either impl
        run = common.adam_runner(args.lr, train_epoch, train, args, seed=args.seed)
        result["seconds_per_epoch"] = common.timing_demo(fresh, run, args.backend, progress)
    return result


if __name__ == "__main__":
    main()
