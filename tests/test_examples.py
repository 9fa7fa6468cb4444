"""The examples under examples/: each --quick run learns (on the cpu backend), sentiment.py gives the same loss
trajectory on nn.LSTM and after rnnfused.convert (tests/test_convert.py tests convert itself), and the shipped data
files are what examples/data/make_data.py writes.

Bounds come from observed --quick runs (seeds 0-4, cpu backend, 2-core CPU; quoted in each test) with a wide margin,
and each sits far from what a run that does not learn reaches: with the gradients zeroed every metric stays at its
chance level (checked by hand: adding-problem MSE ~0.17, perplexity ~49, accuracy ~50 %, exact match ~0).
"""
import importlib
import sys
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))


def example(name):
    return importlib.import_module(name)


def quick(tmp_path, *extra):
    # --quick runs on one CPU thread: these models are too small for two to help, and two threads are ~10x slower
    # on an oversubscribed 2-core machine.
    return ["--quick", "--backend", "cpu", "--quiet", "--out", str(tmp_path), *extra]


@pytest.fixture(autouse=True)
def restore_threads():
    """The examples' --threads sets torch's process-wide thread count; give the rest of the suite its own back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_long_range_quick_lstm_and_gru_solve_the_adding_problem(tmp_path):
    result = example("long_range").main(quick(tmp_path))
    chance = example("long_range").CHANCE_MSE  # 0.167: always answering 1
    assert result["lengths"] == [10, 40]
    for cell in ("lstm", "gru"):
        # observed at T=10: LSTM 0.0009-0.0022, GRU 0.0008-0.0014 (seeds 0-4)
        assert result["results"][cell, 10]["mse"] < 0.1 * chance, cell
    # observed at T=40: GRU 0.0013-0.0020 (seeds 0-4)
    assert result["results"]["gru", 40]["mse"] < 0.25 * chance
    g = result["grads"]["rnn", 40]  # the gradient-vs-distance profile: [T], finite
    assert g.shape == (40,) and torch.isfinite(g).all() and g[0] > 0
    assert (tmp_path / "long_range.png").exists()


@pytest.mark.slow
def test_char_lm_quick_beats_the_unigram_model(tmp_path):
    result = example("char_lm").main(quick(tmp_path))
    # observed: valid perplexity 1.47-1.53 (seeds 0-4) against unigram 20.6 and uniform 49: a model that learned
    # nothing from context cannot get below the unigram perplexity.
    assert result["valid_ppl"] < 0.25 * result["unigram_ppl"]
    assert result["history"][-1]["train_ppl"] < result["history"][0]["train_ppl"]
    assert (tmp_path / "char_lm_lstm_sample.txt").exists()


@pytest.mark.slow
def test_char_lm_quick_gru(tmp_path):
    result = example("char_lm").main(quick(tmp_path, "--cell", "gru", "--epochs", "1"))
    assert result["valid_ppl"] < 0.5 * result["unigram_ppl"]


@pytest.mark.slow
def test_sentiment_quick_beats_chance(tmp_path):
    result = example("sentiment").main(quick(tmp_path))
    # observed: test accuracy 1.000 (seeds 0-4); chance 0.5, bag-of-words (no word order) ~0.57
    assert result["test_accuracy"] > 0.9


@pytest.mark.slow
def test_seq2seq_quick_learns_addition(tmp_path):
    result = example("seq2seq").main(quick(tmp_path))
    # observed: exact match 0.32-0.94 (seeds 0-4; 0.04-0.06 after the first epoch); a model that did not learn
    # gets ~0 (answers have up to 3 digits)
    assert result["test_exact_match"] > 0.15


# ---------------------------------------------------------------------------------------------------- drop-in
def test_sentiment_same_loss_trajectory_with_nn_lstm_and_fused_lstm(tmp_path):
    """Same data order, same initial weights (the model is built with nn.LSTM, then swapped), float64: the fused
    layers must reproduce nn.LSTM's training losses step for step."""
    sentiment = example("sentiment")
    args = quick(tmp_path, "--dtype", "float64", "--epochs", "1", "--hidden", "16", "--embed", "8")
    torch_run = sentiment.main(args + ["--impl", "nn"])
    fused_run = sentiment.main(args + ["--impl", "fused"])
    expected, got = torch.tensor(torch_run["step_losses"]), torch.tensor(fused_run["step_losses"])
    assert len(got) == len(expected) > 50
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)
    assert got[-10:].mean() < got[:10].mean()  # and it trained


def test_shipped_data_is_what_make_data_writes():
    sys.path.insert(0, str(EXAMPLES / "data"))
    make_data = importlib.import_module("make_data")
    assert make_data.main(["--check"]) == 0
    assert make_data.CORPUS.stat().st_size <= 200_000
