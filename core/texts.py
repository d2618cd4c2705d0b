"""Every sentence users see: friendly errors, confirmations, help and status lines, in English and Chinese."""

from __future__ import annotations

from typing import Literal

from core.dify import errors as dify
from core.errors import AnswerIdle, AnswerTooLong, ConversationBusy, Interrupted, StoreUnavailable
from core.files.model import FileProblem
from core.question import MAX_QUESTION_CHARS, QuestionTooLong

Lang = Literal["en", "zh"]


def language_for(code: str | None) -> Lang:
    """Chinese for zh* language codes, English otherwise."""
    return "zh" if code and code.lower().startswith("zh") else "en"


# Most specific class first: friendly_error() takes the first match in this order.
_ERRORS: list[tuple[type[BaseException], str, str]] = [
    (
        QuestionTooLong,
        f"Your message is too long (more than {MAX_QUESTION_CHARS:,} characters). Please shorten it or split it up.",
        f"你的消息太长了（超过 {MAX_QUESTION_CHARS:,} 个字符）。请缩短或分成几条发送。",
    ),
    (
        dify.ConversationNotFound,
        "This conversation has expired. Send /reset to start a new one.",
        "这个对话已过期。请发送 /reset 开始新的对话。",
    ),
    (
        dify.DifyAuthError,
        "The bot's connection to its assistant was refused. Please tell the bot owner.",
        "机器人连接助手时被拒绝。请联系机器人管理员。",
    ),
    (
        dify.DifyBadBaseUrl,
        "The bot is set up with a wrong Dify address: DIFY_BASE_URL must be the app's Service API URL, "
        "ending in /v1 (e.g. https://api.dify.ai/v1). Please tell the bot owner.",
        "机器人配置的 Dify 地址不正确：DIFY_BASE_URL 必须是应用的服务 API 地址，以 /v1 结尾"
        "（例如 https://api.dify.ai/v1）。请联系机器人管理员。",
    ),
    (
        dify.DifyModelUnavailable,
        "The assistant's AI model is not set up or not reachable on its server. This is not your message's "
        "fault; please tell the bot owner.",
        "助手的 AI 模型在服务器上未配置或无法访问。这不是你的消息的问题；请联系机器人管理员。",
    ),
    (
        dify.DifyAppUnavailable,
        "The assistant is not available right now. Please tell the bot owner.",
        "助手暂时不可用。请联系机器人管理员。",
    ),
    (
        dify.DifyQuotaExceeded,
        "The assistant has reached its usage limit. Please tell the bot owner.",
        "助手已达到使用额度上限。请联系机器人管理员。",
    ),
    (
        dify.DifyAppBusy,
        "The assistant is busy with other requests. Please try again in a minute.",
        "助手正忙于处理其他请求。请稍后再试。",
    ),
    (
        dify.DifyProviderError,
        "The AI model behind the assistant did not answer. Please try again in a moment.",
        "助手背后的 AI 模型没有响应。请稍后再试。",
    ),
    (
        dify.DifyRunFailed,
        "The assistant's workflow failed on this message. Please try again; if it keeps happening, tell the bot owner.",
        "助手的工作流处理这条消息时失败了。请重试；如果反复出现，请联系机器人管理员。",
    ),
    (
        dify.DifyBadRequest,
        "The assistant could not accept this message. Try rephrasing it, or send /reset to start over.",
        "助手无法接受这条消息。请换个说法，或发送 /reset 重新开始。",
    ),
    (
        dify.DifyNotFound,
        "The assistant could not find what this message refers to. Send /reset to start over.",
        "助手找不到这条消息所指的内容。请发送 /reset 重新开始。",
    ),
    (
        dify.DifyServerError,
        "The assistant's server had a problem. Please try again in a moment.",
        "助手的服务器出现了问题。请稍后再试。",
    ),
    (
        dify.DifyUnreachable,
        "The bot cannot reach its assistant's server. Please try again later; if it keeps happening, tell the "
        "bot owner (DIFY_BASE_URL may be wrong).",
        "机器人无法连接助手的服务器。请稍后再试；如果反复出现，请联系机器人管理员（DIFY_BASE_URL 可能有误）。",
    ),
    (dify.DifyTimeout, "The assistant took too long to answer. Please try again.", "助手响应超时。请重试。"),
    (
        dify.DifyTransportError,
        "The connection to the assistant broke. Please try again.",
        "与助手的连接中断了。请重试。",
    ),
    (
        dify.DifyProtocolError,
        "The assistant's reply was cut off. Please try again.",
        "助手的回复被中断了。请重试。",
    ),
    (
        AnswerIdle,
        "The assistant stopped responding, so the answer ends here. Please try again.",
        "助手停止了响应，回答到此为止。请重试。",
    ),
    (
        AnswerTooLong,
        "The answer took too long and was stopped here. Please try again, perhaps with a shorter request.",
        "回答用时过长，已在此处停止。请重试，或把问题拆小一些。",
    ),
    (
        StoreUnavailable,
        "The bot cannot reach its memory right now. Please try again in a moment.",
        "机器人暂时无法访问对话记录。请稍后再试。",
    ),
    (
        ConversationBusy,
        "The previous answer in this chat is still running. Please wait for it and send again.",
        "这个对话中的上一条回答还在进行。请等它完成后再发送。",
    ),
    (
        Interrupted,
        "The bot was restarted while answering. Please send your message again.",
        "机器人在回答时重启了。请重新发送你的消息。",
    ),
]

