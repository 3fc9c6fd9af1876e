"""The resumable training order shared by pre-training and fine-tuning."""
import random

import numpy as np
import pytest
import torch

from itpn.data.order import EpochSampler, SeededSamples, updates_per_epoch


def test_an_update_holds_the_same_images_however_it_is_split_over_processes_and_micro_steps():
    whole = list(EpochSampler(40, batch_size=8, accum_steps=1, rank=0, world_size=1, seed=3, epoch=2))
    split = [list(EpochSampler(40, batch_size=2, accum_steps=2, rank=rank, world_size=2, seed=3, epoch=2))
             for rank in range(2)]
    for update in range(5):
        expected = whole[update * 8:(update + 1) * 8]
        got = [pair for rank in range(2) for micro in range(2)
               for pair in split[rank][update * 4 + micro * 2:update * 4 + micro * 2 + 2]]
        assert sorted(got) == sorted(expected)


def test_a_sampler_started_at_an_update_continues_the_epoch_order():
    full = list(EpochSampler(30, 4, 2, 0, 1, seed=0, epoch=1))
    resumed = EpochSampler(30, 4, 2, 0, 1, seed=0, epoch=1, start_update=2)
    assert len(full) == 3 * 8 and list(resumed) == full[16:] and len(resumed) == 8
    assert list(EpochSampler(30, 4, 2, 0, 1, seed=0, epoch=2)) != full  # each epoch its own order


class RandomDraws:
    """A data set whose items are draws from every generator an augmentation may use."""

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return index, random.random(), float(np.random.rand()), torch.rand(()).item()


def test_seeded_samples_repeat_the_augmentation_of_a_position():
    samples = SeededSamples(RandomDraws())
    assert len(samples) == 3
    assert samples[(1, 7)] == samples[(1, 7)]
    assert samples[(1, 7)][1:] != samples[(1, 8)][1:] and samples[(2, 7)][0] == 2


def test_too_few_images_for_one_update_names_the_data_and_the_batch():
    assert updates_per_epoch(33, 4, 2, 2, "data/imagenet/train") == 2
    with pytest.raises(ValueError, match=r"data/imagenet/train has 15 images, fewer than one global batch of 16 "
                                         r"\(batch_size 4 x accum_steps 2 x 2 processes\)"):
        updates_per_epoch(15, 4, 2, 2, "data/imagenet/train")
