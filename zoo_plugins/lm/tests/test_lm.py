"""zoo-lm: data layouts, tokenizers, BPTT batching, state carry, metrics, tying, generation, errors, CLI."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from zoo_core import ConfigError, ZooError
from zoo_core.config import build_config
from zoo_lm import LanguageModeling, LMConfig, metrics_from_loss
from zoo_lm import data as lm_data
from zoo_lm.generate import encode_prompt, filtered_probs, sample
from zoo_lm.model import evaluate, step

LINES = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog met", "", "the end of it"]
TEXT = "\n".join(LINES) + "\n"


def write(folder: Path, names: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in names.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def make_task(**values):
    return LanguageModeling(build_config(LMConfig, values))


def loaded(**values):
    task = make_task(**values)
    task.load_data(None)
    return task


def build(task, arch="lstm", **arch_values):
    from zoo_core.plugins import registry

    entry = registry().entry("architecture", arch)
    torch.manual_seed(0)
    return task.build_model(entry.cls(), build_config(entry.cls.Config, {"hidden_size": 16, **arch_values}))


@pytest.fixture
def corpus(tmp_path):
    return write(tmp_path / "wt", {"train.txt": TEXT * 8, "valid.txt": TEXT * 2, "test.txt": TEXT * 2})


def test_import_is_torch_free():
    code = "import sys, zoo_lm, zoo_lm.cli; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- data -----------------------------------------------------------------------------------------


def test_ptb_and_wikitext_layouts_count_words_plus_eos(tmp_path):
    n_words = sum(len(line.split()) for line in LINES) + len(LINES)   # one <eos> per line, blank ones too
    for folder, names in ((tmp_path / "ptb", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt")),
                          (tmp_path / "wt", ("train.txt", "valid.txt", "test.txt"))):
        write(folder, {n: TEXT for n in names})
        task = loaded(data=str(folder), bptt=3)
        assert {s: len(v) for s, v in task.streams.items()} == {"train": n_words, "validation": n_words,
                                                                 "test": n_words}
        vocab = task.tokenizer.get_vocab()
        assert "<eos>" in vocab and "<unk>" in vocab
        assert len(vocab) == len({w for line in LINES for w in line.split()}) + 2


def test_single_file_split_by_fraction_at_a_line_boundary(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("".join(f"line {i:02d}\n" for i in range(20)), encoding="utf-8")   # 8 chars per line
    task = loaded(data=str(path), level="char", split_fraction=0.9, bptt=4)
    assert len(task.streams["train"]) == 18 * 8 and len(task.streams["validation"]) == 2 * 8
    assert task.streams["test"] is task.streams["validation"]


def test_vocab_ids_are_dense_and_deterministic_with_unk_in_the_text(tmp_path):
    text = "a <unk> b c <unk>\nb a d <unk>\n"   # PTB writes <unk> in its text
    folder = write(tmp_path / "u", {"train.txt": text, "valid.txt": text, "test.txt": text})
    task = loaded(data=str(folder), bptt=2)
    vocab = task.tokenizer.get_vocab()
    assert sorted(vocab.values()) == list(range(len(vocab))) and int(task.streams["train"].max()) < len(vocab)
    # specials first, then by frequency, ties alphabetical
    assert sorted(vocab, key=vocab.get) == ["<unk>", "<eos>", "a", "b", "c", "d"]


def test_word_vocab_cap_maps_rare_words_to_unk(corpus):
    task = loaded(data=str(corpus), vocab_size=5, bptt=3)
    assert task.tokenizer.get_vocab_size() == 5
    unk = task.tokenizer.token_to_id("<unk>")
    assert (task.streams["train"] == unk).any()


@pytest.mark.parametrize("level", ["word", "char", "bpe"])
def test_tokenizer_saved_and_reloaded_gives_the_same_streams(level, corpus, tmp_path):
    task = loaded(data=str(corpus), level=level, vocab_size=300 if level == "bpe" else None, bptt=3)
    task.save_artifacts(str(tmp_path))
    assert (tmp_path / "tokenizer.json").is_file()
    again = make_task(data=str(corpus), level=level, vocab_size=300 if level == "bpe" else None, bptt=3)
    again.load_artifacts(str(tmp_path))
    again.load_data(None)
    for split in ("train", "validation", "test"):
        assert torch.equal(task.streams[split], again.streams[split])
    if level != "word":   # char and bpe round-trip the text exactly (line breaks included)
        ids = task.streams["validation"].tolist()
        assert task.tokenizer.decode(ids) == TEXT * 2


def test_windows_are_contiguous_columns(corpus):
    task = loaded(data=str(corpus), bptt=4)
    stream = task.streams["train"]
    batches = list(task.batches("train", 3))
    length = len(stream) // 3
    assert all(b["x"].shape == b["y"].shape and b["x"].shape[0] == 3 for b in batches)
    assert all(b["x"].shape[1] == 4 for b in batches[:-1]) and 1 <= batches[-1]["x"].shape[1] <= 4
    x = torch.cat([b["x"] for b in batches], 1)
    y = torch.cat([b["y"] for b in batches], 1)
    for row in range(3):   # each row is one contiguous piece of the stream; y is x shifted by one
        assert torch.equal(x[row], stream[row * length: (row + 1) * length - 1].long())
        assert torch.equal(y[row], stream[row * length + 1: (row + 1) * length].long())
    assert len(list(task.batches("train", 3, start=2))) == len(batches) - 2
    # two ranks take disjoint columns of equal length
    r0, r1 = list(task.batches("train", 2, rank=0, world_size=2)), list(task.batches("train", 2, rank=1, world_size=2))
    quarter = len(stream) // 4
    assert len(r0) == len(r1)
    assert torch.equal(r0[0]["x"][1], stream[quarter:quarter + 4].long())
    assert torch.equal(r1[0]["x"][0], stream[2 * quarter:2 * quarter + 4].long())


# ---- model, state, metrics ------------------------------------------------------------------------


def test_recurrent_state_is_carried_and_attention_state_is_not(corpus):
    task = loaded(data=str(corpus), bptt=4)
    batch = next(iter(task.batches("train", 2)))
    out = step(build(task, "lstm"), batch)
    assert out.state is not None and out.stats["count"] == batch["y"].numel()
    assert step(build(task, "transformer", num_heads=2), batch).state is None
    # a carried state changes the next window's loss (the context is used)
    model = build(task, "lstm").eval()
    second = list(task.batches("train", 2))[1]
    assert not torch.allclose(step(model, second, out.state).loss, step(model, second, None).loss)


def test_test_split_is_one_continuous_sequence(corpus):
    """evaluate(test) with windows and a carried state equals one forward pass over the whole stream."""
    task = loaded(data=str(corpus), bptt=4)
    model = build(task, "lstm").eval()
    ids = task.streams["test"].long()[None]
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:]).item()
    got = evaluate(task, model, "test", 64)
    assert got["loss"] == pytest.approx(loss, rel=1e-5)
    assert got["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)


def test_metrics_perplexity_and_bits_per_char():
    assert metrics_from_loss(math.log(10), "word") == {"loss": math.log(10), "perplexity": pytest.approx(10)}
    assert metrics_from_loss(math.log(4), "char")["bits_per_char"] == pytest.approx(2.0)
    assert "perplexity" in metrics_from_loss(1.0, "bpe")
    assert LanguageModeling(build_config(LMConfig, {"level": "char"})).summarize(
        {"loss_sum": 2 * math.log(2), "count": 2.0}) == {"loss": math.log(2), "bits_per_char": pytest.approx(1.0)}


@pytest.mark.parametrize("embed_size", [16, 8])
def test_tied_weights_share_storage_and_survive_save_load(corpus, tmp_path, embed_size):
    from zoo_core.checkpoint import load_weights, save_weights

    task = loaded(data=str(corpus), bptt=3, tie_weights=True, embed_size=embed_size)
    model = build(task, "lstm")
    assert model.decoder.weight.data_ptr() == model.embed.weight.data_ptr()
    assert (model.proj is None) == (embed_size == 16)   # a projection only when widths differ
    save_weights(model, tmp_path / "m.safetensors")
    other = build(task, "lstm")
    torch.nn.init.zeros_(other.embed.weight)
    load_weights(other, tmp_path / "m.safetensors")
    assert other.decoder.weight.data_ptr() == other.embed.weight.data_ptr()
    assert torch.equal(other.embed.weight, model.embed.weight)


# ---- generation -----------------------------------------------------------------------------------


def count_steps(model):
    """Time steps the backbone processes, via a forward hook."""
    seen = [0]
    model.backbone.register_forward_hook(lambda m, args, out: seen.__setitem__(0, seen[0] + args[0].shape[1]))
    return seen


@pytest.mark.parametrize("arch", ["lstm", "transformer"])
def test_generation_is_o1_per_token_and_equals_rerunning_the_prefix(corpus, arch):
    task = loaded(data=str(corpus), bptt=4)
    model = build(task, arch, **({"num_heads": 2} if arch == "transformer" else {})).eval()
    seen = count_steps(model)
    prompt, n = [1, 2, 3, 4, 5], 40
    cached = sample(model, prompt, n, seed=3, context=None)
    assert seen[0] == len(prompt) + n - 1          # every token enters the backbone once
    seen[0] = 0
    rerun = sample(model, prompt, n, seed=3, context=None, cached=False)
    assert seen[0] == sum(len(prompt) + i for i in range(n))
    assert cached == rerun


def test_attention_context_slides_instead_of_growing(corpus):
    task = loaded(data=str(corpus), bptt=4)
    model = build(task, "transformer", num_heads=2, positions="learned", max_len=8).eval()
    out = sample(model, [1, 2, 3], 50, context=8)   # learned positions stop at 8: it must slide
    assert len(out) == 50


def test_temperature_divides_the_logits():
    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    for t in (0.5, 1.0, 2.0):
        assert torch.allclose(filtered_probs(z, t), torch.softmax(z / t, -1))
    assert torch.equal(filtered_probs(z, 0), torch.tensor([1.0, 0, 0, 0]))
    # sampling follows that distribution
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(filtered_probs(z, 2.0), 40_000, replacement=True, generator=g)
    freq = torch.bincount(draws, minlength=4).float() / 40_000
    assert torch.allclose(freq, torch.softmax(z / 2.0, -1), atol=0.01)


@pytest.mark.parametrize("settings", [{}, {"temperature": 2.0}, {"top_k": 2}, {"top_p": 0.7, "temperature": 0.5}])
def test_the_sampler_draws_from_the_filtered_distribution(settings):
    from zoo_lm.generate import _Sampler

    z = torch.tensor([2.0, 1.0, 0.0, -1.0])
    draw = _Sampler(torch.device("cpu"), 0, settings.get("temperature", 1.0), settings.get("top_k"),
                    settings.get("top_p"))
    draws = torch.cat([draw(z) for _ in range(20_000)])
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    expected = filtered_probs(z, settings.get("temperature", 1.0), settings.get("top_k"), settings.get("top_p"))
    assert torch.allclose(freq, expected, atol=0.012), (freq, expected)
    assert torch.all(freq[expected == 0] == 0)   # filtered-out tokens are never drawn


def test_sampling_restores_the_kernel_switch(corpus):
    task = loaded(data=str(corpus), bptt=4)
    model = build(task, "lstm").eval()
    before = torch.backends.mkldnn.enabled
    assert sample(model, [1, 2], 20, seed=1) == sample(model, [1, 2], 20, seed=1, cached=False)
    assert torch.backends.mkldnn.enabled == before


def test_sampling_from_nan_logits_is_an_error(corpus):
    task = loaded(data=str(corpus), bptt=4)
    model = build(task, "lstm").eval()
    with torch.no_grad():
        model.decoder.bias.fill_(float("nan"))
    with pytest.raises(ZooError, match="NaN"):
        sample(model, [1, 2], 5)


def test_top_k_and_top_p():
    z = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.allclose(filtered_probs(z, 1.0, top_k=2), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.allclose(filtered_probs(z, 1.0, top_p=0.8), torch.tensor([0.625, 0.375, 0, 0]))
    assert torch.allclose(filtered_probs(z, 1.0, top_p=0.81), torch.tensor([0.5, 0.3, 0.15, 0]) / 0.95)
    assert torch.allclose(filtered_probs(z, 1.0, top_p=0.1), torch.tensor([1.0, 0, 0, 0]))


# ---- bad input ------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_errors_naming_the_file_or_option(tmp_path, corpus):
    cases = []
    missing = write(tmp_path / "m", {"ptb.train.txt": TEXT, "ptb.test.txt": TEXT})
    cases.append(({"data": str(missing)}, "ptb.valid.txt"))
    empty = write(tmp_path / "e", {"train.txt": TEXT, "valid.txt": "", "test.txt": TEXT})
    cases.append(({"data": str(empty)}, "valid.txt: empty file"))
    bad = write(tmp_path / "b", {"train.txt": TEXT, "valid.txt": TEXT, "test.txt": TEXT})
    (bad / "test.txt").write_bytes(b"ok\n\xff\xfe bad\n")
    cases.append(({"data": str(bad)}, "test.txt: not UTF-8"))
    cases.append(({"data": str(tmp_path / "nope.txt")}, "nope.txt: no such file"))
    cases.append(({}, "data: no corpus given"))
    cases.append(({"data": str(corpus), "bptt": 10_000}, "bptt"))
    for values, expected in cases:
        with pytest.raises(ConfigError) as e:
            loaded(**values)
        assert expected in str(e.value) and "\n" not in str(e.value)
    task = loaded(data=str(corpus), bptt=4)
    with pytest.raises(ConfigError, match="batch_size"):
        task.batches("train", 10_000)
    char = loaded(data=str(corpus), level="char", bptt=4)
    with pytest.raises(ConfigError, match="--prompt: characters .Z., .b., .r. not in"):
        encode_prompt(char, "the Zebra")


# ---- CLI end to end -------------------------------------------------------------------------------


def test_cli_train_eval_generate_analyze(corpus, tmp_path):
    from zoo_core.cli import cli

    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(cli, ["train", "lm", "lstm", "--data", str(corpus), "--bptt", "5", "--hidden-size", "16",
                              "--max-epochs", "2", "--batch-size", "4", "--tie-weights", "--quiet",
                              "--out", str(run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (run / "tokenizer.json").is_file() and (run / "model.safetensors").is_file()

    res = runner.invoke(cli, ["eval", str(run), "--split", "test", "--json", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output.strip().splitlines()[-1])
    assert set(metrics) == {"loss", "perplexity"} and metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))

    res = runner.invoke(cli, ["generate", str(run), "--prompt", "the cat", "--max-tokens", "12", "--seed", "1",
                              "--temperature", "0.8", "--top-k", "5", "--top-p", "0.9"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("the cat ") and len(res.output.split()) >= 3

    res = runner.invoke(cli, ["analyze", str(run), "--per-step-loss", "--grad-norms", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    for name in ("per_step_loss.csv", "per_step_loss.png", "grad_norms.csv", "grad_norms.png"):
        assert (run / "analysis" / name).stat().st_size > 0
    rows = (run / "analysis" / "grad_norms.csv").read_text().splitlines()
    assert rows[0] == "position,distance,grad_norm" and len(rows) == 1 + 5

    # bad input through the CLI: one line, non-zero exit, before training
    res = runner.invoke(cli, ["train", "lm", "lstm", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and res.output.count("\n") == 1 and "missing: no such file or folder" in res.output
    res = runner.invoke(cli, ["train", "lm", "lstm", "--data", str(corpus), "--batch-size", "5000", "--quiet",
                              "--hidden-size", "8", "--out", str(tmp_path / "y")])
    assert res.exit_code != 0 and "batch_size" in res.output and res.output.count("\n") == 1


# ---- bad input through the CLI: one line, exit code 2, nothing written --------------------------


def _bad_corpus(tmp_path, corpus, case):
    if case == "missing split":
        return write(tmp_path / "m", {"ptb.train.txt": TEXT, "ptb.test.txt": TEXT}), "ptb.valid.txt: missing"
    if case == "empty split":
        return write(tmp_path / "e", {"train.txt": TEXT, "valid.txt": "", "test.txt": TEXT}), "valid.txt: empty file"
    if case == "undecodable split":
        folder = write(tmp_path / "b", {"train.txt": TEXT, "valid.txt": TEXT, "test.txt": TEXT})
        (folder / "test.txt").write_bytes(b"ok\n\xff\xfe bad\n")
        return folder, "test.txt: not UTF-8 text (undecodable byte at offset 3)"
    if case == "empty file":
        (tmp_path / "empty.txt").write_bytes(b"")
        return tmp_path / "empty.txt", "empty.txt: empty file"
    if case == "undecodable file":
        (tmp_path / "latin1.txt").write_bytes("caf\u00e9\nna\u00efve\n".encode("latin-1"))
        return tmp_path / "latin1.txt", "latin1.txt: not UTF-8 text"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing split", "empty split", "undecodable split", "empty file",
                                  "undecodable file", "bptt too long"])
def test_cli_bad_data_is_one_line_exit_2_before_the_run_dir_exists(tmp_path, corpus, case):
    from zoo_core.cli import cli

    if case == "bptt too long":
        options, expected = ["--data", str(corpus), "--bptt", "1000"], "bptt: 1000 is longer than the training split"
    else:
        data, expected = _bad_corpus(tmp_path, corpus, case)
        options = ["--data", str(data)]
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "lm", "lstm", *options, "--hidden-size", "8", "--quiet", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and expected in res.output and "(" in res.output   # the fix, in brackets
    assert not out.exists()


def test_cli_batch_size_larger_than_the_data_names_the_largest_that_fits(tmp_path, corpus):
    from zoo_core.cli import cli

    n = len(loaded(data=str(corpus), bptt=35).streams["train"])
    res = CliRunner().invoke(cli, ["train", "lm", "lstm", "--data", str(corpus), "--batch-size", "100", "--bptt", "35",
                                   "--hidden-size", "8", "--quiet", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert f"batch_size: 100 columns of the train split ({n} tokens)" in res.output
    assert f"use --batch-size {n // 36} or less, or a smaller --bptt" in res.output


def test_cli_batch_size_error_writes_no_run_dir(tmp_path, corpus):
    from zoo_core.cli import cli

    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "lm", "lstm", "--data", str(corpus), "--batch-size", "100",
                                   "--hidden-size", "8", "--quiet", "--out", str(out)])
    assert res.exit_code == 2
    assert not out.exists()


def test_cli_generate_prompt_outside_a_char_vocabulary(tmp_path, corpus):
    from zoo_core.cli import cli

    runner, run = CliRunner(), tmp_path / "run"
    res = runner.invoke(cli, ["train", "lm", "lstm", "--data", str(corpus), "--level", "char", "--bptt", "8",
                              "--batch-size", "4", "--hidden-size", "8", "--max-steps", "2", "--quiet",
                              "--out", str(run), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["generate", str(run), "--prompt", "the Zebra", "--max-tokens", "3", "--device", "cpu"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "--prompt: characters 'Z', 'b', 'r' not in this model's vocabulary" in res.output
    assert "use only characters of its training text: '\\n acdefghilmnost'" in res.output
    res = runner.invoke(cli, ["generate", str(run), "--prompt", "the cat", "--max-tokens", "3", "--device", "cpu"])
    assert res.exit_code == 0 and res.output.startswith("the cat"), res.output
