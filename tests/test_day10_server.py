"""Day 10's server, run for real: a subprocess on 127.0.0.1 serving a tiny checkpoint, asked
with httpx. Its answers equal `generate`'s, bad requests get a 422 naming the problem, a
client that leaves mid-stream has its pages freed, and SIGINT stops it with exit code 0."""

import json
import time

import httpx
import pytest
import torch

from day10_serving import GPT2, decode, encode, generate, save_checkpoint
from day10_serving.server import load_test, start_server, stop_server


@pytest.fixture(scope="module")
def model_and_server(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT2(29, 32, 2, 4, max_len=256).eval()
    checkpoint = tmp_path_factory.mktemp("server") / "tiny.pt"
    save_checkpoint(model, checkpoint)
    process, url = start_server(checkpoint, "--max-batch", "3", "--pages", "64",
                                "--page-size", "4")
    yield model, url
    assert stop_server(process) == 0  # the clean shutdown, checked when the tests are done


def test_answers_equal_generate_whole_and_streamed(model_and_server):
    model, url = model_and_server
    expected = decode(generate(model, encode("a dog")[None], 20)[0, 5:])
    assert httpx.post(url + "/generate", json={"prompt": "a dog", "max_new_tokens": 20}
                      ).json() == {"text": expected, "tokens": 20}
    with httpx.stream("POST", url + "/generate", json={"prompt": "a dog", "max_new_tokens": 20,
                                                       "stream": True}) as events:
        lines = [line for line in events.iter_lines() if line.startswith("data: ")]
    assert "".join(json.loads(line[6:])["text"] for line in lines[:-1]) == expected
    assert lines[-1] == "data: [DONE]"


def test_sampled_answers_follow_their_seed(model_and_server):
    _, url = model_and_server
    body = {"prompt": "the", "max_new_tokens": 15, "temperature": 1.2, "top_k": 10, "seed": 4}
    answers = [httpx.post(url + "/generate", json=body).json()["text"] for _ in range(2)]
    assert answers[0] == answers[1]


@pytest.mark.parametrize("body, words", [
    ({"prompt": ""}, ["prompt", "at least 1 character"]),
    ({"prompt": "The cat"}, ["prompt", "'T'"]),
    ({"prompt": "a dog", "max_new_tokens": 260}, ["max_new_tokens (260)", "max_len=256"]),
    ({"prompt": "a dog", "max_new_tokens": "5"}, ["max_new_tokens", "valid integer"]),
    ({"prompt": "a dog", "max_new_tokens": 0}, ["max_new_tokens", "greater than or equal to 1"]),
    ({"prompt": "a dog", "top_p": 1.5}, ["top_p", "less than or equal to 1"]),
    ({"prompt": "a dog", "tokens": 5}, ["tokens", "Extra inputs"]),
    ({"max_new_tokens": 5}, ["prompt", "Field required"]),
    ({"prompt": ["a"]}, ["prompt", "valid string"]),
])
def test_bad_requests_get_a_422_that_names_the_problem(model_and_server, body, words):
    _, url = model_and_server
    response = httpx.post(url + "/generate", json=body)
    assert response.status_code == 422
    assert all(word in response.text for word in words), response.text


def test_a_body_that_is_not_json_is_refused(model_and_server):
    _, url = model_and_server
    response = httpx.post(url + "/generate", content=b"not json",
                          headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_a_client_that_leaves_mid_stream_is_cancelled_and_frees_its_pages(model_and_server):
    """Cancelled, not finished: the server counts the request it stopped."""
    _, url = model_and_server
    before = httpx.get(url + "/health").json()["cancelled"]
    with httpx.stream("POST", url + "/generate", json={"prompt": "a dog", "max_new_tokens": 240,
                                                       "stream": True}) as events:
        lines = events.iter_lines()
        for _ in range(3):
            next(lines)
    for _ in range(100):
        health = httpx.get(url + "/health").json()
        if health["free_pages"] == health["pages"]:
            break
        time.sleep(0.05)
    assert health["free_pages"] == health["pages"] == 64
    assert health["cancelled"] == before + 1
    assert httpx.post(url + "/generate", json={"prompt": "a", "max_new_tokens": 3}
                      ).status_code == 200


def test_a_load_test_gets_every_token(model_and_server):
    _, url = model_and_server
    load = [("a dog", n) for n in (3, 10, 25, 7, 1, 18)]
    result = load_test(url + "/generate", load, clients=4)
    assert result["tokens"] == sum(n for _, n in load) and len(result["requests"]) == 6
    assert all(0 < r["first_token_s"] <= r["latency_s"] for r in result["requests"])


def test_bad_load_tests_and_checkpoints_are_named(tmp_path):
    from common.testing import assert_error_names

    assert_error_names(lambda: load_test("http://127.0.0.1:9/generate", [], clients=2),
                       ["requests", "at least one"])
    assert_error_names(lambda: load_test("http://127.0.0.1:9/generate", [("a", 1)], clients=0),
                       ["clients", "0"])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    assert_error_names(lambda: start_server(tmp_path / "broken.pt"),
                       ["exited with code", "at start"], RuntimeError)
