"""Day 10: GPT-2 equal to Hugging Face's, generation with a key-value cache equal to
transformers' `generate` (greedy and sampled), the sampling filters equal to its logits
processors, and bad inputs named."""

import math
import warnings

import pytest
import torch
from torch.testing import assert_close

from common import checks
from common.testing import assert_error_names
from day10_serving import (
    ALPHABET,
    GPT2,
    Engine,
    KVCache,
    PagedKVCache,
    Request,
    Sampling,
    cache_bytes_per_token,
    decode,
    encode,
    filtered_logits,
    generate,
    hugging_face_gpt2,
    is_grammatical,
    language_model_loss,
    load_checkpoint,
    next_tokens,
    save_checkpoint,
    sentences,
    speculative_generate,
    train_language_model,
)

with warnings.catch_warnings():  # transformers' import of tqdm.auto may warn; harmless
    warnings.simplefilter("ignore")
    import transformers
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return GPT2(vocab_size=40, d_model=32, num_layers=2, num_heads=4, max_len=64).eval()


def ones(tokens):
    return torch.ones_like(tokens)


def test_logits_and_loss_equal_hugging_face(tiny):
    tokens = torch.randint(0, 40, (3, 30))
    with torch.no_grad():
        theirs = hugging_face_gpt2(tiny)(tokens, labels=tokens)
        logits = tiny(tokens)
    assert_close(logits, theirs.logits, rtol=1e-5, atol=1e-5)
    assert_close(language_model_loss(logits, tokens), theirs.loss)


def test_gradients_equal_hugging_face():
    torch.manual_seed(1)
    ours = GPT2(30, 16, 2, 2, max_len=16)
    theirs = hugging_face_gpt2(ours).train()
    tokens = torch.randint(0, 30, (2, 12))
    language_model_loss(ours(tokens), tokens).backward()
    theirs(tokens, labels=tokens).loss.backward()
    assert_close(ours.token_embedding.weight.grad, theirs.transformer.wte.weight.grad,
                 rtol=1e-4, atol=1e-6)
    first = ours.blocks[0].attention.query_projection.weight.grad
    assert_close(first.t(), theirs.transformer.h[0].attn.c_attn.weight.grad[:, :16],
                 rtol=1e-4, atol=1e-6)


def test_gpt2_small_has_hugging_faces_parameter_count():
    config = transformers.GPT2Config()
    with torch.device("meta"):
        ours = GPT2(config.vocab_size, config.n_embd, config.n_layer, config.n_head,
                    config.n_positions)
        theirs = transformers.GPT2LMHeadModel(config)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in theirs.parameters()) == 124_439_808


def test_greedy_generation_equals_transformers_with_and_without_the_cache(tiny):
    prompts = torch.randint(0, 40, (3, 7))
    ours = generate(tiny, prompts, 25)
    assert torch.equal(ours, generate(tiny, prompts, 25, use_cache=False))
    theirs = hugging_face_gpt2(tiny).generate(prompts, attention_mask=ones(prompts),
                                              max_new_tokens=25, do_sample=False)
    assert torch.equal(ours, theirs)
    assert torch.equal(generate(tiny, prompts, 0), prompts)


def test_cached_steps_give_the_logits_of_one_call(tiny):
    tokens = torch.randint(0, 40, (2, 20))
    cache = tiny.new_cache(2, 20)
    with torch.no_grad():
        steps = [tiny(tokens[:, :5], cache)] + [tiny(tokens[:, t:t + 1], cache)
                                               for t in range(5, 20)]
        whole = tiny(tokens)
    assert_close(torch.cat(steps, 1), whole, rtol=1e-5, atol=1e-5)
    assert cache.length == 20 and cache.nbytes == 2 * 20 * cache_bytes_per_token(2, 4, 8, 4)


def test_truncating_the_cache_forgets_the_later_tokens(tiny):
    tokens = torch.randint(0, 40, (1, 10))
    cache = tiny.new_cache(1, 10)
    with torch.no_grad():
        tiny(tokens, cache)
        cache.truncate(6)
        again = tiny(tokens[:, 6:], cache)
        assert_close(again, tiny(tokens)[:, 6:], rtol=1e-5, atol=1e-5)
    assert_error_names(lambda: cache.truncate(11), ["length", "10 tokens held", "11"])


