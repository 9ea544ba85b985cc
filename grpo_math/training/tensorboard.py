"""What this tool shows in TensorBoard besides TRL's scalars: sampled completions as a text table, warnings.

`callbacks.RunLog` writes a table of each sampled generation batch (`completions_markdown`) and
`callbacks.ConsoleProgress` the health warnings, both through the writer of transformers' own TensorBoard
callback (`tensorboard_writer`), so everything lands in one event file under OUTPUT_DIR/runs.
Left out on purpose: images and histograms (train_log.json and the PNGs of visualize.py cover them).
"""

from __future__ import annotations

from grpo_math.grading.answers import completion_text

TB_COMPLETIONS_SHOWN = 8  # completions per TensorBoard text entry: enough to compare a group or two, still readable
TB_TEXT_CHARS = 600  # per prompt/completion cell in TensorBoard; the full text is in completions.jsonl


def tensorboard_writer(trainer):
    """The SummaryWriter of the trainer's TensorBoard callback, or None when TensorBoard is not reporting."""
    from transformers.integrations import TensorBoardCallback

    if trainer is None:
        return None
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None:
            return cb.tb_writer
    return None


def _cell(text: str) -> str:
    text = text if len(text) <= TB_TEXT_CHARS else text[:TB_TEXT_CHARS] + " …"
    # model output is text, not HTML: a tag it writes (<think>, or one TensorBoard allows, like <b>) shows as written
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", "<br>") or " "


def completions_markdown(rows: list[dict], limit: int = TB_COMPLETIONS_SHOWN) -> str:
    """A markdown table of the first `limit` rows (TensorBoard renders it); prompts shown by their last turn."""
    names = list(rows[0]["rewards"]) if rows else []
    head = "| answer | " + " | ".join(names) + " | advantage | question | completion |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for row in rows[:limit]:
        prompt = row["prompt"]
        question = prompt[-1].get("content", "") if isinstance(prompt, list) and prompt else completion_text(prompt)
        rewards = " | ".join("–" if row["rewards"][n] is None else f"{row['rewards'][n]:.2f}" for n in names)
        adv = "–" if row["advantage"] is None else f"{row['advantage']:+.2f}"
        lines.append(f"| {_cell(str(row['answer']))} | {rewards} | {adv} | {_cell(question)} | "
                     f"{_cell(row['completion'])} |")
    if len(rows) > limit:
        lines.append(f"\n{limit} of {len(rows)} completions shown; all are in completions.jsonl")
    return "\n".join(lines)
