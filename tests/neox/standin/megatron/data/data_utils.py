"""Stand-in for megatron/data/data_utils.py build_train_valid_test_data_loaders (:516) and
shift_and_wrap_data_loaders (:745): datasets of ``train_iters x train_batch_size`` samples (:585-593), a
batch sampler with ``start_iter`` counted in micro-batches, shifted by ``iteration x
gradient_accumulation_steps`` modulo the loader length (:751-753), iterators that cycle (:786-790).
A sample here is its own index in the data set, so tests can read the data position off the batches."""
from itertools import cycle


class BatchSampler:
    def __init__(self, num_batches):
        self.num_batches, self.start_iter = num_batches, 0


class Loader:
    def __init__(self, num_samples, micro_batch, name="train"):
        self.num_samples, self.micro_batch, self.name = num_samples, micro_batch, name
        self.batch_sampler = BatchSampler(num_samples // micro_batch)

    def __len__(self):
        return self.batch_sampler.num_batches

    def __iter__(self):
        for b in range(self.batch_sampler.start_iter, len(self)):
            yield (self.name, list(range(b * self.micro_batch, (b + 1) * self.micro_batch)))
        self.batch_sampler.start_iter = 0


def build_train_valid_test_data_loaders(neox_args):
    num_samples = neox_args.train_iters * neox_args.train_batch_size
    neox_args.do_train, neox_args.do_valid, neox_args.do_test = 1, 1, 0
    return {"train": Loader(num_samples, neox_args.batch_size), "valid": Loader(10**6, neox_args.batch_size,
                                                                                "valid"), "test": None}


def shift_and_wrap_data_loaders(neox_args, data_loaders, loop=True):
    train, valid = data_loaders["train"], data_loaders["valid"]
    if train is not None:
        train.batch_sampler.start_iter = (neox_args.iteration * neox_args.gradient_accumulation_steps) % len(train)
    if valid is not None:
        valid.batch_sampler.start_iter = ((neox_args.iteration * neox_args.gradient_accumulation_steps)
                                          // neox_args.eval_interval) * neox_args.eval_iters % len(valid)
    wrap = cycle if loop else iter
    return tuple(wrap(x) if x is not None else None for x in (train, valid, data_loaders["test"]))


class DistributedBatchSampler:
    """Stand-in for megatron/data/samplers.py DistributedBatchSampler: batches of ``batch_size`` indices
    from a sequential sampler, skipping the first ``start_iter`` batches; DP rank r takes the r-th slice."""

    def __init__(self, num_samples, batch_size, rank=0, world_size=1):
        self.num_samples, self.batch_size, self.rank, self.world_size = num_samples, batch_size, rank, world_size
        self.start_iter = 0

    def __len__(self):
        return self.num_samples // self.batch_size

    def __iter__(self):
        per_rank = self.batch_size // self.world_size
        for b in range(self.start_iter, len(self)):
            first = b * self.batch_size + self.rank * per_rank
            yield list(range(first, first + per_rank))
        self.start_iter = 0


def make_data_loader(dataset, neox_args):  # data_utils.py:31: global batch = micro batch x DP size
    import torch

    from megatron import mpu

    if dataset is None:
        return None
    sampler = DistributedBatchSampler(len(dataset), neox_args.batch_size * mpu.get_data_parallel_world_size(),
                                      mpu.get_data_parallel_rank(), mpu.get_data_parallel_world_size())
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0)