def their_filter(logits, sampling):
    scores = TemperatureLogitsWarper(sampling.temperature)(None, logits)
    if sampling.top_k is not None:
        scores = TopKLogitsWarper(sampling.top_k)(None, scores)
    if sampling.top_p is not None:
        scores = TopPLogitsWarper(sampling.top_p)(None, scores)
    return scores


@pytest.mark.parametrize("sampling", [
    Sampling(), Sampling(0.3), Sampling(top_k=1), Sampling(top_k=7), Sampling(top_k=1000),
    Sampling(top_p=0.01), Sampling(top_p=0.5), Sampling(top_p=1.0), Sampling(2.0, 4, 0.6),
])
def test_filters_equal_transformers_logits_processors(sampling):
    torch.manual_seed(0)
    logits = 4 * torch.randn(50, 40)
    logits[:5, :3] = 2.5  # ties, at the top-k boundary among others
    assert torch.equal(filtered_logits(logits, sampling), their_filter(logits, sampling))


@pytest.mark.parametrize("sampling", [Sampling(0.8), Sampling(top_k=5), Sampling(top_p=0.7),
                                      Sampling(1.3, 10, 0.9)])
def test_sampled_generation_equals_transformers_from_the_same_seed(tiny, sampling):
    prompts = torch.randint(0, 40, (2, 5))
    twin = hugging_face_gpt2(tiny)  # built first: its initialisation draws random numbers
    torch.manual_seed(3)
    ours = generate(tiny, prompts, 20, sampling=sampling)
    torch.manual_seed(3)
    theirs = twin.generate(
        prompts, attention_mask=ones(prompts), max_new_tokens=20, do_sample=True,
        temperature=sampling.temperature, top_k=sampling.top_k or 0, top_p=sampling.top_p or 1.0)
    assert torch.equal(ours, theirs)
    again = [generate(tiny, prompts, 20, sampling=sampling,
                      generator=torch.Generator().manual_seed(5)) for _ in range(2)]
    assert torch.equal(*again)


def test_the_language_is_seeded_and_the_model_learns_it_quickly():
    text = sentences(300, seed=4)
    assert text == sentences(300, seed=4) != sentences(300, seed=5)
    assert all(is_grammatical(s) for s in text[:-1].split(". "))
    assert not is_grammatical("the cat sees") and not is_grammatical("a dog likes the cat")
    assert decode(encode(text)) == text
    torch.manual_seed(0)
    model = GPT2(len(ALPHABET), 32, 1, 2, max_len=64)
    losses = train_language_model(model, encode(text), steps=60, context=64,
                                  learning_rate=1e-2)
    assert sum(losses[-10:]) / 10 < 0.7 * losses[0] and not model.training


def test_cache_bytes_follow_the_formula_on_the_meta_device():
    cache = KVCache(12, 1, 12, 64, 1024, torch.float16, "meta")
    assert cache.nbytes == 1024 * cache_bytes_per_token(12, 12, 64, 2) == 1024 * 36 * 2**10


