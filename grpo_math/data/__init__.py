"""Every dataset source as the data contract (`prompt`, `answer`, `solution`, `question`).

    sources       hub, local files and directories, the built-in task; prompts to token ids
    prompts       prompt templates (think, r1_zero, qwen_math; English and Chinese)
    arithmetic    the built-in offline task: seeded arithmetic word problems
    hub           a local path or a Hub id (one rule), and whether the Hub answers
"""

__all__ = ["arithmetic", "hub", "prompts", "sources"]  # the public modules; `_name` ones are this package's own
