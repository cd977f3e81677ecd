"""The knowledge base loader, the spoken-form parsers, and conversations over the real model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.knowledge import (
    SAMPLE_KB,
    KnowledgeBase,
    KnowledgeIndex,
    MiniLmEmbedder,
    load_knowledge_base,
)
from agent.numbers import parse_spoken_digits
from agent.responder import (
    Conversation,
    Reply,
    ReplyKind,
    SilenceOutcome,
    asks_for_person,
    parse_spoken_email,
    parse_yes_no,
    says_goodbye,
    speak_digits,
    speak_email,
)

# --- spoken forms --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [
        ("one two three four five", "12345"),
        ("twelve thirty four", "1234"),
        ("twelve thirty four five", "12345"),
        ("1 2 3 4 5", "12345"),
        ("12345", "12345"),
        ("one 2 three 4 five", "12345"),
        ("It's 1-2-3-4-5.", "12345"),
        ("my order number is 12,345", "12345"),
        ("five oh five", "505"),
        ("double seven three", "773"),
        ("double oh seven", "007"),
        ("zero zero seven", "007"),
        ("three hundred and five", "305"),
        ("one hundred twenty three", "123"),
        ("one twenty three", "123"),
        ("a hundred", "100"),
        ("twelve hundred", "1200"),
        ("twelve thousand three hundred forty five", "12345"),
        ("nineteen ninety nine", "1999"),
        ("twenty-four", "24"),
        ("uh one two um three", "123"),
        ("one to three for five", "12345"),
        ("Twelve. Thirty-four. Five.", "12345"),
    ],
)
def test_spoken_digits(spoken: str, digits: str) -> None:
    assert parse_spoken_digits(spoken) == digits


@pytest.mark.parametrize(
    "text", ["", "hello there", "i want to check my order", "oh hi", "for sure", "to be honest"]
)
def test_no_spoken_digits(text: str) -> None:
    assert parse_spoken_digits(text) is None


@pytest.mark.parametrize(
    ("spoken", "address"),
    [
        ("jane dot doe at example dot com", "jane.doe@example.com"),
        ("my email is jane dot doe at example dot com", "jane.doe@example.com"),
        ("It's jane.doe@example.com.", "jane.doe@example.com"),
        ("j a n e at gmail dot com", "jane@gmail.com"),
        ("sure it's bob99 at yahoo dot com", "bob99@yahoo.com"),
        ("john underscore smith at north dash wind dot co dot uk", "john_smith@north-wind.co.uk"),
        ("jane at example", None),
        ("i don't know", None),
    ],
)
def test_spoken_email(spoken: str, address: str | None) -> None:
    assert parse_spoken_email(spoken) == address


def test_spoken_forms_for_speech() -> None:
    assert speak_digits("12345") == "1 2 3 4 5"
    assert speak_email("jane.doe@example-shop.com") == "jane dot doe at example dash shop dot com"


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("yes", True),
        ("yeah that's right", True),
        ("Correct.", True),
        ("uh-huh", True),
        ("no", False),
        ("nope", False),
        ("that's not right", False),
        ("no, that's wrong", False),
        ("um", None),
        ("what", None),
    ],
)
def test_yes_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(text) is answer


@pytest.mark.parametrize(
    "text",
    [
        "can I talk to a person",
        "I want to speak to a representative.",
        "Operator.",
        "agent please",
        "representative representative",
        "let me talk to a human",
        "get me someone real",
        "I'd like to speak to a manager",
        "can I speak with somebody",
        "transfer me to customer service",
        "I want a real person",
        "reprehensive",
        "I'm not talking to a robot",
        "I don't want to talk to a machine",
    ],
)
def test_asks_for_person(text: str) -> None:
    assert asks_for_person(text)


@pytest.mark.parametrize(
    "text", ["what are your store hours", "can I return it in person", "in person", "my agent id"]
)
def test_does_not_ask_for_person(text: str) -> None:
    assert not asks_for_person(text)


def test_goodbye() -> None:
    assert says_goodbye("Goodbye!")
    assert says_goodbye("no that's all, thanks")
    assert says_goodbye("okay thanks bye")
    assert says_goodbye("no")
    assert not says_goodbye("thank you")
    assert not says_goodbye("is that all the information you have about returning online orders")
    # While the agent waits for an answer, "no" answers it.
    assert not says_goodbye("no", expecting_answer=True)
    assert says_goodbye("bye", expecting_answer=True)


# --- loading -------------------------------------------------------------------------------


def test_sample_kb_loads() -> None:
    kb = load_knowledge_base(SAMPLE_KB)
    assert kb.name == "Northwind Outfitters"
    assert kb.greeting.startswith("Thanks for calling Northwind")
    assert len(kb.entries) >= 20
    assert all(entry.alternates for entry in kb.entries)
    assert {p.id for p in kb.procedures} == {"order_status", "password_reset"}
    hours = kb.entry("stores-what-are-your-store-hours")
    assert "are you open on Sunday" in hours.alternates
    assert hours.answer.startswith("Our stores are open ten to eight")
    order = next(p for p in kb.procedures if p.id == "order_status")
    assert order.lookup is not None
    assert order.lookup.find("12345") == "on its way and should arrive Thursday"
    assert order.lookup.find("99999") is None


def _kb_with(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


_ENTRY = "entries:\n  - id: a\n    question: Q?\n    answer: A.\n"


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("kb.yaml", "entries: [\n", "not valid YAML"),
        ("kb.yaml", "- just a list\n", "top level must be a mapping"),
        ("kb.yaml", "greting: Hi\n" + _ENTRY, "unknown key.*greting"),
        ("kb.yaml", "entries:\n  - id: a\n    question: Q?\n", "'answer' is required"),
        ("kb.yaml", "entries:\n  - id: Bad Id\n    question: Q\n    answer: A\n", "id 'Bad Id'"),
        ("kb.yaml", _ENTRY + "  - id: a\n    question: R?\n    answer: B.\n", "already used"),
        (
            "kb.yaml",
            "entries:\n  - id: a\n    question: Q?\n    answer: See https://x.example/r\n",
            "a link",
        ),
        (
            "kb.yaml",
            "entries:\n  - id: a\n    question: Q?\n    answer: '**Yes**'\n",
            "Markdown",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: n, prompt: P, kind: phone}\n    done: D\n",
            "kind 'phone'",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: n, prompt: P, kind: digits}\n    done: D\n",
            "min_digits <= max_digits",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: n, prompt: P, kind: text}\n    done: Got {m}\n",
            r"unknown placeholder.*'m'",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    slots: []\n    done: D\n",
            "at least one trigger",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: n, prompt: P, kind: text}\n    done: D\n"
            "    lookup: {slot: x, field: f, table: {}, missing: M}\n",
            "slot 'x' is not one of",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: n, prompt: P, kind: text, sensitive: maybe}\n    done: D\n",
            "sensitive must be true or false",
        ),
        (
            "kb.yaml",
            "procedures:\n  - id: p\n    triggers: [t]\n    slots:\n"
            "      - {name: card, prompt: P, kind: digits, min_digits: 16, max_digits: 16,"
            " sensitive: true}\n    done: Card {card} saved.\n",
            "may not read back the sensitive slot 'card'",
        ),
        ("faq.md", "# FAQ\n\nno questions here\n", "no '## Question' headings"),
        ("faq.md", "## Is this answered?\n\n## Next?\n\nYes.\n", "line 1.*no answer"),
    ],
)
def test_loader_rejects_malformed_files(tmp_path: Path, name: str, text: str, problem: str) -> None:
    folder = _kb_with(tmp_path, name, text)
    with pytest.raises(ValueError, match=problem) as caught:
        load_knowledge_base(folder)
    assert name in str(caught.value)


def test_loader_rejects_missing_or_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_knowledge_base(tmp_path / "nope")
    with pytest.raises(ValueError, match=r"no \.yaml or \.md files"):
        load_knowledge_base(tmp_path)
    (tmp_path / "kb.yaml").write_text("name: Empty\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no entries and no procedures"):
        load_knowledge_base(tmp_path)


def test_loader_rejects_a_setting_given_twice(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("greeting: Hi.\n" + _ENTRY, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("greeting: Hello.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"b\.yaml.*'greeting' is already set in a\.yaml"):
        load_knowledge_base(tmp_path)


# --- conversations over the real model ----------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> MiniLmEmbedder:
    return MiniLmEmbedder(threads=1)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return load_knowledge_base(SAMPLE_KB)


@pytest.fixture(scope="module")
def index(kb: KnowledgeBase, embedder: MiniLmEmbedder) -> KnowledgeIndex:
    return KnowledgeIndex(kb, embedder)


class Call:
    """A conversation plus the replies so far, so a test reads like a call script."""

    def __init__(self, conversation: Conversation) -> None:
        self.conversation = conversation

    def say(self, text: str) -> Reply:
        return self.conversation.respond(text)

    def key(self, digits: str) -> Reply | None:
        reply = None
        for digit in digits:
            reply = self.conversation.dtmf(digit) or reply
        return reply


@pytest.fixture
def call(kb: KnowledgeBase, index: KnowledgeIndex, embedder: MiniLmEmbedder) -> Call:
    return Call(Conversation(kb, index, embedder))


def test_embedder_returns_normalised_float32(embedder: MiniLmEmbedder) -> None:
    vectors = embedder.embed(["where is my order", "what are your hours"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_greeting(call: Call, kb: KnowledgeBase) -> None:
    reply = call.conversation.greeting()
    assert reply.kind is ReplyKind.GREETING
    assert reply.text == kb.greeting


@pytest.mark.parametrize(
    ("question", "entry_id"),
    [
        ("what's your return policy", "return_policy"),
        ("how long does it take to get my stuff", "shipping_time"),
        ("what time do you guys close tonight", "stores-what-are-your-store-hours"),
        ("are you open on christmas day", "stores-are-you-open-on-holidays"),
        ("when am i getting my money back", "refund_time"),
        ("do you take paypal", "payment_methods"),
        ("how much is left on my gift card", "gift_card_balance"),
        ("i got charged two times", "billing_charge"),
        ("my zipper is broken", "warranty"),
        ("can i pay over time", "installments"),
        ("uh yeah hi um i wanted to ask about returning something", "return_policy"),
        ("hi there i was wondering if you guys do free delivery", "shipping_cost"),
    ],
)
def test_paraphrases_get_the_right_answer(call: Call, question: str, entry_id: str) -> None:
    reply = call.say(question)
    assert (reply.kind, reply.entry_id) == (ReplyKind.ANSWER, entry_id)
    assert reply.confidence >= 0.6


@pytest.mark.parametrize(
    "turns",
    [
        ("what's the weather like tomorrow", "can you book me a flight to paris"),
        ("asdf qwer zxcv", "blah blah blah"),
        ("¿dónde está mi pedido?", "je voudrais parler de ma commande"),
    ],
)
def test_off_topic_clarifies_then_hands_off(call: Call, turns: tuple[str, str]) -> None:
    first = call.say(turns[0])
    assert first.kind is ReplyKind.CLARIFY
    assert first.text.endswith("?")
    second = call.say(turns[1])
    assert (second.kind, second.handoff_reason) == (ReplyKind.HANDOFF, "repeated_misunderstanding")


def test_a_near_miss_names_the_closest_topic_and_yes_takes_it(call: Call) -> None:
    first = call.say("i saw it for less at rei will you match that")
    assert first.kind is ReplyKind.CLARIFY
    assert "price matching" in first.text
    second = call.say("yes")
    assert (second.kind, second.entry_id) == (ReplyKind.ANSWER, "price_match")


def test_an_answer_resets_the_miss_count(call: Call) -> None:
    assert call.say("tell me a joke").kind is ReplyKind.CLARIFY
    assert call.say("what's your return policy").kind is ReplyKind.ANSWER
    assert call.say("who won the game last night").kind is ReplyKind.CLARIFY


@pytest.mark.parametrize(
    "text",
    [
        "can I talk to a person",
        "I'd like to speak to your manager please",
        "representative",
        "is there a real person i can talk to",
        "can i talk to an asian",  # Whisper's hearing of "an agent"
    ],
)
def test_asking_for_a_person_hands_off(call: Call, text: str) -> None:
    reply = call.say(text)
    assert (reply.kind, reply.handoff_reason) == (ReplyKind.HANDOFF, "caller_asked")


def test_asking_about_the_bot_is_answered_not_handed_off(call: Call) -> None:
    reply = call.say("are you a robot")
    assert (reply.kind, reply.entry_id) == (ReplyKind.ANSWER, "automated_assistant")


def test_goodbye_ends_the_call(call: Call) -> None:
    assert call.say("thank you").kind is ReplyKind.ANSWER
    reply = call.say("no that's all, bye")
    assert reply.kind is ReplyKind.GOODBYE
    assert reply.end_call


@pytest.mark.parametrize(
    "spoken", ["one two three four five", "twelve thirty four five", "1 2 3 4 5", "one 2 three 45"]
)
def test_order_status_with_spoken_digits(call: Call, spoken: str) -> None:
    start = call.say("where's my order")
    assert (start.kind, start.entry_id) == (ReplyKind.PROCEDURE_PROMPT, "order_status")
    confirm = call.say(spoken)
    assert confirm.kind is ReplyKind.PROCEDURE_PROMPT
    assert "1 2 3 4 5" in confirm.text
    done = call.say("yes")
    assert done.kind is ReplyKind.PROCEDURE_DONE
    assert done.text.startswith("Order 1 2 3 4 5 is on its way and should arrive Thursday.")


def test_a_fork_answers_without_touching_the_original(call: Call) -> None:
    call.say("where's my order")
    fork = call.conversation.fork()
    confirm = fork.respond("one two three four five")  # the fork moves on to the confirmation
    assert "1 2 3 4 5" in confirm.text
    fork.dtmf("9")
    # The original is still waiting for the order number, with nothing keyed.
    again = call.say("six seven eight nine zero")
    assert again.kind is ReplyKind.PROCEDURE_PROMPT and "6 7 8 9 0" in again.text
    # And the fork, adopted, carries on from its own state.
    assert fork.respond("yes").kind is ReplyKind.PROCEDURE_DONE
    assert call.conversation.active_procedure == "order_status"


def test_order_status_with_dtmf(call: Call) -> None:
    call.say("can you check on my order")
    assert call.key("2468") is None
    confirm = call.key("0")
    assert confirm is not None and "2 4 6 8 0" in confirm.text
    done = call.say("yeah")
    assert done.kind is ReplyKind.PROCEDURE_DONE
    assert "being packed" in done.text


def test_order_status_checks_length_and_takes_corrections(call: Call) -> None:
    call.say("has my order shipped yet")
    short = call.key("123#")
    assert short is not None and short.kind is ReplyKind.PROCEDURE_PROMPT
    assert "3 digits" in short.text and "5" in short.text
    assert "1 2 3 4 6" in call.say("one two three four six").text
    assert "1 3 5 7 9" in call.say("no it's one three five seven nine").text
    done = call.say("yes")
    assert done.kind is ReplyKind.PROCEDURE_DONE
    assert "delivered" in done.text


def test_order_status_for_an_unknown_order(call: Call) -> None:
    call.say("where is my package")
    call.say("nine nine nine nine nine")
    done = call.say("correct")
    assert done.kind is ReplyKind.PROCEDURE_DONE
    assert done.text.startswith("I couldn't find order 9 9 9 9 9.")


def test_a_no_at_the_confirmation_asks_again(call: Call) -> None:
    call.say("where's my order")
    call.say("one two three four five")
    again = call.say("no")
    assert again.kind is ReplyKind.PROCEDURE_PROMPT
    assert "order number" in again.text


def test_password_reset(call: Call) -> None:
    start = call.say("i forgot my password")
    assert (start.kind, start.entry_id) == (ReplyKind.PROCEDURE_PROMPT, "password_reset")
    confirm = call.say("it's jane dot doe at example dot com")
    assert "jane dot doe at example dot com" in confirm.text
    done = call.say("yes that's right")
    assert done.kind is ReplyKind.PROCEDURE_DONE
    assert "reset link" in done.text


def test_procedures_can_be_cancelled(call: Call) -> None:
    call.say("I can't log in to my account")
    assert call.conversation.active_procedure == "password_reset"
    cancelled = call.say("never mind")
    assert cancelled.kind is ReplyKind.PROCEDURE_CANCELLED
    assert call.conversation.active_procedure is None
    assert call.say("what are your store hours").kind is ReplyKind.ANSWER


def test_another_question_mid_procedure_is_answered(call: Call) -> None:
    call.say("where's my order")
    reply = call.say("actually what's your return policy")
    assert (reply.kind, reply.entry_id) == (ReplyKind.ANSWER, "return_policy")
    assert call.conversation.active_procedure is None


@pytest.mark.parametrize(
    "opening",
    [
        "My order number is... Um. 1, 2, 3, 4, 5",  # Whisper's text of a hesitant caller
        "where is my order 12345",
        "is my order one two three four five here yet",
    ],
)
def test_an_order_number_given_with_the_question_is_not_asked_for_again(
    call: Call, opening: str
) -> None:
    confirm = call.say(opening)
    assert (confirm.kind, confirm.entry_id) == (ReplyKind.PROCEDURE_PROMPT, "order_status")
    assert confirm.text == "I heard order 1 2 3 4 5. Is that right?"
    assert call.say("yes").text.startswith("Order 1 2 3 4 5 is on its way")


def test_another_question_at_the_confirmation_is_answered(call: Call) -> None:
    assert call.say("my order number is 12345").text.endswith("Is that right?")
    reply = call.say("How much does shipping cost?")
    assert (reply.kind, reply.entry_id) == (ReplyKind.ANSWER, "shipping_cost")
    assert reply.understood and call.conversation.active_procedure is None


def test_a_number_of_the_wrong_length_in_the_question_is_asked_for(call: Call) -> None:
    start = call.say("where is order 123")
    assert (start.kind, start.entry_id) == (ReplyKind.PROCEDURE_PROMPT, "order_status")
    assert "five digit order number" in start.text


def test_replies_say_whether_the_caller_was_understood(call: Call) -> None:
    assert call.say("what's your return policy").understood
    assert not call.say("tell me a joke").understood  # a clarifying question
    call.say("where's my order")
    assert not call.say("hmm").understood  # a slot retry
    assert call.say("one two three four five").understood
    assert call.say("cancel that").understood
    assert not call.say("tell me a joke").understood
    handoff = call.say("who won the game last night")  # the second miss in a row
    assert handoff.handoff_reason == "repeated_misunderstanding" and not handoff.understood
    assert call.say("can I talk to a person").understood


def test_repeated_bad_slot_input_hands_off(call: Call) -> None:
    call.say("where's my order")
    assert call.say("uh I'm not sure").kind is ReplyKind.PROCEDURE_PROMPT
    assert call.say("hmm").kind is ReplyKind.PROCEDURE_PROMPT
    reply = call.say("I don't know it")
    assert (reply.kind, reply.handoff_reason) == (ReplyKind.HANDOFF, "repeated_misunderstanding")


def test_dtmf_zero_hands_off_only_outside_a_procedure(call: Call) -> None:
    assert call.key("5") is None
    reply = call.key("0")
    assert reply is not None
    assert (reply.kind, reply.handoff_reason) == (ReplyKind.HANDOFF, "dtmf_0")


@pytest.mark.parametrize(
    ("outcome", "kind"), [("handoff", ReplyKind.HANDOFF), ("goodbye", ReplyKind.GOODBYE)]
)
def test_silence_reprompts_then_ends(
    kb: KnowledgeBase,
    index: KnowledgeIndex,
    embedder: MiniLmEmbedder,
    outcome: SilenceOutcome,
    kind: ReplyKind,
) -> None:
    conversation = Conversation(kb, index, embedder, silence_outcome=outcome)
    prompt = conversation.respond("where's my order")
    first = conversation.silence()
    assert first.kind is ReplyKind.REPROMPT
    assert first.text.endswith(prompt.text)
    second = conversation.silence()
    assert second.kind is kind
    assert second.end_call is (outcome == "goodbye")
    if outcome == "handoff":
        assert second.handoff_reason == "no_response"


def test_speech_between_silences_starts_the_count_again(call: Call) -> None:
    assert call.conversation.silence().kind is ReplyKind.REPROMPT
    call.say("what's your return policy")
    assert call.conversation.silence().kind is ReplyKind.REPROMPT


def test_text_and_yes_no_slots(tmp_path: Path, embedder: MiniLmEmbedder) -> None:
    (tmp_path / "kb.yaml").write_text(
        "procedures:\n"
        "  - id: callback\n"
        "    triggers: [please call me back later]\n"
        "    slots:\n"
        "      - {name: topic, kind: text, prompt: 'What should we call about?'}\n"
        "      - {name: urgent, kind: yes_no, prompt: 'Is it urgent?'}\n"
        "    done: Noted, {topic}, urgent {urgent}.\n",
        encoding="utf-8",
    )
    kb = load_knowledge_base(tmp_path)
    conversation = Conversation(kb, KnowledgeIndex(kb, embedder), embedder)
    assert conversation.respond("can you call me back later").kind is ReplyKind.PROCEDURE_PROMPT
    assert conversation.respond("my tent order").text == "Is it urgent?"
    unclear = conversation.respond("hmm")
    assert unclear.kind is ReplyKind.PROCEDURE_PROMPT
    done = conversation.respond("nope")
    assert done.text == "Noted, my tent order, urgent no."


def test_a_supervisors_note_answers_the_callers_own_question_over_the_policy(call: Call) -> None:
    back = call.conversation.resume("Refund approved; it will arrive in 3 days")
    assert back.kind is ReplyKind.RESUME
    assert back.text.endswith("Refund approved; it will arrive in 3 days.")
    note = call.say("When will my refund arrive?")
    assert note.kind is ReplyKind.NOTE, note
    assert note.text == "Refund approved; it will arrive in 3 days."
    # The line's general answers still answer general questions.
    assert call.say("How much does shipping cost?").entry_id == "shipping_cost"


# --- another question, a follow-up -------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Sorry, wait, I have a different question.",
        "Actually, can I ask about something else?",
        "I have a question.",
        "hold on, I've got another question",
        "Okay, alright Wait, I have a different question.",  # Whisper's "Sorry, wait, …"
        "Sorry, way, I have a different question.",  # a stray word is no question
    ],
)
def test_another_question_is_invited(call: Call, text: str) -> None:
    reply = call.say(text)
    assert reply.kind is ReplyKind.INVITE and reply.understood
    assert reply.text == "Sure. Go ahead, what's your question?"


def test_another_question_leaves_a_procedure_without_a_miss(call: Call) -> None:
    assert call.say("Where is my order?").kind is ReplyKind.PROCEDURE_PROMPT
    reply = call.say("Sorry, wait, I have a different question.")
    assert reply.kind is ReplyKind.INVITE
    assert reply.text.startswith("Sure, we can leave that for now.")
    assert call.conversation.active_procedure is None and call.conversation.misses == 0
    assert call.say("What are your store hours?").kind is ReplyKind.ANSWER


def test_another_question_said_at_once_is_answered(call: Call) -> None:
    reply = call.say("I have a question about returns, how do I send a jacket back?")
    assert reply.kind is ReplyKind.ANSWER and "return" in reply.text.lower()
    reply = call.say("Where is my order? I have another question")
    assert reply.kind is ReplyKind.PROCEDURE_PROMPT  # the question came first


def test_never_mind_with_a_new_question_cancels_and_answers(call: Call) -> None:
    call.say("Where is my order?")
    reply = call.say("Actually never mind, what are your store hours?")
    assert reply.kind is ReplyKind.ANSWER
    assert reply.text.startswith("Okay, I've cancelled that. Our stores are open")
    assert call.conversation.active_procedure is None


def test_a_follow_up_uses_the_previous_question(call: Call) -> None:
    first = call.say("What are your store hours?")
    assert first.kind is ReplyKind.ANSWER
    again = call.say("And on Sunday?")
    assert again.kind is ReplyKind.ANSWER and again.entry_id == first.entry_id
    # A follow-up that is a question of its own is answered as itself.
    other = call.say("what about returns?")
    assert other.kind is ReplyKind.ANSWER and other.entry_id != first.entry_id


def test_a_follow_up_leans_on_the_last_answer_even_when_both_were_misheard(call: Call) -> None:
    # Whisper's words for "What are your store hours?" … "And on Sunday?" in one test run.
    first = call.say("What are your story hours?")
    assert first.kind is ReplyKind.ANSWER
    again = call.say("And on Sunday.")
    assert again.kind is ReplyKind.ANSWER and again.entry_id == first.entry_id


def test_a_follow_up_with_nothing_before_is_an_ordinary_miss(call: Call) -> None:
    assert call.say("And on Sunday?").kind is ReplyKind.CLARIFY


def test_a_whole_number_for_a_digits_slot_is_marked_taken(call: Call) -> None:
    call.say("Where is my order?")
    partial = call.say("one two three")
    assert not partial.number_taken  # 3 of 5 digits: more may be coming
    whole = call.say("one two three four five")
    assert whole.number_taken and whole.understood
    assert not call.say("What are your store hours?").number_taken


def test_a_number_stated_with_the_request_is_marked_taken(call: Call) -> None:
    reply = call.say("Where is my order, it's one two three four five")
    assert reply.number_taken, reply


# --- "say that again" ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Can you repeat that?",
        "Sorry, what did you say?",
        "Say that again please.",
        "Pardon?",
        "I didn't catch that.",
        "Could you say it a bit slower?",
    ],
)
def test_asking_to_hear_it_again_repeats_the_last_words(call: Call, text: str) -> None:
    answer = call.say("What are your store hours?")
    assert answer.kind is ReplyKind.ANSWER
    again = call.say(text)
    assert again.kind is ReplyKind.REPEAT and again.understood
    assert again.text == f"Sure. {answer.text}"
    assert call.conversation.misses == 0


def test_a_repeat_inside_a_procedure_asks_the_same_thing_and_keeps_it_open(call: Call) -> None:
    prompt = call.say("Where is my order?")
    assert prompt.kind is ReplyKind.PROCEDURE_PROMPT
    again = call.say("Can you repeat that?")
    assert again.text == f"Sure. {prompt.text}"
    assert call.conversation.active_procedure is not None
    twice = call.say("Sorry, one more time?")
    assert twice.text == f"Sure. {prompt.text}"  # not "Sure. Sure. ..."


def test_a_question_that_mentions_repeating_is_not_a_repeat(call: Call) -> None:
    reply = call.say("How do I return an item I bought online? I don't want to repeat an order.")
    assert reply.kind is not ReplyKind.REPEAT


# --- small talk ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lead"),
    [
        ("How are you?", "I'm doing well, thanks for asking."),
        ("Hi there, how are you doing?", "Hello! I'm doing well, thanks."),
        ("Good morning.", "Hello!"),
    ],
)
def test_small_talk_gets_a_word_and_then_the_call_goes_on(call: Call, text: str, lead: str) -> None:
    reply = call.say(text)
    assert reply.kind is ReplyKind.SMALL_TALK and reply.understood
    assert reply.text.startswith(lead) and reply.text.endswith("How can I help you today?")
    assert call.conversation.misses == 0


def test_small_talk_inside_a_procedure_asks_its_question_again(call: Call) -> None:
    prompt = call.say("Where is my order?")
    assert prompt.kind is ReplyKind.PROCEDURE_PROMPT
    reply = call.say("Oh, how are you doing today?")
    assert reply.kind is ReplyKind.SMALL_TALK and reply.text.endswith(prompt.text)
    assert call.conversation.active_procedure is not None


def test_a_greeting_before_a_question_is_the_question(call: Call) -> None:
    reply = call.say("Hi, what are your store hours?")
    assert reply.kind is ReplyKind.ANSWER and "saturday" in reply.text.lower()


def test_a_sensitive_slot_is_flagged_while_asked_and_its_value_never_leaves(
    tmp_path: Path, embedder: MiniLmEmbedder
) -> None:
    (tmp_path / "kb.yaml").write_text(
        "procedures:\n"
        "  - id: card\n"
        "    triggers: [update the card on my account]\n"
        "    slots:\n"
        "      - {name: card_number, kind: digits, min_digits: 16, max_digits: 16,"
        " sensitive: true, prompt: 'Please key in the card number.'}\n"
        "      - {name: zip, kind: digits, min_digits: 5, max_digits: 5,"
        " prompt: 'And the billing zip code?'}\n"
        "    done: Thanks, the card is updated.\n",
        encoding="utf-8",
    )
    kb = load_knowledge_base(tmp_path)
    call = Call(Conversation(kb, KnowledgeIndex(kb, embedder), embedder))
    assert call.conversation.collecting_sensitive is False
    asked = call.say("I want to update the card on my account")
    assert asked.text == "Please key in the card number."
    assert call.conversation.collecting_sensitive is True  # from the question on
    zip_asked = call.key("4532015112830366")
    assert zip_asked is not None and zip_asked.text == "And the billing zip code?"
    assert call.conversation.collecting_sensitive is False  # the zip code is no secret
    done = call.say("nine four one zero five")
    assert done.text == "Thanks, the card is updated."
    assert call.conversation.facts == {"zip": "94105"}  # the card number is not a fact