@pytest.mark.parametrize("call, words, error", [
    (lambda m: GPT2(10, 30, 1, 4), ["d_model=30", "num_heads=4"], ValueError),
    (lambda m: GPT2(0, 32, 1, 4), ["vocab_size", "0"], ValueError),
    (lambda m: m(torch.tensor([[1, 40]])), ["tokens", "[0, 40)", "40"], ValueError),
    (lambda m: m(torch.ones(1, 3)), ["tokens", "float32"], TypeError),
    (lambda m: m(torch.ones(1, 65, dtype=torch.long)), ["max_len=64", "65"], ValueError),
    (lambda m: m(torch.ones(2, 3, dtype=torch.long), m.new_cache(1, 8)),
     ["cache", "(2, 2, 4, 8)", "(2, 1, 4, 8)"], ValueError),
    (lambda m: m(torch.ones(1, 3, dtype=torch.long), "cache"), ["cache", "KVCache", "str"],
     TypeError),
    (lambda m: m(torch.ones(1, 9, dtype=torch.long), m.new_cache(1, 8)),
     ["capacity", "8", "9 more"], ValueError),
    (lambda m: generate(m, torch.ones(1, 60, dtype=torch.long), 5), ["max_len=64", "60", "5"],
     ValueError),
    (lambda m: generate(m, torch.ones(1, 0, dtype=torch.long), 5), ["prompt", "at least one"],
     ValueError),
    (lambda m: generate(m, torch.ones(1, 3, dtype=torch.long), -1), ["max_new_tokens", "-1"],
     ValueError),
    (lambda m: generate(m, torch.ones(1, 3, dtype=torch.long), 2, use_cache="yes"),
     ["use_cache", "str"], TypeError),
    (lambda m: generate(torch.nn.Linear(2, 2), torch.ones(1, 3, dtype=torch.long), 2),
     ["model", "GPT2", "Linear"], TypeError),
    (lambda m: Sampling(temperature=0), ["temperature", "0"], ValueError),
    (lambda m: Sampling(top_k=0), ["top_k", "0"], ValueError),
    (lambda m: Sampling(top_p=0), ["top_p", "0"], ValueError),
    (lambda m: Sampling(top_p=1.5), ["top_p", "1.5"], ValueError),
    (lambda m: Sampling(top_k=True), ["top_k", "bool"], TypeError),
    (lambda m: filtered_logits(torch.ones(2, 3), "greedy"), ["sampling", "Sampling", "str"],
     TypeError),
    (lambda m: next_tokens(torch.ones(3), None), ["logits", "(3,)"], ValueError),
    (lambda m: encode("The cat"), ["text", "'T'"], ValueError),
    (lambda m: decode([0, 99]), ["tokens", "99"], ValueError),
    (lambda m: train_language_model(m, encode("a cat"), 5, context=8), ["text", "context=8"],
     ValueError),
    (lambda m: KVCache(1, 1, 1, 1, 0), ["capacity", "0"], ValueError),
])
def test_bad_inputs_name_the_argument(tiny, call, words, error):
    assert_error_names(lambda: call(tiny), words, error)


def test_huge_caches_and_models_are_refused_before_allocating(monkeypatch):
    monkeypatch.setattr(checks, "memory_limit_bytes", lambda: 2**30)
    assert_error_names(lambda: KVCache(12, 64, 12, 64, 10**5),
                       ["capacity=100000", "batch=64", "GiB"])
    assert_error_names(lambda: GPT2(50257, 4096, 32, 32), ["d_model=4096", "num_layers=32"])
    assert math.isfinite(cache_bytes_per_token(1, 1, 1, 1))


def requests(count=10, sampled=True, seed=1):
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 8, (count,), generator=rng).tolist()
    news = torch.randint(1, 20, (count,), generator=rng).tolist()
    return [Request(i, torch.randint(0, 40, (lengths[i],), generator=rng), news[i],
                    Sampling(0.9, top_k=10) if sampled and i % 3 == 0 else None, seed=i)
            for i in range(count)]


@pytest.mark.parametrize("options", [dict(max_batch=1), dict(max_batch=3),
                                     dict(max_batch=3, static=True),
                                     dict(max_batch=10, page_size=1)])
def test_every_request_gets_the_tokens_it_gets_alone(tiny, options):
    alone = {r.name: generate(tiny, r.prompt[None], r.max_new_tokens, sampling=r.sampling,
                              generator=torch.Generator().manual_seed(r.seed))
             [0, len(r.prompt):].tolist() for r in requests()}
    engine = Engine(tiny, num_pages=60, **{"page_size": 4, **options})
    assert engine.run(requests()) == alone
    assert len(engine.cache.free_pages) == 60 and not engine.cache.tables


