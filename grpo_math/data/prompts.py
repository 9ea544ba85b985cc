"""Prompt templates: how a question becomes the model's input (chat messages, or plain text for base models).

    build_prompt("1+1?")                      # think: system prompt asking for <think>/<answer>\\boxed{}
    build_prompt("1+1?", "r1_zero")           # DeepSeek-R1-Zero's plain-text prompt, ending in "Assistant: <think>"
    build_prompt("1+1?", "qwen_math", "zh")   # Qwen2.5-Math's own chain-of-thought prompt, in Chinese

Left out on purpose: few-shot examples (the rewards read only the completion) and per-model chat templates
(the tokenizer's own chat template renders the messages).
"""
from __future__ import annotations

TEMPLATES: tuple[str, ...] = ("think", "r1_zero", "qwen_math")  # "think" is the default (instruct models)
LANGS: tuple[str, ...] = ("en", "zh")


class DatasetError(ValueError):
    """A dataset that cannot be built as asked: here an unknown template or language, in sources.py a source, a
    split or a file. The message names it and says what would work."""


_SYSTEM = {
    ("think", "en"): "You are a helpful assistant. First think through the problem step by step inside "
                     "<think> </think> tags, then give the final answer inside <answer> </answer> tags as "
                     "\\boxed{...}, i.e., <think> reasoning here </think><answer>\\boxed{final answer}</answer>.",
    ("think", "zh"): "你是一个乐于助人的助手。请先在 <think> </think> 标签内逐步思考推理过程，然后在 <answer> </answer> "
                     "标签内用 \\boxed{} 给出最终答案，即：<think> 推理过程 </think><answer>\\boxed{最终答案}</answer>。",
    # Qwen2.5-Math's own chain-of-thought prompts (its README), so Qwen math models see what they were tuned on.
    ("qwen_math", "en"): "Please reason step by step, and put your final answer within \\boxed{}.",
    ("qwen_math", "zh"): "请通过逐步推理来解答问题，并把最终答案放置于\\boxed{}中。",
    # DeepSeek-R1-Zero's preamble (paper, Table 1); the question and "Assistant: <think>" follow it.
    ("r1_zero", "en"): "A conversation between User and Assistant. The User asks a question, and the Assistant "
                       "solves it. The Assistant first thinks about the reasoning process in the mind and then "
                       "provides the User with the answer. The reasoning process is enclosed within <think> </think> "
                       "and answer is enclosed within <answer> </answer> tags, respectively, i.e., <think> reasoning "
                       "process here </think> <answer> answer here </answer>.",
    ("r1_zero", "zh"): "这是用户与助手之间的对话。用户提出一个问题，由助手来解答。助手先在脑海中思考推理过程，然后向用户给出答案。"
                       "推理过程和答案分别放在 <think> </think> 和 <answer> </answer> 标签内，即 <think> 推理过程 "
                       "</think> <answer> 答案 </answer>。",
}
_R1_TURNS = {"en": "\nUser: {question}\nAssistant: <think>", "zh": "\n用户：{question}\n助手：<think>"}


def check_template(template: str, lang: str) -> None:
    if template not in TEMPLATES:
        raise DatasetError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    if lang not in LANGS:
        raise DatasetError(f"unknown prompt language {lang!r}; choose one of {', '.join(LANGS)}")


def build_prompt(question: str, template: str = "think", lang: str = "en",
                 system_prompt: str | None = None) -> list[dict] | str:
    """The model input for one question: chat messages, or a plain string for `r1_zero` (base models).

    `system_prompt` replaces the system message (for `r1_zero`, the preamble before "User:").
    >>> build_prompt("1+1?", "r1_zero").endswith("Assistant: <think>")
    True
    """
    check_template(template, lang)
    system = _SYSTEM[(template, lang)] if system_prompt is None else system_prompt
    if template == "r1_zero":
        # Ends in "<think>" so a base model starts reasoning at once; the completion holds only "... </think> <answer>".
        return system + _R1_TURNS[lang].format(question=question)
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]

