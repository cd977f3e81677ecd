"""A supervisor's whisper and hand-back note, rephrased as words the agent says to the caller."""

from __future__ import annotations

import pytest

from agent.coaching import say_note, say_to_caller


@pytest.mark.parametrize(
    ("instruction", "said"),
    [
        # tell / let know / say / explain / confirm / mention that: the content, as a statement
        ("Tell them the fee is waived", "The fee is waived."),
        ("tell her that she is eligible for a refund", "You are eligible for a refund."),
        ("Tell the caller their order shipped today.", "Your order shipped today."),
        ("let them know they're on the priority list", "You're on the priority list."),
        ("Say that we close at six", "We close at six."),
        ('say "Sorry about the mix-up"', "Sorry about the mix-up."),
        ("Explain that the part is back-ordered", "The part is back-ordered."),
        ("Mention that shipping is free this week", "Shipping is free this week."),
        # tell about / mention X
        ("mention the spring sale", "I should also mention the spring sale."),
        ("tell him about the loyalty program", "I should also mention the loyalty program."),
        # offer
        ("Offer the caller a 10 percent discount", "I can offer you a 10 percent discount."),
        (
            "Offer the 10 percent loyalty discount",
            "I can offer you the 10 percent loyalty discount.",
        ),
        ("please offer them free express shipping.", "I can offer you free express shipping."),
        # ask
        ("Ask them for their order number", "Could I have your order number?"),
        ("ask him to confirm his address", "Could you confirm your address?"),
        ("ask them if they want a callback", "Can I ask if you want a callback?"),
        ("ask what time suits them", "Can I ask what time suits you?"),
        # apologize / thank
        ("Apologize for the wait", "I'm sorry for the wait."),
        ("apologise to the customer", "I'm sorry."),
        ("thank them for their patience", "Thank you for your patience."),
        # plain statements pass through
        ("The fee is waived", "The fee is waived."),
        ("Refund approved; it will arrive in 3 days", "Refund approved; it will arrive in 3 days."),
        ("The customer is a long-time member", "You are a long-time member."),
        # anything else is said, never dropped
        ("Be more patient", "Also: be more patient."),
        ("Escalate if they get angry", "Also: escalate if they get angry."),
        ("Free shipping today", "Also: free shipping today."),
        ("VIP pricing applies", "Also: VIP pricing applies."),
    ],
)
def test_a_whisper_is_said_for_the_caller(instruction: str, said: str) -> None:
    assert say_to_caller(instruction) == said


@pytest.mark.parametrize("blank", ["", "   ", '""'])
def test_a_blank_whisper_says_nothing(blank: str) -> None:
    assert say_to_caller(blank) == ""


@pytest.mark.parametrize(
    ("note", "said"),
    [
        ("Refund approved; it will arrive in 3 days", "Refund approved; it will arrive in 3 days."),
        ("free replacement on its way", "Free replacement on its way."),  # a fact, not "Also:"
        ("Tell them the refund is approved", "The refund is approved."),
        ("  The caller's account is unlocked.  ", "Your account is unlocked."),
        ("", ""),
    ],
)
def test_a_note_is_said_as_a_fact(note: str, said: str) -> None:
    assert say_note(note) == said