def test_a_small_pool_makes_requests_wait_not_fail(tiny):
    """Four pages of four tokens: one request of up to 16 tokens at a time."""
    engine = Engine(tiny, num_pages=4, page_size=4, max_batch=8)
    batch = [Request(i, torch.tensor([1, 2, 3]), 13) for i in range(3)]
    results = engine.run(batch)
    assert all(len(results[i]) == 13 for i in range(3))
    assert engine.most_pages == 4 and max(map(len, engine.history)) == 1


def test_continuous_batching_computes_no_finished_sequence(tiny):
    static, continuous = (Engine(tiny, 60, 4, 3, static=s) for s in (True, False))
    static.run(requests(sampled=False))
    continuous.run(requests(sampled=False))
    tokens = sum(r.max_new_tokens for r in requests())
    assert continuous.rows == tokens < static.rows
    assert continuous.model_calls < static.model_calls


def test_paged_keys_equal_the_contiguous_cache(tiny):
    """Two sequences of different lengths decoded in one call, against each alone."""
    cache = PagedKVCache(2, 8, 3, 4, 8)
    first, second = torch.randint(0, 40, (1, 7)), torch.randint(0, 40, (1, 2))
    with torch.no_grad():
        tiny(first, cache.batch(["a"], 7))
        tiny(second, cache.batch(["b"], 2))
        nxt = torch.tensor([[5], [9]])
        both = tiny(nxt, cache.batch(["a", "b"], 1))[:, -1]
        alone = [tiny(torch.cat([t, n[None]], 1))[0, -1] for t, n in ((first, nxt[0]),
                                                                      (second, nxt[1]))]
    assert_close(both, torch.stack(alone), rtol=1e-5, atol=1e-5)
    assert cache.tables == {"a": [0, 1, 2], "b": [3]} and cache.lengths == {"a": 8, "b": 3}


@pytest.mark.parametrize("call, words, error", [
    (lambda m: Engine(m, 0), ["num_pages", "0"], ValueError),
    (lambda m: Engine(m, 4, max_batch=0), ["max_batch", "0"], ValueError),
    (lambda m: Engine(torch.nn.Linear(2, 2), 4), ["model", "GPT2"], TypeError),
    (lambda m: Engine(m, 4).submit("the cat"), ["request", "Request", "str"], TypeError),
    (lambda m: Engine(m, 4, 4).submit(Request(0, torch.ones(10, dtype=torch.long), 10)),
     ["request 0", "pages", "4"], ValueError),
    (lambda m: Engine(m, 40, 4).submit(Request(0, torch.ones(60, dtype=torch.long), 10)),
     ["request 0", "max_len=64"], ValueError),
    (lambda m: Request(0, torch.ones(0, dtype=torch.long), 3), ["prompt", "at least one"],
     ValueError),
    (lambda m: Request(0, torch.ones(2, dtype=torch.long), 0), ["max_new_tokens", "0"],
     ValueError),
    (lambda m: Request(0, torch.ones(1, 2, dtype=torch.long), 3), ["prompt", "(1, 2)"],
     ValueError),
    (lambda m: PagedKVCache(1, 2, 2, 1, 1).batch(["a", "b"], 2), ["one new token each"],
     ValueError),
    (lambda m: PagedKVCache(1, 2, 2, 1, 1).batch(["a", "a"], 1), ["distinct"], ValueError),
    (lambda m: PagedKVCache(1, 2, 2, 1, 1).batch(["a"], 5), ["2 free pages", "3 more"],
     MemoryError),
    (lambda m: PagedKVCache(1, 2, 2, 1, 1).free("a"), ["'a'", "not in the cache"], KeyError),
])
def test_bad_serving_inputs_name_the_argument(tiny, call, words, error):
    assert_error_names(lambda: call(tiny), words, error)


def test_a_request_name_is_served_once_at_a_time(tiny):
    engine = Engine(tiny, 8, 4)
    engine.submit(Request("x", torch.ones(2, dtype=torch.long), 2))
    assert_error_names(lambda: engine.submit(Request("x", torch.ones(2, dtype=torch.long), 2)),
                       ["'x'", "already being served"])