# One sentence per FileProblem.reason: what was wrong with the file, and how the user can resend.
_FILE_PROBLEMS: dict[str, tuple[str, str]] = {
    "files_disabled": (
        "This assistant does not accept files. Please send your question as text.",
        "这个助手不接受文件。请用文字发送你的问题。",
    ),
    "type_refused": (
        "This assistant does not accept this type of file{what}. Please send it in another format or as text.",
        "这个助手不接受这种类型的文件{what}。请换一种格式或用文字发送。",
    ),
    "too_large": (
        "This file is too large: the limit is {limit_mb} MB. Please send a smaller file.",
        "文件太大了：上限是 {limit_mb} MB。请发送更小的文件。",
    ),
    "too_many": (
        "Too many files: this assistant takes at most {limit} at once. Please send fewer files.",
        "文件太多了：这个助手一次最多接受 {limit} 个。请少发几个文件。",
    ),
    "too_large_unknown_limit": (
        "This file is too large for the assistant. Please send a smaller file.",
        "这个文件对助手来说太大了。请发送更小的文件。",
    ),
    "too_many_unknown_limit": (
        "Too many files for the assistant at once. Please send fewer files.",
        "一次发送的文件太多了。请少发几个文件。",
    ),
    "fetch_failed": (
        "The bot could not download your file. Please send it again.",
        "机器人无法下载你的文件。请重新发送。",
    ),
    "upload_failed": (
        "The bot could not pass your file to the assistant. Please send it again, perhaps in another format.",
        "机器人无法把你的文件交给助手。请重新发送，或换一种格式。",
    ),
    "voice_unsupported": (
        "This assistant can't listen to voice messages. Please send your question as text.",
        "这个助手无法收听语音消息。请用文字发送你的问题。",
    ),
    "transcription_failed": (
        "The bot could not make out your voice message. Please send it again, or type your question.",
        "机器人无法识别你的语音消息。请重新发送，或直接输入你的问题。",
    ),
}


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def _file_problem(error: FileProblem, lang: Lang) -> str:
    reason = error.reason
    if reason in ("too_large", "too_many") and not error.values.get("limit_mb" if reason == "too_large" else "limit"):
        reason += "_unknown_limit"
    english, chinese = _FILE_PROBLEMS.get(reason, _FILE_PROBLEMS["upload_failed"])
    values = _Blank(error.values)
    what = values.get("what", "")
    if what:
        values["what"] = f" ({what})" if lang == "en" else f"（{what}）"
    return (chinese if lang == "zh" else english).format_map(values)


_FALLBACK = ("Something went wrong while answering. Please try again.", "回答时出了点问题。请重试。")

