"""Day 4's proofs as unit tests: patches, patch embedding, class token, position embedding."""

import warnings
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from common.testing import assert_error_names
from day04_vit_patches import ClassToken, PatchEmbedding, PositionEmbedding, as_grid, patchify


def test_each_patch_is_its_image_region_and_patchify_equals_unfold():
    images = torch.randn(2, 3, 32, 48)
    patches = patchify(images, 8)
    assert patches.shape == (2, 4 * 6, 3 * 8 * 8)
    for k in (0, 5, 6, 23):
        row, col = divmod(k, 6)
        region = images[:, :, 8 * row:8 * row + 8, 8 * col:8 * col + 8]
        assert torch.equal(patches[:, k], region.flatten(1))
    unfolded = nn.functional.unfold(images, kernel_size=8, stride=8)
    assert torch.equal(patches, unfolded.transpose(1, 2))


@pytest.mark.parametrize("size", [(16, 16), (64, 96), (224, 224)])
def test_convolution_equals_unfold_plus_linear(size):
    embedding = PatchEmbedding(16, 3, 64)
    images = torch.randn(2, 3, *size)
    tokens = embedding(images)
    assert tokens.shape == (2, size[0] * size[1] // 256, 64)
    assert embedding.grid_size(images) == (size[0] // 16, size[1] // 16)
    assert_close(tokens, embedding.unfold_and_project(images))


@pytest.mark.parametrize("images, words", [
    (torch.zeros(1, 3, 225, 224), ["225x224", "patch_size=16"]),
    (torch.zeros(1, 3, 224, 100), ["224x100", "patch_size=16"]),
    (torch.zeros(1, 1, 224, 224), ["1 channels", "in_channels=3"]),
    (torch.zeros(3, 224, 224), ["4-D", "(3, 224, 224)"]),
    (torch.zeros(1, 1, 3, 224, 224), ["4-D", "(1, 1, 3, 224, 224)"]),
])
def test_bad_images_are_value_errors_with_the_numbers(images, words):
    embedding = PatchEmbedding(16, 3, 8)
    for call in (embedding, embedding.unfold_and_project):
        assert_error_names(partial(call, images), words)


@pytest.mark.parametrize("call, words", [
    (lambda: PatchEmbedding(16, 3, 8)(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
     ["images", "torch.uint8", "images.float() / 255"]),
    (lambda: PatchEmbedding(16, 3, 8)(torch.zeros(1, 3, 32, 32, dtype=torch.float64)),
     ["images", "torch.float64", "torch.float32"]),
    (lambda: patchify(torch.zeros(1, 3, 8, 8), 2.0), ["patch_size", "2.0"]),
    (lambda: as_grid(True), ["grid_size", "True"]),
    (lambda: as_grid((4, 2.5)), ["grid_size[1]", "2.5"]),
])
def test_bad_types_are_type_errors_that_name_the_argument(call, words):
    assert_error_names(call, words, TypeError)


@pytest.mark.parametrize("patch_size", [0, -2])
def test_patchify_refuses_a_patch_size_below_one(patch_size):
    assert_error_names(lambda: patchify(torch.zeros(1, 3, 8, 8), patch_size),
                       ["patch_size", str(patch_size)])


def test_numpy_integers_are_sizes():
    assert as_grid(np.int64(4)) == (4, 4) and as_grid((np.int32(2), 3)) == (2, 3)
    assert all(type(n) is int for n in as_grid(np.int64(4)))


def test_bad_configuration_is_a_value_error():
    with pytest.raises(ValueError, match="patch_size must be a positive int, got 0"):
        PatchEmbedding(0, 3, 8)
    with pytest.raises(ValueError, match="grid_size"):
        PositionEmbedding((2, 3, 4), 8)


def test_class_token_is_one_parameter_shared_by_the_batch():
    token = ClassToken(16)
    tokens = torch.randn(4, 7, 16)
    sequence = token(tokens)
    assert sequence.shape == (4, 8, 16)
    assert torch.equal(sequence[:, 0], token.token[0].expand(4, 16))
    assert torch.equal(sequence[:, 1:], tokens)
    upstream = torch.randn(4, 8, 16)
    (sequence * upstream).sum().backward()
    assert_close(token.token.grad[0, 0], upstream[:, 0].sum(0))
    assert [p.shape for p in token.parameters()] == [torch.Size([1, 1, 16])]


def test_position_embedding_is_added_unchanged_on_its_own_grid():
    position = PositionEmbedding((4, 6), 16)
    tokens = torch.randn(3, 25, 16)
    assert torch.equal(position(tokens), tokens + position.embedding)
    assert position.resampled((4, 6)) is position.embedding


def test_resampling_keeps_the_class_position_and_is_bicubic_per_channel():
    position = PositionEmbedding((4, 6), 16)
    table = position.resampled((8, 9))
    assert table.shape == (1, 73, 16)
    assert torch.equal(table[:, 0], position.embedding[:, 0])
    picture = position.embedding[0, 1:].reshape(4, 6, 16).permute(2, 0, 1)[None]
    resized = nn.functional.interpolate(picture, size=(8, 9), mode="bicubic",
                                        align_corners=False)
    assert_close(table[0, 1:], resized[0].permute(1, 2, 0).reshape(72, 16))
    constant = PositionEmbedding(3, 4)
    with torch.no_grad():
        constant.embedding[:, 1:] = torch.arange(4.0)
    assert_close(constant.resampled(10)[0, 1:], torch.arange(4.0).expand(100, 4))


def test_position_embedding_rejects_a_sequence_of_the_wrong_length():
    position = PositionEmbedding((4, 6), 16)
    with pytest.raises(ValueError) as error:
        position(torch.randn(3, 25, 16), grid_size=(8, 9))
    assert "73" in str(error.value) and "(3, 25, 16)" in str(error.value)


def hugging_face_embeddings(d_model, image_size, patch_size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from transformers import ViTConfig
        from transformers.models.vit.modeling_vit import ViTEmbeddings
    config = ViTConfig(hidden_size=d_model, image_size=image_size, patch_size=patch_size,
                       num_channels=3)
    return ViTEmbeddings(config).eval()


@pytest.mark.parametrize("size", [32, 48, 80])
def test_the_whole_input_equals_hugging_face_vit_embeddings(size):
    d_model, patch_size = 32, 4
    patch_embedding = PatchEmbedding(patch_size, 3, d_model)
    class_token, position = ClassToken(d_model), PositionEmbedding(32 // patch_size, d_model)
    reference = hugging_face_embeddings(d_model, 32, patch_size)
    with torch.no_grad():
        reference.patch_embeddings.projection.load_state_dict(
            patch_embedding.projection.state_dict())
        reference.cls_token.copy_(class_token.token)
        reference.position_embeddings.copy_(position.embedding)
    images = torch.randn(2, 3, size, size)
    ours = position(class_token(patch_embedding(images)), patch_embedding.grid_size(images))
    assert_close(ours, reference(images, interpolate_pos_encoding=size != 32))
