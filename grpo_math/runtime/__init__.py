"""The process: device and dtype, ranks and launches, signals.

    devices       device and dtype, the process's rank and world size
    launch        several processes: what accelerate shards, rank-0 work handed to all, exiting together
    interrupts    SIGTERM and SIGINT: finish the step, save a checkpoint, stop with the resume command
"""

__all__ = ["devices", "interrupts", "launch"]  # the public modules; `_name` ones are this package's own
