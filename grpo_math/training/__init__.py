"""Training: the GRPOTrainer subclass (every use of TRL internals), callbacks, and the checks that build the config.

    checks        the checks between flags and against the machine before anything heavy loads
    trainer       the GRPOTrainer subclasses, behind a TRL version check
    callbacks     train_log.json, completions.jsonl, the in-run accuracy eval, the console bar
    tensorboard   completions and warnings as TensorBoard text
    lora_inputs   the loss pass's LoRA inputs under autocast, used without PEFT's fp32 round trip
    memory        the peak-memory estimate before the model loads, and out-of-memory as one line
"""

__all__ = ["callbacks", "checks", "lora_inputs", "memory", "tensorboard", "trainer"]  # the public modules; `_name` ones are this package's own
