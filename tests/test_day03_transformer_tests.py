"""Day 3's proofs as unit tests: masks, embeddings and sharing, equality with
torch.nn.Transformer, parameter and FLOP counts, the training pieces and greedy decoding."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.benchmark import counted_flops
from common.testing import assert_error_names
from day01_transformer import PositionalEncoding, scaled_dot_product_attention
from day02_encoder_decoder import DecoderLayer, EncoderLayer
from day03_transformer_tests import (
    CONFIGURATIONS,
    ReversalTask,
    Transformer,
    causal_mask,
    copy_into_torch_transformer,
    count_by_component,
    exact_sequence_accuracy,
    greedy_decode,
    is_stable,
    label_smoothing_loss,
    learning_rate,
    pad_sequences,
    padding_mask,
    parameter_breakdown,
    reversal_experiment,
    target_mask,
    teacher_forced_accuracy,
    train_reversal,
)
from day03_transformer_tests.training import LR_FACTOR, WARMUP_STEPS

VOCAB = 20
SOURCE = pad_sequences([[3, 4, 5, 6, 7, 8, 9, 2], [9, 10, 11, 2], [12, 2]])
TARGET = pad_sequences([[1, 9, 8, 7, 6, 5, 4, 3], [1, 11, 10, 9], [1, 12, 3]])


# The documented way: the masks' structure, not dense masks.
MASKS = dict(source_key_padding_mask=padding_mask(SOURCE),
             target_key_padding_mask=padding_mask(TARGET), causal=True)


def tiny(**overrides):
    return Transformer.from_config("tiny", VOCAB, VOCAB, **overrides).eval()


def test_pad_sequences_and_masks():
    batch = pad_sequences([[5, 6, 7, 8, 9], [5, 6, 7], torch.tensor([4, 3, 2, 1])])
    assert batch.tolist() == [[5, 6, 7, 8, 9], [5, 6, 7, 0, 0], [4, 3, 2, 1, 0]]
    assert pad_sequences([[1]], pad_id=-1, length=3).tolist() == [[1, -1, -1]]
    lengths = torch.tensor([5, 3, 4])
    queries, keys = torch.arange(5)[:, None], torch.arange(5)[None, :]
    expected = (keys <= queries) & (keys < lengths[:, None, None])
    assert torch.equal(target_mask(batch)[:, 0], expected)
    assert torch.equal(padding_mask(batch), keys[0] < lengths[:, None])
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())
    assert padding_mask(batch).shape == (3, 5) and target_mask(batch).shape == (3, 1, 5, 5)
    assert pad_sequences([[]]).shape == (1, 0)  # an empty sequence is all padding


def test_embeddings_are_scaled_and_shared():
    model = tiny(share_embeddings=True)
    E = model.source_embedding.weight
    table = PositionalEncoding(64, 100).encoding
    assert_close(model.embed(SOURCE, model.source_embedding),
                 nn.functional.embedding(SOURCE, E) * math.sqrt(64) + table[:8])
    assert model.target_embedding.weight is E and model.generator.projection.weight is E
    separate = sum(p.numel() for p in tiny().parameters())
    assert separate - sum(p.numel() for p in model.parameters()) == 2 * VOCAB * 64
    model(SOURCE, TARGET, **MASKS).sum().backward()
    assert E.grad is not None and E.grad.abs().sum() > 0


def test_forward_is_encode_then_decode_then_generator():
    model = tiny()
    log_probs = model(SOURCE, TARGET, **MASKS)
    assert log_probs.shape == (3, 8, VOCAB)
    memory = model.encode(SOURCE, source_key_padding_mask=padding_mask(SOURCE))
    assert memory.shape == (3, 8, 64)
    hidden = model.decode(TARGET, memory, causal=True, target_key_padding_mask=padding_mask(TARGET),
                          memory_key_padding_mask=padding_mask(SOURCE))
    assert_close(log_probs, model.generator(hidden))


@torch.no_grad()
def test_structure_arguments_equal_the_dense_masks_they_describe():
    model = tiny()
    dense_source = padding_mask(SOURCE)[:, None, None, :]
    assert torch.equal(model(SOURCE, TARGET, **MASKS),
                       model(SOURCE, TARGET, dense_source, target_mask(TARGET)))


@pytest.mark.parametrize("final_norm", [None, True], ids=["paper", "final-norm"])
def test_whole_model_equals_torch_transformer(final_norm):
    ours = tiny(share_embeddings=True, final_norm=final_norm)
    theirs = nn.Transformer(64, 4, 2, 2, 256, batch_first=True).eval()
    if final_norm is None:  # the paper's post-norm stacks have no final norm
        theirs.encoder.norm, theirs.decoder.norm = nn.Identity(), nn.Identity()
    copy_into_torch_transformer(ours, theirs)
    E, table = ours.source_embedding.weight, PositionalEncoding(64, 100).encoding

    def embed(tokens):
        return nn.functional.embedding(tokens, E) * 8.0 + table[: tokens.size(1)]

    hidden = theirs(embed(SOURCE), embed(TARGET), src_key_padding_mask=SOURCE == 0,
                    tgt_mask=~causal_mask(8), tgt_key_padding_mask=TARGET == 0,
                    memory_key_padding_mask=SOURCE == 0)
    expected = torch.log_softmax(nn.functional.linear(hidden, E, ours.generator.projection.bias),
                                 -1)
    assert_close(ours(SOURCE, TARGET, **MASKS), expected)


def test_copy_into_torch_transformer_refuses_its_final_norms_for_the_paper_model():
    with pytest.raises(ValueError, match="ours has no final norm"):
        copy_into_torch_transformer(tiny(), nn.Transformer(64, 4, 2, 2, 256, batch_first=True))


@torch.no_grad()
def test_padded_source_tokens_and_future_target_tokens_change_nothing():
    model = tiny()
    reference = model(SOURCE, TARGET, **MASKS)
    noisy = torch.where(SOURCE == 0, torch.randint(1, VOCAB, SOURCE.shape), SOURCE)
    assert torch.equal(model(noisy, TARGET, **MASKS), reference)
    future = TARGET.clone()
    future[:, 4:] = torch.randint(1, VOCAB, (3, 4))
    keeps_source = padding_mask(SOURCE)
    changed = model(SOURCE, future, source_key_padding_mask=keeps_source, causal=True)
    unmasked = model(SOURCE, TARGET, source_key_padding_mask=keeps_source, causal=True)
    assert torch.equal(changed[:, :4], unmasked[:, :4])


def torch_equivalent(config, vocab_size):
    c = CONFIGURATIONS[config]
    body = nn.Transformer(c["d_model"], c["num_heads"], c["num_layers"], c["num_layers"],
                          c["d_ff"], batch_first=True)
    embedding, generator = nn.Embedding(vocab_size, c["d_model"]), nn.Linear(c["d_model"],
                                                                             vocab_size)
    generator.weight = embedding.weight
    return count_by_component({
        "source embedding": embedding, "target embedding": embedding,
        "encoder layers": body.encoder.layers, "encoder final norm": body.encoder.norm,
        "decoder layers": body.decoder.layers, "decoder final norm": body.decoder.norm,
        "generator": generator})


@pytest.mark.parametrize("config, paper_millions", [("base", 65), ("big", 213)])
def test_parameter_counts_match_torch_and_the_paper(config, paper_millions):
    c = CONFIGURATIONS[config]
    d, d_ff, n = c["d_model"], c["d_ff"], c["num_layers"]
    with torch.device("meta"):
        ours = parameter_breakdown(Transformer.from_config(config, 37000, 37000,
                                                           share_embeddings=True))
        with_norms = parameter_breakdown(Transformer.from_config(
            config, 37000, 37000, share_embeddings=True, final_norm=True))
        theirs = torch_equivalent(config, 37000)
    attention, ffn = 4 * (d * d + d), 2 * d * d_ff + d_ff + d
    assert ours["encoder layers"] == n * (attention + ffn + 4 * d)
    assert ours["decoder layers"] == n * (2 * attention + ffn + 6 * d)
    assert ours["source embedding"] == 37000 * d and ours["target embedding"] == 0
    assert with_norms == theirs
    assert sum(theirs.values()) - sum(ours.values()) == 4 * d
    assert abs(sum(ours.values()) / 1e6 / paper_millions - 1) < 0.03


def test_flop_formulas_equal_pytorchs_counter():
    d, h, d_ff = 512, 8, 2048
    with torch.device("meta"):
        encoder_layer, decoder_layer = EncoderLayer(d, h, d_ff), DecoderLayer(d, h, d_ff)
        for n, m in ((50, 60), (2048, 1000)):
            assert counted_flops(encoder_layer, torch.empty(2, n, d)) == 2 * (
                4 * n * n * d + 8 * n * d * d + 4 * n * d * d_ff)
            assert counted_flops(decoder_layer, torch.empty(1, n, d), torch.empty(1, m, d)) == (
                4 * n * n * d + 12 * n * d * d + 4 * m * d * d + 4 * n * m * d + 4 * n * d * d_ff)


def test_label_smoothing_equals_torch_and_schedule_peaks_after_warmup():
    logits, labels = torch.randn(4, 7, VOCAB), torch.randint(1, VOCAB, (4, 7))
    labels[1, 5:] = 0
    for smoothing in (0.0, 0.1):
        assert_close(label_smoothing_loss(torch.log_softmax(logits, -1), labels, smoothing),
                     nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=0,
                                                 label_smoothing=smoothing))
    rates = [learning_rate(s, 512, 4000) for s in range(1, 10001)]
    assert max(rates) == rates[3999] and math.isclose(rates[3999], (512 * 4000) ** -0.5)
    assert math.isclose(learning_rate(100, 64, 10, factor=0.5), 0.5 * 64 ** -0.5 * 100 ** -0.5)


def test_reversal_task_reverses_and_holds_out():
    task = ReversalTask(num_symbols=2, min_len=2, max_len=2)  # four possible sequences
    generator = torch.Generator().manual_seed(0)
    source, target = task.sample(8, generator)
    for s, t in zip(source, target, strict=True):
        assert t[0] == 1 and t[-1] == 2 and s[-1] == 2 and torch.equal(t[1:-1], s[:-1].flip(0))
    held_out = frozenset({(3, 3), (3, 4), (4, 3)})
    source, _ = task.sample(16, generator, exclude=held_out)
    assert (source[:, :2] == 4).all()


def test_greedy_decode_agrees_with_teacher_forcing_and_pads_after_the_end():
    model = tiny().train()
    decoded = greedy_decode(model, SOURCE, 6, start_id=1, end_id=5)
    assert model.training  # the mode is restored
    assert decoded.shape[0] == 3 and decoded.shape[1] <= 7 and (decoded[:, 0] == 1).all()
    with torch.no_grad():
        predicted = model.eval()(SOURCE, decoded[:, :-1], causal=True,
                                 source_key_padding_mask=padding_mask(SOURCE)).argmax(-1)
    is_end = decoded[:, 1:] == 5
    before_end = torch.cumsum(is_end, 1) - is_end.long() == 0
    assert torch.equal(predicted[before_end], decoded[:, 1:][before_end])
    assert (decoded[:, 1:][~before_end] == 0).all()


def test_training_smoke_run_lowers_the_loss(one_thread):
    torch.manual_seed(0)
    task = ReversalTask(num_symbols=4, min_len=2, max_len=4)
    model = Transformer(task.vocab_size, task.vocab_size, num_layers=1, d_model=32, num_heads=2,
                        d_ff=64, dropout=0.0, max_len=16, share_embeddings=True)
    validation = task.sample(64, torch.Generator().manual_seed(1))
    losses, history, gradient_norms, step_norms = train_reversal(
        model, task, steps=40, batch_size=32, warmup_steps=10, validation=validation,
        progress=False)
    assert len(losses) == len(gradient_norms) == len(step_norms) == 40
    assert [step for step, _ in history] == [10, 20, 30, 40]
    assert sum(losses[-5:]) / 5 < 0.85 * sum(losses[:5]) / 5
    assert all(norm > 0 for norm in gradient_norms) and all(norm > 0 for norm in step_norms)
    # the model is left as the last step made it: no checkpoint is picked
    assert teacher_forced_accuracy(model, *validation) == history[-1][1]
    # teacher-forced exact accuracy is greedy decoding's exact-sequence accuracy
    assert teacher_forced_accuracy(model, *validation) == exact_sequence_accuracy(model,
                                                                                   *validation)


def test_is_stable_means_learned_and_never_fell_back():
    assert is_stable([(10, 0.5), (20, 0.92), (30, 0.85), (40, 0.99)])
    assert not is_stable([(10, 0.5), (20, 0.95), (30, 0.3), (40, 0.99)])  # collapsed
    assert not is_stable([(10, 0.5), (20, 0.7)])  # never learned


# Seeds the notebook does not run; on each, plain Adam collapsed after learning (measured
# when AMSGrad was chosen: plain Adam collapsed on 7 of seeds 3 to 14).
@pytest.mark.parametrize("seed", [5, 7, 13])
def test_the_recipe_learns_and_stays_learned_on_other_seeds(one_thread, seed):
    """The notebook's recipe (AMSGrad's maximum) on seeds it does not run: the final model
    (no checkpoint picked) reverses at least 95% of the held-out sequences, and once
    validation reached 90% it never fell below 80%."""
    result = reversal_experiment(seed=seed, progress=False)
    assert result.accuracy >= 0.95, result
    assert is_stable(result.validation), result.validation
    # The mechanism the notebook shows on seed 0, on these seeds too: from 50 steps after
    # validation first reached 90%, no step is more than 3 times the median step (over rate).
    rates = torch.tensor([learning_rate(step, 64, WARMUP_STEPS, LR_FACTOR)
                          for step in range(1, len(result.step_norms) + 1)])
    first = min(step for step, accuracy in result.validation if accuracy >= 0.9)
    at_floor = (torch.tensor(result.step_norms) / rates)[first + 50:]
    assert at_floor.max() < 3 * at_floor.median()


def test_without_amsgrad_the_recipe_collapses_on_seed_5(one_thread):
    """The cause of the collapse: with plain Adam, at the loss floor the steps stay several
    times the learning rate (Adam divides by the small recent gradients); when the gradient
    grows, the step jumps more than tenfold, and validation falls from 90% to below 80%."""
    result = reversal_experiment(seed=5, progress=False, amsgrad=False)
    assert not is_stable(result.validation)
    accuracies = dict(result.validation)
    learned = min(step for step, accuracy in accuracies.items() if accuracy >= 0.9)
    fell = min(step for step, accuracy in accuracies.items()
               if step > learned and accuracy < 0.8)
    rates = torch.tensor([learning_rate(step, 64, WARMUP_STEPS, LR_FACTOR)
                          for step in range(1, len(result.step_norms) + 1)])
    relative_steps = torch.tensor(result.step_norms) / rates
    norms = torch.tensor(result.gradient_norms)
    before, floor = slice(fell - 11, fell - 1), slice(fell - 31, fell - 11)  # 10 and 20 steps
    assert relative_steps[floor].median() > 2  # at the floor, still steps of a few rates
    assert relative_steps[before].max() > 10 * relative_steps[floor].median()
    assert norms[before].max() > 10 * norms[floor].median()


def test_the_attention_function_reaches_all_3n_attentions():
    calls = []

    def counting_attention(q, k, v, mask=None, **structure):
        calls.append(q.shape)
        return scaled_dot_product_attention(q, k, v, mask, **structure)

    model = Transformer.from_config("tiny", VOCAB, VOCAB, attention=counting_attention)
    model(SOURCE, TARGET, **MASKS)
    assert len(calls) == 3 * CONFIGURATIONS["tiny"]["num_layers"]


@pytest.mark.parametrize("call, words", [
    (lambda: Transformer.from_config("tiny", 20, 30, share_embeddings=True),
     ["share_embeddings", "source_vocab_size=20", "target_vocab_size=30"]),
    (lambda: tiny(max_len=16)(torch.randint(VOCAB, (2, 17)), TARGET[:2]),
     ["source", "17", "max_len=16"]),
    (lambda: tiny()(SOURCE, torch.tensor([[1, 5, 20], [1, 2, 3], [1, 2, 3]])),
     ["target", "[0, 20)", "to 20"]),
    (lambda: tiny()(torch.tensor([[-1, 5]]), TARGET[:1]), ["source", "from -1"]),
    (lambda: Transformer.from_config("huge", 20, 20), ["huge", "base"]),
    (lambda: Transformer(0, 20), ["source_vocab_size", "0"]),
    (lambda: greedy_decode(tiny(max_len=16), SOURCE, 16, 1), ["max_len", "16"]),
    (lambda: pad_sequences([[1, 2, 3]], length=2), ["length=2", "3 tokens"]),
    (lambda: pad_sequences([]), ["sequences"]),
    (lambda: padding_mask(torch.zeros(3, dtype=torch.long)), ["tokens", "(3,)"]),
    (lambda: causal_mask(-1), ["length", "-1"]),
    (lambda: label_smoothing_loss(torch.zeros(2, 3), torch.ones(2, dtype=torch.long), 1.0),
     ["smoothing", "1.0"]),
    (lambda: learning_rate(0, 512), ["step", "0"]),
    (lambda: learning_rate(1, 0), ["d_model", "0"]),
    (lambda: learning_rate(1, 512, warmup_steps=0), ["warmup_steps", "0"]),
    (lambda: ReversalTask(min_len=5, max_len=3), ["min_len=5", "max_len=3"]),
    (lambda: ReversalTask(num_symbols=0), ["num_symbols", "0"]),
    (lambda: ReversalTask(2, 1, 1).sample(2, torch.Generator(), frozenset({(3,), (4,)})),
     ["exclude", "all 2 sequences"]),
    (lambda: train_reversal(tiny(), ReversalTask(), steps=1, batch_size=2, warmup_steps=1,
                            validate_every=0, progress=False), ["validate_every", "0"]),
    (lambda: label_smoothing_loss(torch.zeros(2, 3), torch.ones(3, dtype=torch.long)),
     ["log_probs", "target", "(2, 3)", "(3,)"]),
    (lambda: label_smoothing_loss(torch.zeros(2, 3), torch.tensor([1, 3])),
     ["target ids", "[0, 3)", "to 3"]),
    (lambda: tiny()(SOURCE, TARGET[:2]), ["source and target", "3 and 2"]),
])
def test_bad_input_is_a_clear_value_error(call, words):
    assert_error_names(call, words)


@pytest.mark.parametrize("call, words", [
    (lambda: pad_sequences([[1, 2]], pad_id=0.5), ["pad_id", "0.5"]),
    (lambda: padding_mask(SOURCE, pad_id=True), ["pad_id", "True"]),
    (lambda: padding_mask(SOURCE.float()), ["tokens", "integer", "float32"]),
    (lambda: learning_rate(1.5, 512), ["step", "1.5"]),
])
def test_bad_input_type_is_a_clear_type_error(call, words):
    assert_error_names(call, words, TypeError)


def test_label_smoothing_with_every_target_ignored_is_zero_not_nan():
    log_probs = torch.randn(2, 4, 5).log_softmax(-1).requires_grad_()
    loss = label_smoothing_loss(log_probs, torch.zeros(2, 4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and (log_probs.grad == 0).all()


def test_an_exclusion_that_leaves_some_sequences_still_samples():
    task = ReversalTask(2, 1, 1)
    source, _ = task.sample(4, torch.Generator().manual_seed(0), frozenset({(3,)}))
    assert (source[:, 0] == 4).all()


def test_float_token_ids_are_a_type_error():
    with pytest.raises(TypeError, match="source"):
        tiny()(SOURCE.float(), TARGET)
    with pytest.raises(TypeError, match="integer"):
        pad_sequences([[1.5, 2.0]])


@pytest.mark.parametrize("call, words, error", [
    (lambda: Transformer(10, 10, d_model=8.0), ["d_model", "8.0"], TypeError),
    (lambda: Transformer(10, 10, d_model=-8), ["d_model", "-8"], ValueError),
    (lambda: Transformer(10, 10, dropout="0.1"), ["dropout", "'0.1'"], TypeError),
    (lambda: Transformer(10, 10, dropout=-0.1), ["dropout", "-0.1"], ValueError),
    (lambda: tiny()(SOURCE.to(torch.uint8), TARGET), ["source", "torch.uint8", "int64"],
     TypeError),
    (lambda: tiny()(SOURCE, TARGET, torch.ones(8, 8, dtype=torch.bool)[:, :3]),
     ["source_mask", "(8, 3)"], ValueError),
    (lambda: label_smoothing_loss(torch.zeros(2, 3), torch.ones(2, dtype=torch.long),
                                  ignore_index=True), ["ignore_index", "True"], TypeError),
    (lambda: label_smoothing_loss(torch.zeros(2, 3), torch.ones(2, dtype=torch.uint8)),
     ["target", "torch.uint8", "int64"], TypeError),
    (lambda: greedy_decode(tiny(), SOURCE, 3, start_id=1.7), ["start_id", "1.7"], TypeError),
    (lambda: greedy_decode(tiny(), SOURCE, 3, 1, end_id="x"), ["end_id", "'x'"], TypeError),
    (lambda: greedy_decode(nn.Linear(2, 2), SOURCE, 3, 1), ["model", "Linear"], TypeError),
    (lambda: train_reversal(tiny(), ReversalTask(), 1, 2, 1, seed=1.5), ["seed", "1.5"],
     TypeError),
    (lambda: train_reversal(tiny(), ReversalTask(), 1, 2, 1, progress="no"),
     ["progress", "'no'"], TypeError),
    (lambda: ReversalTask().sample(2, 0), ["generator", "torch.Generator", "int"], TypeError),
    (lambda: pad_sequences(iter([[1]])), ["sequences", "list_iterator"], TypeError),
    (lambda: pad_sequences([1, 2]), ["sequences[0]", "int"], TypeError),
])
def test_more_bad_inputs_name_the_argument(call, words, error):
    assert_error_names(call, words, error)


def test_a_huge_task_checks_its_exclusions_at_once():
    task = ReversalTask(10, 1, 100_000)
    assert task.has_more_than(10 ** 9) and not ReversalTask(2, 1, 1).has_more_than(2)
    source, _ = task.sample(1, torch.Generator().manual_seed(0), frozenset({(3,)}))
    assert source.shape[0] == 1
