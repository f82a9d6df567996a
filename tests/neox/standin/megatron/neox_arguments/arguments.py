"""Stand-in for megatron/neox_arguments/arguments.py (+ template.py, deepspeed_args.py, neox_args.py).

What the graft relies on: BASE_CLASSES (arguments.py:103), NEOX_ARG_CLASSES (:119), NeoXArgs built as a
dataclass over BASE_CLASSES (:126), __post_init__ validating keys/types (:136-162), from_dict (:288) ending
in cls(**config), validate_types accepting exact types, int-for-float, Literal and Union (:1365-1425),
get_parent_class_value_dict over parent().defaults() (:674), deepspeed_config reading only
NeoXArgsDeepspeedConfig (:644), the megatron config of get_deepspeed_main_args over
self.__class__.__bases__ with only non-defaults (:629-636).
"""
import dataclasses
from dataclasses import dataclass
from typing import Literal, Union


@dataclass
class NeoXArgsTemplate:  # template.py:18
    def defaults(self):  # template.py:19
        for key, field_def in self.__dataclass_fields__.items():
            yield key, field_def.default

    def update_value(self, key, value):  # template.py:26
        if not hasattr(self, key):
            raise ValueError(f"{key} does not exist")
        setattr(self, key, value)


@dataclass
class NeoXArgsDeepspeedConfig(NeoXArgsTemplate):  # deepspeed_args.py:22
    train_batch_size: int = None
    train_micro_batch_size_per_gpu: int = None
    gradient_accumulation_steps: int = 1
    optimizer: dict = None
    fp16: dict = None


@dataclass
class NeoXArgsLRScheduler(NeoXArgsTemplate):  # neox_args.py:660
    lr_decay_style: Literal["constant", "linear", "cosine", "exponential"] = "linear"
    lr_decay_iters: int = None
    min_lr: float = 0.0
    warmup: float = 0.01
    override_lr_scheduler: bool = False
    use_checkpoint_lr_scheduler: bool = False


@dataclass
class NeoXArgsTraining(NeoXArgsTemplate):  # neox_args.py:1009
    train_iters: int = None
    seq_length: int = None
    seed: int = 1234
    save: str = None
    load: str = None
    finetune: bool = False
    no_load_optim: bool = False
    iteration: int = None
    eval_interval: int = 1000
    checkpoint_factor: int = None
    eval_iters: int = 100
    train_data_paths: list = None
    train_data_weights: list = None
    valid_data_paths: list = None
    data_path: str = None
    use_mup: bool = False
    deepspeed: bool = True
    optimizer_type: Literal["adam", "onebitadam", "sgd"] = "adam"
    is_pipe_parallel: bool = False
    num_workers: int = 0
    lr: float = None
    batch_size: int = None
    do_train: int = None
    do_valid: int = None
    do_test: int = None


BASE_CLASSES = [NeoXArgsDeepspeedConfig, NeoXArgsLRScheduler, NeoXArgsTraining]
DEEPSPEED_ARG_CLASSES = [NeoXArgsDeepspeedConfig]
NEOX_ARG_CLASSES = [i for i in BASE_CLASSES if i not in DEEPSPEED_ARG_CLASSES]


@dataclass
class NeoXArgs(*BASE_CLASSES):
    def __post_init__(self):
        if not NeoXArgs.validate_keys():
            raise ValueError("NeoXArgs keys cannot be validated")
        if self.train_micro_batch_size_per_gpu is None and self.train_batch_size is not None:
            self.train_micro_batch_size_per_gpu = self.train_batch_size // self.gradient_accumulation_steps
        if self.train_batch_size is None and self.train_micro_batch_size_per_gpu is not None:
            self.train_batch_size = self.train_micro_batch_size_per_gpu * self.gradient_accumulation_steps
        self.batch_size = self.train_micro_batch_size_per_gpu
        if self.train_data_paths and self.train_data_weights is None:  # arguments.py:1163
            self.train_data_weights = [1.0] * len(self.train_data_paths)
        if self.optimizer and self.lr is None:
            self.lr = self.optimizer.get("params", {}).get("lr")
        if not self.validate_types():
            raise ValueError("NeoXArgs types cannot be validated")

    @classmethod
    def from_dict(cls, args_dict):
        return cls(**args_dict)

    @classmethod
    def validate_keys(cls):
        seen = set()
        for base in cls.__bases__:
            names = set(base.__dataclass_fields__)
            if names & seen:
                return False
            seen |= names
        return True

    def validate_types(self):
        for name, field_def in self.__dataclass_fields__.items():
            value = getattr(self, name)
            if value is None or type(value) == field_def.type:
                continue
            if type(value) == int and field_def.type == float:
                continue
            origin = getattr(field_def.type, "__origin__", None)
            if origin is Literal and value in field_def.type.__args__:
                continue
            if origin is Union and type(value) in field_def.type.__args__:
                continue
            self.type_error = f"{name}: {type(value)} instead of {field_def.type}"
            return False
        return True

    def get_parent_class_value_dict(self, *parent_classes, only_non_defaults=False):
        result = {}
        for parent in parent_classes:
            for key, default in parent().defaults():
                if only_non_defaults and getattr(self, key) == default:
                    continue
                result[key] = getattr(self, key)
        return result

    @property
    def deepspeed_config(self):
        return self.get_parent_class_value_dict(NeoXArgsDeepspeedConfig, only_non_defaults=True)

    def megatron_config_for_workers(self):  # the --megatron_config payload of get_deepspeed_main_args
        return self.get_parent_class_value_dict(*self.__class__.__bases__, only_non_defaults=True)
