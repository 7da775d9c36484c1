"""The human in the loop: the question put to the user, and what their answer allows.

The question is built from the plan's summary (API values in it are quoted), and it is asked only
about a token that `Confirmations.check` found valid. Above the typed-confirmation threshold the
user types the target or the item count instead of ticking a box, as GitHub asks for a
repository's name before deleting it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from pydantic import BaseModel, Field

from purgewarden.safety.plans import Refusal
from purgewarden.safety.text import quote


class HumanApproval(BaseModel):
    """A yes/no question (elicitation allows flat primitive fields only)."""

    approve: bool = Field(description="Yes, permanently carry this out. It cannot be undone.")


class TypedApproval(BaseModel):
    """A large blast radius: the user types what the question names."""

    confirmation: str = Field(description="Type exactly what the question asks for")


class NotAsked(BaseModel):
    """The resolver's answer when the user was not asked; `why` says whether that blocks the call."""

    why: str


CANNOT_ELICIT = "client cannot elicit"
TOKEN_REFUSED = "the token will be refused"
TOKEN_BUSY = "another call is asking about this token"

HumanAnswer = ElicitationResult[HumanApproval | TypedApproval | NotAsked]


@dataclass(frozen=True)
class Question:
    """What the user is asked about one plan; `expected` is set when they must type it."""

    summary: str
    expected: str | None = None
    expected_is_count: bool = False

    @property
    def message(self) -> str:
        if self.expected is None:
            return f"{self.summary} This cannot be undone. Approve?"
        what = "the number of items" if self.expected_is_count else "the target's name, without the quotes"
        return f"{self.summary} This cannot be undone. To approve, type {what}: {quote(self.expected)}"

    @property
    def schema(self) -> type[HumanApproval] | type[TypedApproval]:
        return HumanApproval if self.expected is None else TypedApproval

    def matches(self, typed: str) -> bool:
        answer = typed.strip()
        if self.expected_is_count:
            answer = answer.replace(",", "").replace("_", "").replace(" ", "")
            return answer == (self.expected or "").replace(",", "")
        return answer == self.expected


def was_asked(answer: HumanAnswer) -> bool:
    """Whether the user saw the question in this call (any answer), rather than not being asked."""
    return not (isinstance(answer, AcceptedElicitation) and isinstance(answer.data, NotAsked))


def refusal_for(answer: HumanAnswer, question: Question, *, require_human: bool, tool: str) -> Refusal | None:
    """None when the call may go ahead as far as the human is concerned."""
    nothing = "Nothing was deleted. Ask the user what they want to do instead."
    if not isinstance(answer, AcceptedElicitation):
        verb = "declined" if answer.action == "decline" else "cancelled"
        return Refusal("human_declined", f"Refused: the user {verb} the confirmation prompt. {nothing}")
    data = answer.data
    if isinstance(data, NotAsked):
        if data.why != CANNOT_ELICIT:
            return Refusal("human_not_asked", f"Refused: the user could not be asked ({data.why}). {nothing}")
        if require_human:
            return Refusal(
                "human_required",
                f"Refused: this server runs with --require-human and this client cannot ask the user to "
                f"approve {tool} (no elicitation support). Use a client that supports elicitation, or ask "
                "the operator.",
            )
        return None
    if isinstance(data, HumanApproval) and question.expected is None:
        return (
            None
            if data.approve
            else Refusal("human_declined", f"Refused: the user did not approve. {nothing}")
        )
    if (
        isinstance(data, TypedApproval)
        and question.expected is not None
        and question.matches(data.confirmation)
    ):
        return None
    return Refusal(
        "human_mistyped",
        f"Refused: the user's typed confirmation did not match what the question asked for. {nothing}",
    )
