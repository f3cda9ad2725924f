"""The outreach decision: what, if anything, to tell a customer now. Pure: data in, data out.

:func:`assess` follows Leap's guide on one snapshot (docs/outreach.md has the full table):

1. ``connection_status``: COMPLETED needs nothing (ever again); NOT_STARTED: resend the link; PARTIAL and
   ERROR: go on to the utilities; a status this version does not know: nothing (suppressed, audited).
2. The utilities that must reach CONNECTED (:func:`pending_utilities`): one in ERROR gets a message
   tailored to its ``error_code`` (a generic one for a code we have never seen), else one NOT_CONNECTED
   (or in a status we do not know) gets "finish connecting". A residential customer who connected a
   utility other than the one asked for (:func:`connected_other_utility`) is the "other utility" case:
   no message unless the policy says so.
3. Once they are all CONNECTED, the agreements: NOT_REQUIRED is ignored, a done status counts as signed,
   any other value asks the customer to sign.

:func:`decide` adds time and history: act only once the last interaction is ``actionable_delay`` old
(else defer), never after completion, never twice for the same state from events, not within the
cooldown of the previous message, at most ``max_attempts`` messages per customer, and a customer in
the measurement holdout (:func:`in_holdout`) gets a first message ``holdout`` later than the others.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from leap_tracker.config import Settings
from leap_tracker.leap import wire
from leap_tracker.outreach import ledger
from leap_tracker.timeutil import parse_instant

Entry = Mapping[str, Any]
Utility = Mapping[str, Any]

# --- reasons: stable strings, part of the public contract (audit events, templates, ledger keys) ---
NOT_STARTED = "not_started"
UTILITY_NOT_CONNECTED = "utility_not_connected"
UTILITY_ERROR_PREFIX = "utility_error."
UTILITY_ERROR_UNKNOWN = UTILITY_ERROR_PREFIX + "unknown"
AGREEMENT_PENDING = "agreement_pending"
OTHER_UTILITY = "other_utility"


def utility_error_reason(error_code: str | None) -> str:
    """``utility_error.<CODE>`` for a known code; ``utility_error.unknown`` for any other (or none)."""
    if error_code in wire.KNOWN_ERROR_CODES:
        return UTILITY_ERROR_PREFIX + str(error_code)
    return UTILITY_ERROR_UNKNOWN


ALL_REASONS: tuple[str, ...] = (
    NOT_STARTED,
    UTILITY_NOT_CONNECTED,
    *sorted(utility_error_reason(code) for code in wire.KNOWN_ERROR_CODES),
    UTILITY_ERROR_UNKNOWN,
    AGREEMENT_PENDING,
    OTHER_UTILITY,
)


# A message due with no channel configured is looked at again this much later (the sweep is hourly).
NO_CHANNEL_RETRY = timedelta(hours=1)


class Because(StrEnum):
    """Why no message was sent (``outreach.suppressed`` carries it as ``suppressed_because``)."""

    COMPLETED = "completed"  # the customer completed: nothing, ever again
    NOTHING_OUTSTANDING = "nothing_outstanding"  # PARTIAL/ERROR yet every step is done (Leap lags)
    UNKNOWN_CONNECTION_STATUS = "unknown_connection_status"
    OTHER_UTILITY = "other_utility"  # residential, connected another utility; OUTREACH_NOTIFY_OTHER_UTILITY
    ALREADY_SENT = "already_sent"  # this state was already messaged (duplicate, redelivery, replay)
    MAX_ATTEMPTS = "max_attempts"
    COOLDOWN = "cooldown"
    NO_CHANNEL = "no_channel"  # a message was due but no channel is configured
    SNAPSHOT_MISSING = "snapshot_missing"  # the event's connection is not in the table
    HOLDOUT = "holdout"  # in the measurement holdout: the first message goes holdout later


class CustomerKind(StrEnum):
    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"


class Trigger(StrEnum):
    EVENT = "event"  # a change event from the queue: may send the first message for a state
    FOLLOW_UP = "follow_up"  # the hourly sweep of due customers: may also send reminders


class Action(StrEnum):
    SEND = "send"
    SUPPRESS = "suppress"
    DEFER = "defer"


_DEFAULTS = Settings()  # the policy's defaults are the configuration's, written once in config.py


@dataclass(frozen=True, slots=True)
class OutreachPolicy:
    actionable_delay: timedelta = timedelta(minutes=_DEFAULTS.actionable_delay_minutes)
    cooldown: timedelta = timedelta(hours=_DEFAULTS.outreach.cooldown_hours)
    max_attempts: int = _DEFAULTS.outreach.max_attempts
    notify_other_utility: bool = _DEFAULTS.outreach.notify_other_utility
    agreement_done_statuses: frozenset[str] = _DEFAULTS.agreement_done_statuses
    holdout_percent: int = _DEFAULTS.outreach.holdout_percent
    holdout: timedelta = timedelta(hours=_DEFAULTS.outreach.holdout_hours)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutreachPolicy:
        return cls(
            actionable_delay=timedelta(minutes=settings.actionable_delay_minutes),
            cooldown=timedelta(hours=settings.outreach.cooldown_hours),
            max_attempts=settings.outreach.max_attempts,
            notify_other_utility=settings.outreach.notify_other_utility,
            agreement_done_statuses=settings.agreement_done_statuses,
            holdout_percent=settings.outreach.holdout_percent,
            holdout=timedelta(hours=settings.outreach.holdout_hours),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The stored connection snapshot: the entry as Leap sent it, its content hash and sequence."""

    entry: Entry
    content_hash: str
    sequence: int

    @property
    def entry_id(self) -> str:
        return str(self.entry[wire.ENTRY_ID])

    @property
    def ref_id(self) -> str:
        return str(self.entry[wire.ENTRY_REF_ID])

    @property
    def last_interaction(self) -> datetime:
        return parse_instant(self.entry[wire.ENTRY_LAST_INTERACTION])