@pytest.mark.parametrize("lookahead", [1, 3, 8])
def test_speculative_decoding_writes_exactly_the_targets_tokens(tiny, lookahead):
    torch.manual_seed(2)
    draft = GPT2(40, 16, 1, 2, max_len=64).eval()
    for prompt in (torch.randint(0, 40, (1, 5)), torch.randint(0, 40, (1, 1))):
        out, stats = speculative_generate(tiny, draft, prompt, 30, lookahead)
        assert torch.equal(out, generate(tiny, prompt, 30))
        assert stats.draft_calls == lookahead * stats.rounds
        assert stats.proposed == lookahead * stats.rounds >= stats.accepted
    out, own = speculative_generate(tiny, tiny, prompt, 30, lookahead)  # a perfect draft
    assert own.acceptance == 1.0 and own.rounds == math.ceil(29 / (lookahead + 1))
    assert torch.equal(out, generate(tiny, prompt, 30))
    assert torch.equal(speculative_generate(tiny, draft, prompt, 0)[0], prompt)


@pytest.mark.parametrize("call, words, error", [
    (lambda m: speculative_generate(m, GPT2(41, 16, 1, 2), torch.ones(1, 3, dtype=torch.long),
                                    5), ["vocabulary", "41", "40"], ValueError),
    (lambda m: speculative_generate(m, m, torch.ones(2, 3, dtype=torch.long), 5),
     ["prompt", "(1, L)", "(2, 3)"], ValueError),
    (lambda m: speculative_generate(m, m, torch.ones(1, 3, dtype=torch.long), 5, 0),
     ["lookahead", "0"], ValueError),
    (lambda m: speculative_generate(m, m, torch.ones(1, 50, dtype=torch.long), 10, 5),
     ["lookahead 5", "max_len=64"], ValueError),
    (lambda m: speculative_generate(m, "draft", torch.ones(1, 3, dtype=torch.long), 5),
     ["draft", "GPT2", "str"], TypeError),
])
def test_bad_speculation_inputs_name_the_argument(tiny, call, words, error):
    assert_error_names(lambda: call(tiny), words, error)


def test_a_checkpoint_builds_the_same_model(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "tiny.pt")
    again = load_checkpoint(tmp_path / "tiny.pt")
    tokens = torch.randint(0, 40, (2, 9))
    with torch.no_grad():
        assert torch.equal(again(tokens), tiny(tokens))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    assert_error_names(lambda: load_checkpoint(tmp_path / "other.pt"), ["other.pt", "checkpoint"])


def test_an_engine_cancels_a_request_and_frees_its_pages(tiny):
    engine = Engine(tiny, 20, 4, 2)
    for name in ("a", "b", "c"):
        engine.submit(Request(name, torch.ones(3, dtype=torch.long), 20))
    engine.step()
    assert engine.cancel("a") and engine.cancel("c") and not engine.cancel("zzz")
    assert [r.name for r in engine.running] == ["b"] and not engine.waiting
    assert len(engine.cache.free_pages) == 20 - len(engine.cache.tables["b"])


def test_nan_logits_are_named_not_chosen():
    logits = torch.zeros(2, 5)
    logits[1, 3] = float("nan")
    assert_error_names(lambda: next_tokens(logits), ["logits hold NaN"])
    assert_error_names(lambda: next_tokens(logits, Sampling()), ["logits hold NaN"])


def test_a_static_group_too_large_for_the_pool_is_admitted_in_part(tiny):
    """Each member reserves for the group's longest: two requests that fit the pool one at
    a time but not together ran nothing, forever."""
    engine = Engine(tiny, num_pages=2, page_size=8, max_batch=4, static=True)
    results = engine.run([Request("short", encode("the c"), 5), Request("long", encode("a"), 15)])
    assert [len(results["short"]), len(results["long"])] == [5, 15]
    assert engine.most_pages <= 2


def test_requests_are_told_apart_by_identity():
    first, second = (Request("x", torch.ones(2, dtype=torch.long), 3) for _ in range(2))
    assert first != second and first == first and len({first, second}) == 2
