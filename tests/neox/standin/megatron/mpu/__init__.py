"""Stand-in for megatron/mpu/initialize.py on one process: the rank/group queries the data path uses."""


def get_model_parallel_rank():  # initialize.py:208 (tensor-parallel rank)
    return 0


def get_model_parallel_src_rank():  # initialize.py:216
    return 0


def get_model_parallel_group():  # initialize.py:170 (None = the default group of size 1 here)
    return None


def get_pipe_parallel_rank():  # initialize.py:260
    return 0


def get_pipe_parallel_world_size():  # initialize.py:265
    return 1


def get_data_parallel_world_size():  # initialize.py:240
    return 1


def get_data_parallel_rank():  # initialize.py:245
    return 0