@dataclass(frozen=True, slots=True)
class History:
    """What outreach remembers of one customer (the state item; all defaults when never contacted)."""

    attempts: int = 0  # messages sent, all reasons
    last_sent_at: datetime | None = None
    last_reason: str | None = None
    last_state: str | None = None  # content hash of the snapshot the last message was about
    state_sends: int = 0  # messages sent for (last_reason, last_state): 1 + reminders
    completed_at: datetime | None = None
    follow_up_at: datetime | None = None  # when the sweep looks at this customer again


@dataclass(frozen=True, slots=True)
class Need:
    """What the guide's steps say one snapshot needs, before time and history are considered."""

    kind: CustomerKind
    reason: str | None  # None: no message (``because`` says why)
    because: Because | None = None
    utility: Utility | None = None  # the utility the message is about
    pending_utilities: tuple[Utility, ...] = ()  # every utility still to connect
    pending_agreements: tuple[str, ...] = ()  # agreement field names still to sign
    other_utility: Utility | None = None  # the not-asked-for utility the customer connected


@dataclass(frozen=True, slots=True)
class FollowUpChange:
    """Move the customer's next sweep to ``at`` (None: take the customer out of the sweep)."""

    at: datetime | None
    create: bool = False  # also for a customer outreach has stored nothing for yet


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    need: Need
    because: Because | None = None  # SUPPRESS
    until: datetime | None = None  # DEFER: when the snapshot becomes actionable
    dedupe_key: str | None = None  # SEND
    attempt: int | None = None  # SEND: 1 for the first message to this customer
    state_sends: int | None = None  # SEND: 1 for the first message about this state, 2+ for reminders
    next_attempt_at: datetime | None = None  # SUPPRESS(COOLDOWN): when a message may go
    follow_up: FollowUpChange | None = None  # None: leave the sweep schedule as it is
    mark_completed: bool = False


# --- step 2 helpers -------------------------------------------------------------------------------


def _utilities(entry: Entry) -> list[Utility]:
    return [u for u in entry.get(wire.ENTRY_UTILITY_CONNECTIONS) or [] if isinstance(u, Mapping)]


def _is_required(utility: Utility) -> bool:
    return utility.get(wire.UTILITY_IS_REQUIRED) is True


def _is_connected(utility: Utility) -> bool:
    return utility.get(wire.UTILITY_STATUS) == wire.UTILITY_CONNECTED


def required_utilities(entry: Entry) -> list[Utility]:
    """The utilities the Connect URL asked for (``utility_is_required``)."""
    return [u for u in _utilities(entry) if _is_required(u)]


