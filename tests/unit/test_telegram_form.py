"""The hot methods' form bodies: decoded by any form parser to exactly what was sent, falsy fields left out."""

from __future__ import annotations

import random
from urllib.parse import parse_qsl

from bots.telegram.fast_methods import EditText, SendText, form_body


def test_every_character_round_trips() -> None:
    rng = random.Random(7)
    specials = "+&=%#?/:@ ;!$'()*,[]~\n\t\"\\`*_"
    for _ in range(500):
        text = "".join(
            rng.choice([rng.choice(specials), chr(rng.randint(0x20, 0x7E)), chr(rng.randint(0xA0, 0x2FFFF))])
            for _ in range(rng.randint(1, 40))
        )
        if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
            continue
        assert parse_qsl(form_body({"text": text}).decode(), keep_blank_values=True) == [("text", text)]


def test_fields_as_aiogram_sends_them() -> None:
    method = EditText(chat_id=-1001, message_id=7, text="a b+c", entities=None, reply_markup="")
    assert parse_qsl(method.form().decode()) == [("chat_id", "-1001"), ("message_id", "7"), ("text", "a b+c")]
    sent = SendText(chat_id=5, text="hi", message_thread_id=None, link_preview_options='{"is_disabled": true}')
    assert parse_qsl(sent.form().decode()) == [
        ("chat_id", "5"),
        ("text", "hi"),
        ("link_preview_options", '{"is_disabled": true}'),
    ]