_TEXTS: dict[str, tuple[str, str]] = {
    "context_reset": (
        "(The earlier conversation had expired, so this answer starts a new one.)",
        "（之前的对话已过期，这条回答开始了新的对话。）",
    ),
    "reset_done": (
        "Conversation cleared. Your next message starts a new one.",
        "对话已清除。你的下一条消息将开始新的对话。",
    ),
    "reset_empty": (
        "There was nothing to clear. Your next message starts a new conversation.",
        "没有需要清除的对话。你的下一条消息将开始新的对话。",
    ),
    "greeting": ("Hello! Send me a message and I'll answer.", "你好！给我发消息，我来回答。"),
    "help": (
        "Send me a message and I'll answer, streaming the reply as it is written.\n"
        "/stop stops the answer being written.\n/reset starts a new conversation.\n/help shows this message.",
        "给我发消息，我会边写边回复。\n/stop 停止正在写的回答。\n/reset 开始新的对话。\n/help 显示这条说明。",
    ),
    "not_allowed": ("Sorry, this bot is not available here.", "抱歉，这个机器人在这里不可用。"),
    "unknown_command": (
        "I don't know that command. Send /help to see what I can do.",
        "我不认识这个命令。发送 /help 查看可用命令。",
    ),
    "empty_message": ("Please send some text.", "请发送文字内容。"),
    "heard": ("🎤 {text}", "🎤 {text}"),
    "asked": ("💬 {text}", "💬 {text}"),
    "stop_button": ("⏹ Stop", "⏹ 停止"),
    "stop_not_yours": (
        "Only the person who asked (or a chat admin) can stop this answer.",
        "只有提问的人（或群管理员）可以停止这条回答。",
    ),
    "stop_ended": ("This answer has already ended.", "这条回答已经结束了。"),
    "stop_done": ("Stopped.", "已停止。"),
    "stop_nothing": ("Nothing is being answered here right now.", "这里现在没有正在进行的回答。"),
    "feedback_like": ("Thanks! Marked as helpful.", "谢谢！已标记为有帮助。"),
    "feedback_dislike": ("Thanks! Marked as not helpful.", "谢谢！已标记为没有帮助。"),
    "feedback_cleared": ("Your rating was removed.", "已取消你的评价。"),
    "feedback_failed": (
        "Your rating could not be saved right now. Please try again later.",
        "暂时无法保存你的评价，请稍后再试。",
    ),
    "suggestions_intro": ("You could ask:", "你可以问："),
    "suggestion_gone": ("This suggestion is no longer available.", "这个建议已不可用。"),
    "file_missing": (
        "⚠️ A file from the answer could not be fetched: {name}",
        "⚠️ 无法获取回答中的文件：{name}",
    ),
    "thinking": ("Thinking…", "思考中…"),
    "queued": ("Waiting for the previous answer…", "正在等待上一条回答完成…"),
    "progress_retrieval": ("Searching the knowledge base…", "正在检索知识库…"),
    "progress_tool": ("Using {label}…", "正在使用 {label}…"),
    "progress_node": ("Running {label}…", "正在执行 {label}…"),
    "empty_answer": ("(The assistant returned an empty answer.)", "（助手返回了空的回答。）"),
    "stopped": ("(Stopped.)", "（已停止。）"),
    "sources": ("Sources: {names}", "来源：{names}"),
    "usage_tokens": ("{count} tokens", "{count} tokens"),
    "usage_seconds": ("{seconds} s", "{seconds} 秒"),
    "usage_step": ("{count} step", "{count} 步"),
    "usage_steps": ("{count} steps", "{count} 步"),
    "interrupted_resend": (
        "The answer was interrupted. Please send your message again.",
        "回答被中断了。请重新发送你的消息。",
    ),
    "paused": ("(The workflow is waiting for input in Dify.)", "（工作流正在 Dify 中等待输入。）"),
}


def friendly_error(error: BaseException, lang: Lang = "en") -> str:
    """One sentence saying what happened and what to do; never a code, JSON or exception text."""
    index = 1 if lang == "zh" else 0
    if isinstance(error, FileProblem):
        return _file_problem(error, lang)
    for cls, english, chinese in _ERRORS:
        if isinstance(error, cls):
            return (english, chinese)[index]
    return _FALLBACK[index]


def text(key: str, lang: Lang = "en", **values: str) -> str:
    english, chinese = _TEXTS[key]
    template = chinese if lang == "zh" else english
    return template.format(**values) if values else template


def progress_line(kind: str, label: str, lang: Lang = "en") -> str:
    """The status shown before the first text arrives."""
    if kind == "retrieval":
        return text("progress_retrieval", lang)
    if kind == "tool":
        return text("progress_tool", lang, label=label)
    if kind == "thinking":
        return text("thinking", lang)
    if kind == "queued":
        return text("queued", lang)
    return text("progress_node", lang, label=label)