def customer_kind(entry: Entry) -> CustomerKind:
    """Leap's entry carries no classification, so infer it: more than one required utility = commercial.

    A residential customer has one utility (the one asked for); a commercial customer may have to
    connect several, and then every required one must reach CONNECTED.
    """
    return CustomerKind.COMMERCIAL if len(required_utilities(entry)) > 1 else CustomerKind.RESIDENTIAL


def connected_other_utility(entry: Entry) -> Utility | None:
    """The "other utility" case: a residential customer connected a utility that was not asked for
    while the one asked for is not connected. Leap keeps such an entry PARTIAL; the customer may have
    no meter in the requested utility's territory, so by default nobody is messaged."""
    required = required_utilities(entry)
    if len(required) != 1 or _is_connected(required[0]):
        return None
    return next((u for u in _utilities(entry) if not _is_required(u) and _is_connected(u)), None)


def pending_utilities(entry: Entry) -> list[Utility]:
    """The utilities still to connect: the required ones not CONNECTED. When the URL asked for none,
    any one connected utility is enough; until then every listed utility is a candidate."""
    required = required_utilities(entry)
    if required:
        return [u for u in required if not _is_connected(u)]
    listed = _utilities(entry)
    return [] if any(_is_connected(u) for u in listed) else listed


def pending_agreements(entry: Entry, done_statuses: frozenset[str]) -> tuple[str, ...]:
    """Agreements awaiting the customer: neither NOT_REQUIRED nor done (null/absent counts as absent)."""
    agreements = entry.get(wire.ENTRY_AGREEMENTS) or {}
    if not isinstance(agreements, Mapping):
        return ()
    return tuple(
        sorted(
            name
            for name, status in agreements.items()
            if status and status != wire.AGREEMENT_NOT_REQUIRED and status not in done_statuses
        )
    )


# --- the decision ---------------------------------------------------------------------------------


def assess(entry: Entry, done_statuses: frozenset[str] = wire.DEFAULT_AGREEMENT_DONE_STATUSES) -> Need:
    """Steps 1-3 of Leap's guide on one snapshot."""
    kind = customer_kind(entry)
    status = entry.get(wire.ENTRY_CONNECTION_STATUS)
    if status == wire.CONNECTION_COMPLETED:
        return Need(kind, None, Because.COMPLETED)
    if status == wire.CONNECTION_NOT_STARTED:
        return Need(kind, NOT_STARTED)
    if status not in (wire.CONNECTION_PARTIAL, wire.CONNECTION_ERROR):
        return Need(kind, None, Because.UNKNOWN_CONNECTION_STATUS)

    if not _utilities(entry):  # clicked, picked no utility yet: like NOT_STARTED, finish connecting
        return Need(kind, UTILITY_NOT_CONNECTED)
    other = connected_other_utility(entry)
    if other is not None:
        return Need(kind, OTHER_UTILITY, utility=required_utilities(entry)[0], other_utility=other)
    pending = tuple(pending_utilities(entry))
    if pending:
        failed = [u for u in pending if u.get(wire.UTILITY_STATUS) == wire.UTILITY_ERROR]
        if failed:
            primary = failed[0]
            reason = utility_error_reason(primary.get(wire.UTILITY_ERROR_CODE))
            return Need(kind, reason, utility=primary, pending_utilities=pending)
        return Need(kind, UTILITY_NOT_CONNECTED, utility=pending[0], pending_utilities=pending)

    agreements = pending_agreements(entry, done_statuses)
    if agreements:
        return Need(kind, AGREEMENT_PENDING, pending_agreements=agreements)
    return Need(kind, None, Because.NOTHING_OUTSTANDING)


def decide(
    snapshot: Snapshot, history: History, policy: OutreachPolicy, now: datetime, trigger: Trigger
) -> Decision:
    """What to do for this customer now, on the CURRENT snapshot (never on a possibly stale event)."""
    need = assess(snapshot.entry, policy.agreement_done_statuses)
    sweeping = trigger is Trigger.FOLLOW_UP

    if need.because is Because.COMPLETED or history.completed_at is not None:
        return Decision(
            Action.SUPPRESS,
            need,
            because=Because.COMPLETED,
            follow_up=_follow_up(history, None),
            mark_completed=history.completed_at is None,
        )

    actionable_at = snapshot.last_interaction + policy.actionable_delay
    if now < actionable_at:
        # The sweep has no message to put back on a queue: it looks again when the entry is actionable.
        change = _follow_up(history, actionable_at) if sweeping else None
        return Decision(Action.DEFER, need, until=actionable_at, follow_up=change)

    if need.reason is None or (need.reason == OTHER_UTILITY and not policy.notify_other_utility):
        # Nothing to say for now; a later change event brings the customer back.
        because = need.because or Because.OTHER_UTILITY
        return Decision(Action.SUPPRESS, need, because=because, follow_up=_clear_if(sweeping, history))

    release_at = holdout_release(snapshot, need.reason, history, policy, actionable_at)
    if release_at is not None and now < release_at:
        change = None if history.follow_up_at == release_at else FollowUpChange(release_at, create=True)
        return Decision(
            Action.SUPPRESS, need, because=Because.HOLDOUT, next_attempt_at=release_at, follow_up=change
        )

    same_state = (history.last_reason, history.last_state) == (need.reason, snapshot.content_hash)
    if same_state and not sweeping:
        return Decision(Action.SUPPRESS, need, because=Because.ALREADY_SENT)
    if history.attempts >= policy.max_attempts:
        return Decision(
            Action.SUPPRESS, need, because=Because.MAX_ATTEMPTS, follow_up=_follow_up(history, None)
        )
    if history.last_sent_at is not None and now < history.last_sent_at + policy.cooldown:
        next_at = history.last_sent_at + policy.cooldown
        return Decision(
            Action.SUPPRESS,
            need,
            because=Because.COOLDOWN,
            next_attempt_at=next_at,
            follow_up=_follow_up(history, next_at),
        )

    state_sends = history.state_sends + 1 if same_state else 1
    attempt = history.attempts + 1
    return Decision(
        Action.SEND,
        need,
        dedupe_key=ledger.dedupe_key(need.reason, snapshot.content_hash, state_sends),
        attempt=attempt,
        state_sends=state_sends,
        follow_up=FollowUpChange(now + policy.cooldown if attempt < policy.max_attempts else None),
    )


def in_holdout(entry_id: str, reason: str, percent: int) -> bool:
    """Whether this customer is in the measurement holdout for ``reason``: SHA-256 of a label of its
    own, the entry id and the reason, as a number 0..99, below ``percent``. Stable across retries,
    replays and cold starts, like the variant (``templates.choose_variant``), and independent of it:
    the label makes it another hash, so the holdout takes an even share of every variant."""
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"holdout\x1f{entry_id}\x1f{reason}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent


def holdout_release(
    snapshot: Snapshot, reason: str, history: History, policy: OutreachPolicy, actionable_at: datetime
) -> datetime | None:
    """When a held-out customer's first message may go (None: not held out). Only customers never
    messaged are held out, as the report's comparison cohort is customers not messaged yet; the delay
    counts from the moment the message would have gone, so it restarts when the customer acts again."""
    if history.attempts > 0 or not in_holdout(snapshot.entry_id, reason, policy.holdout_percent):
        return None
    return actionable_at + policy.holdout


def without_channel(decision: Decision, now: datetime) -> Decision:
    """A SEND with nowhere to go: suppressed ``no_channel``, and the sweep decides again
    :data:`NO_CHANNEL_RETRY` later, so the customer is messaged once a channel exists. No attempt is
    used, and the customer enters the sweep even when this was their first message."""
    return Decision(
        Action.SUPPRESS,
        decision.need,
        because=Because.NO_CHANNEL,
        follow_up=FollowUpChange(now + NO_CHANNEL_RETRY, create=True),
    )


def _follow_up(history: History, at: datetime | None) -> FollowUpChange | None:
    return None if history.follow_up_at == at else FollowUpChange(at)


def _clear_if(condition: bool, history: History) -> FollowUpChange | None:
    return _follow_up(history, None) if condition else None


def utility_names(utilities: Sequence[Utility]) -> list[str]:
    return [str(u.get(wire.UTILITY_NAME)) for u in utilities if u.get(wire.UTILITY_NAME)]
